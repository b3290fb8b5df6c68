//! A bounded pool of SSH connections to one RDS.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;
use russh::keys::PrivateKey;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::breaker::{Admission, BreakerConfig, BreakerState, CircuitBreaker};
use super::transport::{Exec, SshTransport};
use super::{HostKeyPin, SshError, Timeouts};

/// Exponential backoff between connection attempts of one pool slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure; it doubles with each further failure.
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait after `failures` consecutive failures: the exponential delay, half of it fixed
    /// and half random, so that slots (and driver replicas) do not retry in step.
    fn delay(&self, failures: u32, rng: &mut impl Rng) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let full = self.initial.saturating_mul(1 << doublings).min(self.max);
        let half = full / 2;
        half + rng.random_range(Duration::ZERO..=half)
    }
}

/// Where and how the pool connects.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// `host:port` of the RDS's SSH service.
    pub addr: String,
    /// The login name, possibly with RouterOS flags (`admin+ct`).
    pub user: String,
    pub key: Arc<PrivateKey>,
    pub pin: HostKeyPin,
    pub timeouts: Timeouts,
    /// Connections, each serving one command at a time.
    pub size: usize,
    pub backoff: Backoff,
    pub breaker: BreakerConfig,
}

impl PoolConfig {
    /// A pool of 4 connections with the default timeouts, backoff and breaker.
    pub fn new(addr: &str, user: &str, key: Arc<PrivateKey>, pin: HostKeyPin) -> Self {
        Self {
            addr: addr.to_owned(),
            user: user.to_owned(),
            key,
            pin,
            timeouts: Timeouts::default(),
            size: 4,
            backoff: Backoff::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// What the pool holds right now, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connected sessions waiting for a command.
    pub idle: usize,
    /// Checked-out slots: running a command, or connecting to run one.
    pub busy: usize,
    pub breaker: BreakerState,
}

/// A connection place in the pool; it keeps its backoff state across connections.
#[derive(Default)]
struct Slot {
    transport: Option<SshTransport>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// Runs commands over at most `size` connections, connecting lazily, replacing broken
/// connections with backoff, and failing fast while the circuit breaker is open.
pub struct SshPool {
    config: PoolConfig,
    free: Semaphore,
    idle: Mutex<Vec<Slot>>,
    breaker: Mutex<CircuitBreaker>,
}

impl SshPool {
    pub fn new(config: PoolConfig) -> Self {
        let size = config.size.max(1);
        Self {
            free: Semaphore::new(size),
            idle: Mutex::new((0..size).map(|_| Slot::default()).collect()),
            breaker: Mutex::new(CircuitBreaker::new(config.breaker)),
            config,
        }
    }

    /// Runs one command line within `timeouts.command` and returns its output. A command is
    /// retried (once, on a new connection) only when it cannot have reached the RDS: a pooled
    /// connection found dead before the command was sent.
    pub async fn run(&self, line: &str) -> Result<String, SshError> {
        let exec = self.run_within(line, self.config.timeouts.command).await;
        exec.map(|exec| exec.text)
    }

    /// [`SshPool::run`], telling how much came on standard error.
    pub async fn run_streams(&self, line: &str) -> Result<Exec, SshError> {
        self.run_within(line, self.config.timeouts.command).await
    }

    /// Runs a `/disk copy` line as [`SshPool::run`] does, but within `timeouts.copy`.
    pub async fn run_copy(&self, line: &str) -> Result<String, SshError> {
        let exec = self.run_within(line, self.config.timeouts.copy).await;
        exec.map(|exec| exec.text)
    }

    async fn run_within(&self, line: &str, limit: Duration) -> Result<Exec, SshError> {
        let mut slot = self.checkout().await;
        let mut may_retry = true;
        loop {
            let (transport, reused) = self.connection(&mut slot).await?;
            match transport.exec(line, limit).await {
                Ok(output) => {
                    slot.transport = Some(transport);
                    return Ok(output);
                }
                Err(failure) if reused && !failure.sent && may_retry => may_retry = false,
                Err(failure) => return Err(failure.error),
            }
        }
    }

    pub fn stats(&self) -> PoolStats {
        let idle = lock(&self.idle);
        PoolStats {
            idle: idle
                .iter()
                .filter(|slot| slot.transport.as_ref().is_some_and(|t| !t.is_closed()))
                .count(),
            busy: self.config.size.max(1) - idle.len(),
            breaker: lock(&self.breaker).state(),
        }
    }

    /// Checks that the RDS answers, by opening a channel on a pooled connection.
    pub async fn probe(&self) -> Result<(), SshError> {
        let mut slot = self.checkout().await;
        let (transport, _) = self.connection(&mut slot).await?;
        transport.probe().await?;
        slot.transport = Some(transport);
        Ok(())
    }

    async fn checkout(&self) -> SlotGuard<'_> {
        let permit = self
            .free
            .acquire()
            .await
            .expect("the pool never closes its semaphore");
        // A permit guarantees an idle slot.
        let slot = lock(&self.idle).pop().unwrap_or_default();
        SlotGuard {
            pool: self,
            slot,
            _permit: permit,
        }
    }

    /// The slot's live connection (`true`: reused), or a new one.
    async fn connection(&self, slot: &mut Slot) -> Result<(SshTransport, bool), SshError> {
        if let Some(transport) = slot.transport.take().filter(|t| !t.is_closed()) {
            return Ok((transport, true));
        }
        let admission = lock(&self.breaker)
            .admit(Instant::now())
            .map_err(|rejection| SshError::CircuitOpen {
                addr: self.config.addr.clone(),
                failures: rejection.failures,
                retry_in: rejection.retry_in,
                last_error: rejection.last_error,
            })?;
        let attempt = Attempt {
            breaker: &self.breaker,
            probe: admission == Admission::Probe,
            recorded: false,
        };
        if let Some(retry_at) = slot.retry_at {
            tokio::time::sleep_until(retry_at.into()).await;
        }
        let config = &self.config;
        let connected = SshTransport::connect(
            &config.addr,
            &config.user,
            config.key.clone(),
            &config.pin,
            config.timeouts,
        )
        .await;
        match &connected {
            Ok(_) => {
                slot.failures = 0;
                slot.retry_at = None;
            }
            Err(_) => {
                slot.failures += 1;
                let delay = config.backoff.delay(slot.failures, &mut rand::rng());
                slot.retry_at = Some(Instant::now() + delay);
            }
        }
        attempt.record(connected.as_ref().map(|_| ()).map_err(ToString::to_string));
        connected.map(|transport| (transport, false))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data stays consistent across a panic (every update is a single assignment).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A checked-out slot; back in the pool when dropped, with whatever connection it holds.
struct SlotGuard<'a> {
    pool: &'a SshPool,
    slot: Slot,
    _permit: SemaphorePermit<'a>,
}

impl Deref for SlotGuard<'_> {
    type Target = Slot;

    fn deref(&self) -> &Slot {
        &self.slot
    }
}

impl DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut Slot {
        &mut self.slot
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        // Runs before the permit is released, so the next holder finds the slot.
        lock(&self.pool.idle).push(std::mem::take(&mut self.slot));
    }
}

/// A connection attempt the breaker admitted; its outcome must be recorded. A half-open probe
/// whose caller gave up (the future was dropped) lets the next caller probe instead.
struct Attempt<'a> {
    breaker: &'a Mutex<CircuitBreaker>,
    probe: bool,
    recorded: bool,
}

impl Attempt<'_> {
    fn record(mut self, outcome: Result<(), String>) {
        self.recorded = true;
        let mut breaker = lock(self.breaker);
        match outcome {
            Ok(()) => breaker.succeeded(),
            Err(error) => breaker.failed(Instant::now(), error),
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            lock(self.breaker).probe_abandoned(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_half_of_it_random() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mut rng = StdRng::seed_from_u64(7);
        for (failures, full_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ] {
            let full = Duration::from_millis(full_ms);
            for _ in 0..50 {
                let delay = backoff.delay(failures, &mut rng);
                assert!(delay >= full / 2 && delay <= full, "{failures}: {delay:?}");
            }
        }
    }
}

//! The circuit breaker in front of connection attempts: after a run of failures the RDS is
//! treated as unavailable, callers fail fast, and one probe at a time tests whether it is back.
//! Pure: the caller passes the time, so every transition is testable.

use std::time::{Duration, Instant};

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed connection attempts that open the breaker.
    pub failure_threshold: u32,
    /// How long callers fail fast before a probe may try again.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// One probe is connecting; everybody else fails fast.
    HalfOpen,
}

/// The breaker as a metric shows it. An open breaker whose time is over stays `Open` until the
/// next caller takes the probe: until then it still fails fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

/// May a connection attempt go ahead?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    Pass,
    /// The attempt is the half-open probe: its outcome closes or reopens the breaker, and it
    /// must be reported (or abandoned) so that the breaker does not stay half-open.
    Probe,
}

/// Why an attempt may not go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rejection {
    pub(super) failures: u32,
    pub(super) retry_in: Duration,
    pub(super) last_error: String,
}

#[derive(Debug)]
pub(super) struct CircuitBreaker {
    config: BreakerConfig,
    state: State,
    failures: u32,
    last_error: String,
}

impl CircuitBreaker {
    pub(super) fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: State::Closed,
            failures: 0,
            last_error: String::new(),
        }
    }

    pub(super) fn admit(&mut self, now: Instant) -> Result<Admission, Rejection> {
        match self.state {
            State::Closed => Ok(Admission::Pass),
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                Ok(Admission::Probe)
            }
            State::Open { until } => Err(self.rejection(until - now)),
            State::HalfOpen => Err(self.rejection(Duration::ZERO)),
        }
    }

    pub(super) fn state(&self) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::HalfOpen => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
        }
    }

    pub(super) fn succeeded(&mut self) {
        self.state = State::Closed;
        self.failures = 0;
    }

    pub(super) fn failed(&mut self, now: Instant, error: String) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = error;
        let opens = match self.state {
            State::Closed => self.failures >= self.config.failure_threshold,
            State::HalfOpen => true,
            // Attempts admitted before the breaker opened do not push the reopening back.
            State::Open { .. } => false,
        };
        if opens {
            self.state = State::Open {
                until: now + self.config.open_for,
            };
        }
    }

    /// The probe ended without an outcome (its caller gave up): let the next caller probe.
    pub(super) fn probe_abandoned(&mut self, now: Instant) {
        if self.state == State::HalfOpen {
            self.state = State::Open { until: now };
        }
    }

    fn rejection(&self, retry_in: Duration) -> Rejection {
        Rejection {
            failures: self.failures,
            retry_in,
            last_error: self.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(30);

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: OPEN_FOR,
        })
    }

    fn fail(breaker: &mut CircuitBreaker, now: Instant, times: u32) {
        for n in 0..times {
            assert_eq!(breaker.admit(now), Ok(Admission::Pass));
            breaker.failed(now, format!("refused {n}"));
        }
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let start = Instant::now();
        let mut breaker = breaker();
        fail(&mut breaker, start, 2);
        breaker.succeeded();
        fail(&mut breaker, start, 3);
        let later = start + Duration::from_secs(10);
        assert_eq!(
            breaker.admit(later),
            Err(Rejection {
                failures: 3,
                retry_in: Duration::from_secs(20),
                last_error: "refused 2".to_owned(),
            })
        );
    }

    #[test]
    fn one_probe_at_a_time_once_the_open_time_is_over() {
        let start = Instant::now();
        let mut breaker = breaker();
        fail(&mut breaker, start, 3);
        let reopened = start + OPEN_FOR;
        assert_eq!(breaker.admit(reopened), Ok(Admission::Probe));
        assert!(breaker.admit(reopened).is_err());
        breaker.succeeded();
        assert_eq!(breaker.admit(reopened), Ok(Admission::Pass));
    }

    #[test]
    fn a_failed_probe_reopens_for_the_full_time() {
        let start = Instant::now();
        let mut breaker = breaker();
        fail(&mut breaker, start, 3);
        let probe_time = start + OPEN_FOR;
        assert_eq!(breaker.admit(probe_time), Ok(Admission::Probe));
        breaker.failed(probe_time, "still down".to_owned());
        let rejection = breaker.admit(probe_time).unwrap_err();
        assert_eq!(rejection.retry_in, OPEN_FOR);
        assert_eq!(rejection.failures, 4);
        assert_eq!(rejection.last_error, "still down");
    }

    #[test]
    fn late_failures_do_not_extend_the_open_time() {
        let start = Instant::now();
        let mut breaker = breaker();
        fail(&mut breaker, start, 3);
        breaker.failed(start + Duration::from_secs(5), "late".to_owned());
        assert_eq!(breaker.admit(start + OPEN_FOR), Ok(Admission::Probe));
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_caller_probe() {
        let start = Instant::now();
        let mut breaker = breaker();
        fail(&mut breaker, start, 3);
        let probe_time = start + OPEN_FOR;
        assert_eq!(breaker.admit(probe_time), Ok(Admission::Probe));
        breaker.probe_abandoned(probe_time);
        assert_eq!(breaker.admit(probe_time), Ok(Admission::Probe));
    }
}

//! Leader election among the controller replicas, on a `coordination.k8s.io/v1` Lease, with
//! client-go's rules: a replica takes the Lease when it is free or has not changed for its
//! `leaseDurationSeconds`, as measured on this replica's own clock from when it first saw that
//! `resourceVersion` (never from `renewTime`, so clocks need not agree); every write carries the
//! `resourceVersion` it read, so of two replicas that race for it one gets a conflict; a holder
//! renews every `retryPeriodSeconds` and stops leading when no renewal has succeeded for
//! `renewDeadlineSeconds`, which is shorter than the lease duration: it has stopped before
//! anyone else can have taken over. On a clean shutdown the holder releases the Lease, so a
//! successor takes over at its next try instead of after the lease duration.
//!
//! [`Elector`] is the state machine, over the [`Leases`] it reads and writes (the API server's
//! in production, a fake in the tests); [`Election`] runs it and publishes [`Leadership`].

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The election's timings (`kubernetes.leaseDurationSeconds` and its neighbours), validated to
/// nest: retry < renew deadline < lease duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// Why a read or write of the Lease failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else wrote the Lease since it was read (or created it first).
    #[error("the Lease changed since it was read")]
    Conflict,
    #[error("{0}")]
    Api(String),
}

/// The one Lease the replicas compete for.
pub trait Leases: Send + Sync {
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, LeaseError>> + Send;
    /// Creates it; [`LeaseError::Conflict`] when it exists.
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
    /// Replaces it, on the condition that its `resourceVersion` is still the one in `lease`.
    fn replace(&self, lease: &Lease) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
}

/// The Lease `name` in the API server.
pub struct ApiLeases {
    api: Api<Lease>,
    name: String,
}

impl ApiLeases {
    pub fn new(client: kube::Client, namespace: &str, name: String) -> ApiLeases {
        ApiLeases {
            api: Api::namespaced(client, namespace),
            name,
        }
    }
}

fn api_error(error: kube::Error) -> LeaseError {
    match error {
        kube::Error::Api(status) if status.code == 409 => LeaseError::Conflict,
        other => LeaseError::Api(other.to_string()),
    }
}

impl Leases for ApiLeases {
    async fn get(&self) -> Result<Option<Lease>, LeaseError> {
        self.api.get_opt(&self.name).await.map_err(api_error)
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        let mut lease = lease.clone();
        lease.metadata.name = Some(self.name.clone());
        self.api
            .create(&PostParams::default(), &lease)
            .await
            .map_err(api_error)
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.api
            .replace(&self.name, &PostParams::default(), lease)
            .await
            .map_err(api_error)
    }
}

/// The Lease of `driver`'s controller replicas: a valid object name whatever the driver name.
pub fn lease_name(driver: &str) -> String {
    let name: String = driver
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{name}-controller")
}

/// This process's holder identity: the pod's name (a container's host name) and a random
/// suffix, so a restarted pod of the same name never mistakes its predecessor's Lease for its own.
pub fn identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rds-csi".to_owned());
    format!("{host}_{}", uuid::Uuid::new_v4().simple())
}

/// One replica's view of the election.
pub struct Elector {
    identity: String,
    timings: Timings,
    /// The Lease's `resourceVersion` as last seen (every write changes it), and when this
    /// replica first saw it.
    observed: Option<(Option<String>, Instant)>,
    /// Until when this replica leads: the start of its last successful write plus the renew
    /// deadline. The write reached the API server after its start, so anyone who saw it will
    /// wait the lease duration from a later moment.
    leading_until: Option<Instant>,
}

impl Elector {
    pub fn new(identity: String, timings: Timings) -> Elector {
        Elector {
            identity,
            timings,
            observed: None,
            leading_until: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether this replica leads at `now`.
    pub fn leading(&self, now: Instant) -> bool {
        self.leading_until.is_some_and(|until| now < until)
    }

    /// When this replica stops leading unless it renews first.
    pub fn leading_until(&self) -> Option<Instant> {
        self.leading_until
    }

    /// One try to take or renew the Lease, started at `now` (`wall` on the wall clock, for the
    /// times written into it). `Ok(true)`: this replica leads until [`Elector::leading_until`].
    pub async fn attempt(
        &mut self,
        leases: &impl Leases,
        now: Instant,
        wall: Timestamp,
    ) -> Result<bool, LeaseError> {
        let Some(current) = leases.get().await? else {
            let lease = Lease {
                metadata: ObjectMeta::default(),
                spec: Some(self.claim(&LeaseSpec::default(), false, wall)),
            };
            return self.written(leases.create(&lease).await, now);
        };
        let spec = current.spec.clone().unwrap_or_default();
        let version = &current.metadata.resource_version;
        if self
            .observed
            .as_ref()
            .is_none_or(|(seen, _)| seen != version)
        {
            self.observed = Some((version.clone(), now));
        }
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let mine = holder == Some(self.identity.as_str());
        if holder.is_some() && !mine {
            let since = self.observed.as_ref().map_or(now, |(_, at)| *at);
            let duration = spec
                .lease_duration_seconds
                .map_or(self.timings.lease_duration, seconds);
            if now < since + duration {
                self.leading_until = None;
                return Ok(false);
            }
        }
        let lease = Lease {
            metadata: current.metadata,
            spec: Some(self.claim(&spec, mine, wall)),
        };
        self.written(leases.replace(&lease).await, now)
    }

    /// `spec` taken or renewed by this replica.
    fn claim(&self, spec: &LeaseSpec, renewal: bool, wall: Timestamp) -> LeaseSpec {
        let transitions = spec.lease_transitions.unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(whole_seconds(self.timings.lease_duration)),
            acquire_time: if renewal {
                spec.acquire_time.clone()
            } else {
                Some(MicroTime(wall))
            },
            renew_time: Some(MicroTime(wall)),
            // A new Lease starts at 0; every change of holder counts one.
            lease_transitions: Some(match (renewal, &spec.holder_identity) {
                (true, _) => transitions,
                (false, None) if spec.renew_time.is_none() => 0,
                (false, _) => transitions + 1,
            }),
            ..spec.clone()
        }
    }

    fn written(
        &mut self,
        result: Result<Lease, LeaseError>,
        now: Instant,
    ) -> Result<bool, LeaseError> {
        match result {
            Ok(lease) => {
                self.observed = Some((lease.metadata.resource_version, now));
                self.leading_until = Some(now + self.timings.renew_deadline);
                Ok(true)
            }
            // Another replica wrote first: whatever this one believed, it does not lead now.
            Err(LeaseError::Conflict) => {
                self.leading_until = None;
                Ok(false)
            }
            // Maybe not written: leading ends when the deadline passes without a renewal.
            Err(error) => Err(error),
        }
    }

    /// Gives the Lease up if this replica holds it: no holder and a one-second duration, so the
    /// next replica to look takes it at once.
    pub async fn release(
        &mut self,
        leases: &impl Leases,
        wall: Timestamp,
    ) -> Result<(), LeaseError> {
        self.leading_until = None;
        let Some(current) = leases.get().await? else {
            return Ok(());
        };
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let released = Lease {
            metadata: current.metadata,
            spec: Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                acquire_time: None,
                renew_time: Some(MicroTime(wall)),
                ..spec
            }),
        };
        leases.replace(&released).await.map(drop)
    }
}

fn seconds(value: i32) -> Duration {
    Duration::from_secs(u64::try_from(value).unwrap_or(0))
}

fn whole_seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

/// Whether this replica leads, as the reconcilers see it.
#[derive(Clone)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    pub fn leading(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once this replica does not lead (at once when it does not now).
    pub async fn lost(&mut self) {
        // An error: the election ended, and it publishes `false` before it does.
        let _ = self.0.wait_for(|leading| !leading).await;
    }

    /// Resolves at the next change of leadership; never once the election has ended.
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A running election: [`Election::resign`] ends it.
pub struct Election {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Election {
    /// Competes for the Lease in `leases` until [`Election::resign`].
    pub fn start(
        leases: impl Leases + 'static,
        elector: Elector,
        timings: Timings,
    ) -> (Election, Leadership) {
        let (tell, leadership) = watch::channel(false);
        let stop = CancellationToken::new();
        let task = tokio::spawn(campaign(leases, elector, timings, tell, stop.clone()));
        (Election { stop, task }, Leadership(leadership))
    }

    /// Stops competing and leading (leadership is `false` from here on) and releases the Lease
    /// if this replica holds it.
    pub async fn resign(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn campaign(
    leases: impl Leases,
    mut elector: Elector,
    timings: Timings,
    tell: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let publish = |elector: &Elector| {
        let leading = elector.leading(Instant::now());
        let changed = tell.send_if_modified(|was| std::mem::replace(was, leading) != leading);
        if changed {
            crate::metrics::leader(leading);
            if leading {
                tracing::info!(identity = elector.identity(), "leading the reconcilers");
            } else {
                tracing::warn!(
                    identity = elector.identity(),
                    "no longer leading the reconcilers"
                );
            }
        }
    };
    loop {
        let now = Instant::now();
        publish(&elector);
        // A try ends by the time leadership would: a slow API server must not keep a replica
        // acting past its deadline.
        let bound = elector
            .leading_until()
            .filter(|until| *until > now)
            .map_or(timings.renew_deadline, |until| until - now);
        let attempt = tokio::time::timeout(bound, elector.attempt(&leases, now, Timestamp::now()));
        tokio::select! {
            () = stop.cancelled() => break,
            outcome = attempt => match outcome {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::warn!(%error, "reading or writing the Lease failed"),
                Err(_) => tracing::warn!("the Lease did not answer in time"),
            },
        }
        publish(&elector);
        let next = Instant::now() + timings.retry_period;
        let wake = elector
            .leading_until()
            .filter(|until| *until > Instant::now())
            .map_or(next, |until| until.min(next));
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(wake) => {}
        }
    }
    let was_leading = elector.leading(Instant::now());
    tell.send_replace(false);
    crate::metrics::leader(false);
    if was_leading || elector.leading_until().is_some() {
        match tokio::time::timeout(
            timings.renew_deadline,
            elector.release(&leases, Timestamp::now()),
        )
        .await
        {
            Ok(Ok(())) => tracing::info!("released the Lease"),
            Ok(Err(error)) => tracing::warn!(%error, "could not release the Lease"),
            Err(_) => tracing::warn!("releasing the Lease did not finish in time"),
        }
    }
}

#[cfg(test)]
mod tests;

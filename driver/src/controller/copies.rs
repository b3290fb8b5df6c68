//! Copies that outlive the call that started them (snapshot, restore, clone; every method).
//!
//! The CSI sidecars give each call a deadline, cancel it when the deadline passes and retry. A
//! copy run inside the handler was dropped with it, and each retry started `/disk copy` again
//! from byte 0, so a copy longer than the deadline never finished. Here a copy is a task of the
//! controller keyed by its target's slot: it holds the guards of its source and target until
//! it ends, a retry of the same request joins it instead of starting another, and a handler
//! waits for it only as long as its caller's deadline allows.
//!
//! A copy ends with the controller that runs it: `/disk copy` belongs to the SSH session that
//! started it, so a restarted controller finds the copy stopped and its target marked pending
//! on the RDS, and the retried request copies again from there, once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::snapshot::disk_method;
use crate::guard::VolumeGuard;
use crate::ids::Metadata;
use crate::rds::parse::DiskRecord;
use crate::rds::value::Slot;
use crate::snapshot::{Method, SnapshotError, Target};

type Outcome = Option<Result<DiskRecord, SnapshotError>>;

/// The copies running now, by target slot.
#[derive(Debug, Default)]
pub struct Copies {
    running: Arc<Mutex<HashMap<Slot, Copy>>>,
    /// Their tasks, aborted when the controller is dropped.
    tasks: Mutex<JoinSet<()>>,
}

/// One running copy: where from, and its outcome once it has one.
#[derive(Debug, Clone)]
pub struct Copy {
    pub source: Slot,
    outcome: watch::Receiver<Outcome>,
}

/// What a wait for a copy saw.
#[derive(Debug)]
pub enum Waited {
    Done(Result<DiskRecord, SnapshotError>),
    /// Still running when the caller had to answer.
    Running,
}

impl Copies {
    /// The copy into `target`, if one runs.
    pub fn get(&self, target: &Slot) -> Option<Copy> {
        lock(&self.running).get(target).cloned()
    }

    /// A running copy from `source`, with its target.
    pub fn copying_from(&self, source: &Slot) -> Option<Slot> {
        lock(&self.running)
            .iter()
            .find(|(_, copy)| copy.source == *source)
            .map(|(target, _)| target.clone())
    }

    /// Starts `work`, the copy from `source` into `target`, as a task holding `guards` until it
    /// ends; the caller checked that none runs (it holds the target's guard, which a running
    /// copy would hold).
    pub fn start<W>(&self, source: &Slot, target: &Slot, guards: Vec<VolumeGuard>, work: W) -> Copy
    where
        W: Future<Output = Result<DiskRecord, SnapshotError>> + Send + 'static,
    {
        let (done, outcome) = watch::channel(None);
        let copy = Copy {
            source: source.clone(),
            outcome,
        };
        lock(&self.running).insert(target.clone(), copy.clone());
        let running = self.running.clone();
        let target = target.clone();
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let result = work.await;
            // Leave the table before the guards go: a call that then finds the target free
            // finds the copy's result on the RDS, not a finished copy to join. The guards go
            // before the outcome is told, so a waiter that goes on to act on the target or
            // its source finds them free.
            lock(&running).remove(&target);
            drop(guards);
            done.send_replace(Some(result));
        });
        copy
    }
}

impl Copy {
    /// Waits for the copy to end, for at most `within` (without a limit, until it ends).
    pub async fn wait(mut self, within: Option<Duration>) -> Waited {
        let ended = self.outcome.wait_for(Option::is_some);
        let outcome = match within {
            None => ended.await.ok().map(|seen| seen.clone()),
            Some(within) => match tokio::time::timeout(within, ended).await {
                Ok(seen) => seen.ok().map(|seen| seen.clone()),
                Err(_) => return Waited::Running,
            },
        };
        match outcome.flatten() {
            Some(result) => Waited::Done(result),
            // The task ended without an outcome (it panicked): the RDS tells what it left.
            None => Waited::Running,
        }
    }
}

/// How long a handler may wait before it must answer: three quarters of the caller's deadline
/// (the `grpc-timeout` header), so the answer reaches the caller before the deadline does.
pub fn answer_within(metadata: &MetadataMap) -> Option<Duration> {
    let header = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = header.split_at(header.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    Some(timeout * 3 / 4)
}

/// Whether a copy starts anew or completes one an earlier call left pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    New,
    Resume,
}

impl super::ControllerService {
    /// FAILED_PRECONDITION while `slot`, the volume or snapshot `what`, is the source of a
    /// running copy: deleting it would leave that copy incomplete. The CO retries the delete.
    pub(super) fn refuse_while_copied_from(&self, slot: &Slot, what: &str) -> Result<(), Status> {
        match self.copies.copying_from(slot) {
            Some(target) => Err(Status::failed_precondition(format!(
                "{what} {slot} is being copied into {target} (a snapshot or volume being made \
                 from it); delete it once that copy is complete"
            ))),
            None => Ok(()),
        }
    }

    /// FAILED_PRECONDITION while a disk on the RDS records `slot` as the source of a copy that
    /// an interruption (a controller or RDS restart) left pending: the retry of its
    /// CreateVolume or CreateSnapshot completes it from this source, and could not once the
    /// source is gone. Called with `slot`'s guard held, so no copy from it starts meanwhile.
    pub(super) async fn refuse_while_pending_from(
        &self,
        slot: &Slot,
        what: &str,
    ) -> Result<(), Status> {
        let made_from = self.rds.made_from(slot).await?;
        let pending = made_from.iter().find(|disk| {
            disk.comment
                .as_deref()
                .and_then(|comment| Metadata::parse(comment).ok())
                .is_some_and(|made| made.pending && made.source.as_ref() == Some(slot))
        });
        match pending.map(|disk| Slot::parse(&disk.slot)) {
            Some(Ok(target)) => Err(Status::failed_precondition(format!(
                "{what} {slot} is the source of {target}, whose copy was cut off (a controller \
                 or RDS restart) and is incomplete; the retry of its CreateVolume or \
                 CreateSnapshot copies it again from {slot}. Delete {slot} once that copy is \
                 complete or {target} is deleted"
            ))),
            _ => Ok(()),
        }
    }

    /// Waits, within `within`, for a copy running into `slot` (the volume or snapshot `what`
    /// being deleted) to end; ABORTED, which the sidecar retries, while it runs on. A delete
    /// never pulls a disk from under its `/disk copy`: what RouterOS does then is not known,
    /// and a copy that ends leaves a disk the delete removes whole.
    pub(super) async fn wait_for_copy_into(
        &self,
        slot: &Slot,
        what: &str,
        within: Option<Duration>,
    ) -> Result<(), Status> {
        let Some(copy) = self.copies.get(slot) else {
            return Ok(());
        };
        let source = copy.source.clone();
        match copy.wait(within).await {
            Waited::Done(_) => Ok(()),
            Waited::Running => Err(Status::aborted(format!(
                "{what} {slot} is still being copied from {source}; it is deleted once that \
                 copy ends, on a retry"
            ))),
        }
    }

    /// Starts `method`'s copy of `source` into `target` as a task holding `guards`.
    pub(super) fn start_copy(
        &self,
        method: Method,
        source: &Slot,
        target: Target,
        start: Start,
        guards: Vec<VolumeGuard>,
    ) -> Result<Copy, Status> {
        let implementation = disk_method(method, target.spec.slot.as_str())?;
        let rds = self.rds.clone();
        let slot = target.spec.slot.clone();
        let from = source.clone();
        let work = async move {
            match start {
                Start::New => implementation.copy(&rds, &from, &target).await,
                Start::Resume => implementation.resume(&rds, &from, &target).await,
            }
        };
        Ok(self.copies.start(source, &slot, guards, work))
    }
}

fn lock<T>(table: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update is a single insert, remove or spawn, so the table is consistent after a
    // panic.
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::guard::VolumeLocks;

    fn slot(s: &str) -> Slot {
        Slot::parse(s).unwrap()
    }

    #[tokio::test]
    async fn a_copy_outlives_its_waiter_and_keeps_its_guards() {
        let locks = VolumeLocks::default();
        let copies = Copies::default();
        let (finish, finished) = oneshot::channel::<()>();
        let guards = vec![locks.try_lock("pvc-src").unwrap()];
        let copy = copies.start(&slot("pvc-src"), &slot("snap-a"), guards, async move {
            finished.await.ok();
            Err(SnapshotError::Incomplete {
                source_slot: "pvc-src".into(),
                target: "snap-a".into(),
                copied: 1,
                total: 2,
            })
        });
        // The caller's deadline passes: it stops waiting, the copy and its guard stay.
        assert!(matches!(
            copy.wait(Some(Duration::from_millis(1))).await,
            Waited::Running
        ));
        assert!(locks.try_lock("pvc-src").is_err());
        assert_eq!(copies.copying_from(&slot("pvc-src")), Some(slot("snap-a")));
        // A retry joins the same copy and sees its end.
        let joined = copies.get(&slot("snap-a")).expect("the copy still runs");
        finish.send(()).unwrap();
        assert!(matches!(
            joined.wait(None).await,
            Waited::Done(Err(SnapshotError::Incomplete { .. }))
        ));
        assert!(copies.get(&slot("snap-a")).is_none());
        assert!(locks.try_lock("pvc-src").is_ok());
    }

    #[tokio::test]
    async fn a_dropped_controller_ends_its_copies_and_frees_their_guards() {
        let locks = VolumeLocks::default();
        let copies = Copies::default();
        let (running, ended) = oneshot::channel::<()>();
        let guards = vec![locks.try_lock("pvc-src").unwrap()];
        copies.start(&slot("pvc-src"), &slot("snap-a"), guards, async move {
            // Dropped with the copy, which never ends by itself.
            let _running = running;
            std::future::pending().await
        });
        drop(copies);
        // Bounded only so that a copy left running fails the test instead of hanging it.
        let ended = tokio::time::timeout(Duration::from_secs(10), ended)
            .await
            .expect("a dropped controller still runs its copy");
        assert!(ended.is_err());
        assert!(locks.try_lock("pvc-src").is_ok());
    }

    #[test]
    fn the_callers_deadline_is_read_from_grpc_timeout() {
        let mut metadata = MetadataMap::new();
        assert_eq!(answer_within(&metadata), None);
        for (header, expected) in [
            ("8S", Duration::from_secs(6)),
            ("2000m", Duration::from_millis(1500)),
            ("1M", Duration::from_secs(45)),
        ] {
            metadata.insert("grpc-timeout", header.parse().unwrap());
            assert_eq!(answer_within(&metadata), Some(expected), "{header}");
        }
        metadata.insert("grpc-timeout", "soon".parse().unwrap());
        assert_eq!(answer_within(&metadata), None);
    }
}

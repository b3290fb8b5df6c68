//! Concurrency rules as types: one operation at a time per volume, and a bound on concurrent
//! creates.
//!
//! CSI lets a CO retry a call while the first attempt is still running; the spec's answer for "an
//! operation for this volume is already in progress" is ABORTED, which [`VolumeLocks`] makes a
//! guard that frees the volume when dropped, so an early return or a cancelled request cannot
//! leave it busy.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The volumes with an operation in progress.
#[derive(Debug, Default)]
pub struct VolumeLocks {
    busy: Arc<Mutex<HashSet<String>>>,
}

/// Another operation holds the volume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an operation on volume {0} is already in progress; the CO retries this call once it has \
     finished"
)]
pub struct Busy(pub String);

/// Marks one volume busy until dropped.
#[derive(Debug)]
pub struct VolumeGuard {
    busy: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl VolumeLocks {
    /// Marks `id` busy, or says it already is.
    pub fn try_lock(&self, id: &str) -> Result<VolumeGuard, Busy> {
        if !lock(&self.busy).insert(id.to_owned()) {
            return Err(Busy(id.to_owned()));
        }
        Ok(VolumeGuard {
            busy: self.busy.clone(),
            id: id.to_owned(),
        })
    }
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        lock(&self.busy).remove(&self.id);
    }
}

fn lock(set: &Mutex<HashSet<String>>) -> MutexGuard<'_, HashSet<String>> {
    // Each update is a single insert or remove, so the set is consistent even after a panic.
    set.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// At most `max` creates run at once; the others wait in arrival order. Waiting rather than
/// failing suits the CO, whose create calls queue behind a burst instead of backing off.
#[derive(Debug)]
pub struct CreateLimit {
    permits: Arc<Semaphore>,
}

impl CreateLimit {
    /// `max` is at least 1.
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }

    /// Waits for a turn; the turn ends when the permit is dropped.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the create semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    #[test]
    fn a_volume_is_busy_until_its_guard_drops() {
        let locks = VolumeLocks::default();
        let guard = locks.try_lock("pvc-a").unwrap();
        assert_eq!(locks.try_lock("pvc-a").unwrap_err(), Busy("pvc-a".into()));
        let other = locks.try_lock("pvc-b").unwrap();
        drop(guard);
        let again = locks.try_lock("pvc-a").unwrap();
        drop((again, other));
        assert!(lock(&locks.busy).is_empty());
    }

    #[test]
    fn busy_names_the_volume() {
        let message = Busy("pvc-a".into()).to_string();
        assert!(message.contains("volume pvc-a"), "{message}");
    }

    fn ready<F: Future>(future: std::pin::Pin<&mut F>) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(future.poll(&mut cx), Poll::Ready(_))
    }

    #[tokio::test]
    async fn creates_beyond_the_bound_wait_for_a_permit() {
        let limit = CreateLimit::new(2);
        let first = limit.acquire().await;
        let _second = limit.acquire().await;
        let mut third = pin!(limit.acquire());
        assert!(
            !ready(third.as_mut()),
            "a third create ran past a bound of 2"
        );
        drop(first);
        assert!(
            ready(third.as_mut()),
            "a freed permit did not go to the waiter"
        );
    }

    #[tokio::test]
    async fn a_zero_bound_still_admits_one() {
        let limit = CreateLimit::new(0);
        let _only = limit.acquire().await;
        assert!(!ready(pin!(limit.acquire())));
    }
}

//! kubelet's retry of a failed volume operation: exponential, per operation, from 500 ms up to
//! 2 min 2 s (`exponentialbackoff` in `pkg/volume/util/nestedpendingoperations`).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

const INITIAL: Duration = Duration::from_millis(500);
const MAX: Duration = Duration::from_millis(122_000);

/// When each failed operation may run again; an operation not listed may run now.
#[derive(Debug, Default)]
pub struct Backoff {
    failed: HashMap<String, (Duration, Instant)>,
}

impl Backoff {
    pub fn may_run(&self, operation: &str, now: Instant) -> bool {
        self.failed.get(operation).is_none_or(|(_, at)| *at <= now)
    }

    /// Records a failure; returns how long the operation now waits.
    pub fn failed(&mut self, operation: &str, now: Instant) -> Duration {
        let delay = match self.failed.get(operation) {
            Some((last, _)) => (*last * 2).min(MAX),
            None => INITIAL,
        };
        self.failed
            .insert(operation.to_owned(), (delay, now + delay));
        delay
    }

    pub fn succeeded(&mut self, operation: &str) {
        self.failed.remove(operation);
    }

    /// The earliest time a waiting operation may run again: when the reconciler must look again
    /// even if nothing in the cluster changes.
    pub fn next_retry(&self, now: Instant) -> Option<Instant> {
        self.failed
            .values()
            .map(|(_, at)| *at)
            .filter(|at| *at > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_success_forgets() {
        let now = Instant::now();
        let mut backoff = Backoff::default();
        assert!(backoff.may_run("op", now));
        assert_eq!(backoff.failed("op", now), INITIAL);
        assert!(!backoff.may_run("op", now));
        assert!(backoff.may_run("other", now));
        assert_eq!(backoff.next_retry(now), Some(now + INITIAL));
        assert_eq!(backoff.failed("op", now), INITIAL * 2);
        for _ in 0..20 {
            backoff.failed("op", now);
        }
        assert_eq!(backoff.failed("op", now), MAX);
        backoff.succeeded("op");
        assert!(backoff.may_run("op", now));
        assert_eq!(backoff.next_retry(now), None);
    }
}

//! Which of a schedule's own snapshots have expired. Pure: the caller lists the snapshots and
//! passes the time.

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};

use super::settings::Retention;

/// One of the schedule's own VolumeSnapshots, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSnapshot {
    pub namespace: String,
    pub name: String,
    /// Guards the delete: an object re-created under the same name is a different object.
    pub uid: String,
    /// `spec.source.persistentVolumeClaimName`.
    pub pvc: String,
    pub created: Timestamp,
    /// `status.readyToUse`.
    pub ready: bool,
    /// It has a `deletionTimestamp`: already on its way out, so it neither counts nor is deleted
    /// again.
    pub deleting: bool,
}

/// Why a snapshot goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    BeyondKeep { keep: usize },
    OlderThan { max_age: SignedDuration },
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expiry::BeyondKeep { keep } => write!(f, "beyond the {keep} newest of its PVC"),
            Expiry::OlderThan { max_age } => write!(f, "older than {max_age:#}"),
        }
    }
}

/// The snapshots to delete, oldest first within each PVC. Per PVC (namespace and name), newest
/// first: a snapshot expires when it is past the `keep` newest or older than `max_age`. The
/// newest ready snapshot of a PVC never expires, so a snapshotter that keeps failing cannot
/// make retention delete the last usable copy.
pub fn expired<'a>(
    snapshots: &'a [OwnedSnapshot],
    retention: &Retention,
    now: Timestamp,
) -> Vec<(&'a OwnedSnapshot, Expiry)> {
    let mut by_pvc: BTreeMap<(&str, &str), Vec<&OwnedSnapshot>> = BTreeMap::new();
    for snapshot in snapshots.iter().filter(|s| !s.deleting) {
        by_pvc
            .entry((&snapshot.namespace, &snapshot.pvc))
            .or_default()
            .push(snapshot);
    }
    let mut expired = Vec::new();
    for mut group in by_pvc.into_values() {
        group.sort_by(|a, b| (b.created, &b.name).cmp(&(a.created, &a.name)));
        let newest_ready = group.iter().position(|s| s.ready);
        let mut gone: Vec<_> = group
            .iter()
            .enumerate()
            .filter(|(rank, _)| Some(*rank) != newest_ready)
            .filter_map(|(rank, snapshot)| {
                expiry(rank, snapshot, retention, now).map(|why| (*snapshot, why))
            })
            .collect();
        gone.reverse();
        expired.extend(gone);
    }
    expired
}

fn expiry(
    rank: usize,
    snapshot: &OwnedSnapshot,
    retention: &Retention,
    now: Timestamp,
) -> Option<Expiry> {
    if let Some(keep) = retention.keep.filter(|keep| rank >= keep.get()) {
        return Some(Expiry::BeyondKeep { keep: keep.get() });
    }
    retention
        .max_age
        .filter(|max_age| now.duration_since(snapshot.created) > *max_age)
        .map(|max_age| Expiry::OlderThan { max_age })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::num::NonZeroUsize;

    const DAY: i64 = 86_400;

    fn snap(pvc: &str, day: i64, ready: bool) -> OwnedSnapshot {
        OwnedSnapshot {
            namespace: "apps".into(),
            name: format!("{pvc}-daily-{day:03}"),
            uid: format!("uid-{pvc}-{day}"),
            pvc: pvc.into(),
            created: Timestamp::from_second(day * DAY).unwrap(),
            ready,
            deleting: false,
        }
    }

    fn keep(n: usize) -> Retention {
        Retention {
            keep: NonZeroUsize::new(n),
            max_age: None,
        }
    }

    fn max_age_days(days: i64) -> Retention {
        Retention {
            keep: None,
            max_age: Some(SignedDuration::from_secs(days * DAY)),
        }
    }

    fn names(expired: &[(&OwnedSnapshot, Expiry)]) -> Vec<String> {
        expired.iter().map(|(s, _)| s.name.clone()).collect()
    }

    fn day(n: i64) -> Timestamp {
        Timestamp::from_second(n * DAY).unwrap()
    }

    #[test]
    fn keep_counts_per_pvc_and_deletes_oldest_first() {
        let snapshots: Vec<_> = (1..=5)
            .map(|d| snap("db", d, true))
            .chain((1..=2).map(|d| snap("cache", d, true)))
            .collect();
        let gone = expired(&snapshots, &keep(3), day(6));
        assert_eq!(names(&gone), ["db-daily-001", "db-daily-002"]);
        assert!(
            gone.iter()
                .all(|(_, why)| *why == Expiry::BeyondKeep { keep: 3 })
        );
    }

    #[test]
    fn max_age_deletes_strictly_older_snapshots() {
        let snapshots: Vec<_> = (1..=5).map(|d| snap("db", d, true)).collect();
        let gone = expired(&snapshots, &max_age_days(2), day(5));
        assert_eq!(names(&gone), ["db-daily-001", "db-daily-002"]);
    }

    #[test]
    fn either_bound_expires_a_snapshot() {
        let snapshots: Vec<_> = (1..=5).map(|d| snap("db", d, true)).collect();
        let both = Retention {
            keep: NonZeroUsize::new(4),
            max_age: Some(SignedDuration::from_secs(2 * DAY)),
        };
        let gone = expired(&snapshots, &both, day(5));
        assert_eq!(
            gone.iter()
                .map(|(s, why)| (s.name.as_str(), *why))
                .collect::<Vec<_>>(),
            [
                ("db-daily-001", Expiry::BeyondKeep { keep: 4 }),
                (
                    "db-daily-002",
                    Expiry::OlderThan {
                        max_age: SignedDuration::from_secs(2 * DAY)
                    }
                ),
            ]
        );
    }

    #[test]
    fn the_newest_ready_snapshot_survives_any_retention() {
        let mut snapshots: Vec<_> = (1..=4).map(|d| snap("db", d, false)).collect();
        snapshots[1].ready = true;
        let gone = expired(&snapshots, &keep(1), day(5));
        assert_eq!(names(&gone), ["db-daily-001", "db-daily-003"]);
        let gone = expired(&snapshots, &max_age_days(1), day(100));
        assert_eq!(
            names(&gone),
            ["db-daily-001", "db-daily-003", "db-daily-004"]
        );
    }

    #[test]
    fn snapshots_being_deleted_neither_count_nor_go_again() {
        let mut snapshots: Vec<_> = (1..=3).map(|d| snap("db", d, true)).collect();
        snapshots[2].deleting = true;
        let gone = expired(&snapshots, &keep(2), day(4));
        assert!(gone.is_empty(), "{:?}", names(&gone));
    }

    #[test]
    fn same_pvc_name_in_two_namespaces_is_two_pvcs() {
        let mut other = snap("db", 1, true);
        other.namespace = "staging".into();
        let snapshots = vec![snap("db", 1, true), snap("db", 2, true), other];
        assert_eq!(
            names(&expired(&snapshots, &keep(1), day(3))),
            ["db-daily-001"]
        );
    }

    proptest! {
        /// Per PVC: the `keep` newest survive, plus the newest ready one wherever it ranks, and
        /// nothing else; every other survivor is newer than every expired snapshot.
        #[test]
        fn keep_spares_exactly_the_newest_and_the_newest_ready(
            days in proptest::collection::btree_set(0i64..60, 0..20),
            ready in proptest::collection::vec(any::<bool>(), 20),
            n in 1usize..6,
        ) {
            let snapshots: Vec<_> = days.iter().zip(&ready).map(|(d, r)| snap("db", *d, *r)).collect();
            let gone = expired(&snapshots, &keep(n), day(61));
            let is_gone = |s: &OwnedSnapshot| gone.iter().any(|(g, _)| g.name == s.name);
            let newest_ready = snapshots.iter().filter(|s| s.ready).max_by_key(|s| s.created);
            let ready_rank = newest_ready.map(|r| snapshots.iter().filter(|s| s.created > r.created).count());
            let expected = snapshots.len().min(n) + usize::from(ready_rank.is_some_and(|rank| rank >= n));
            prop_assert_eq!(snapshots.len() - gone.len(), expected);
            if let Some(r) = newest_ready {
                prop_assert!(!is_gone(r));
            }
            let oldest_kept = snapshots
                .iter()
                .filter(|s| !is_gone(s) && newest_ready.is_none_or(|r| r.name != s.name))
                .map(|s| s.created)
                .min();
            for (g, _) in &gone {
                prop_assert!(oldest_kept.is_none_or(|kept| g.created < kept));
            }
        }
    }
}

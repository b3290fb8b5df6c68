//! How a schedule marks and names its snapshots. Pure: no I/O, no clock.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use super::settings::ScheduleName;

/// Together with [`SCHEDULE_LABEL`], marks a VolumeSnapshot as made by a schedule; retention
/// deletes nothing without both.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "rds-csi-snapshot-schedule";
/// Which schedule made the snapshot.
pub const SCHEDULE_LABEL: &str = "rds.csi.mikrotik.com/snapshot-schedule";
/// The start of the slot the snapshot was taken for (RFC 3339, UTC), for people reading it.
pub const SLOT_ANNOTATION: &str = "rds.csi.mikrotik.com/snapshot-slot";

/// Object names are DNS-1123 subdomains: at most 253 characters.
const MAX_NAME: usize = 253;

/// The label selector of `schedule`'s own snapshots.
pub fn owned_selector(schedule: &ScheduleName) -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY},{SCHEDULE_LABEL}={schedule}")
}

/// The labels a new snapshot of `schedule` carries.
pub fn owned_labels(schedule: &ScheduleName) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (SCHEDULE_LABEL.to_owned(), schedule.as_str().to_owned()),
    ])
}

/// Whether `labels` mark an object as `schedule`'s own.
pub fn is_owned(labels: &BTreeMap<String, String>, schedule: &ScheduleName) -> bool {
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && labels.get(SCHEDULE_LABEL).map(String::as_str) == Some(schedule.as_str())
}

/// The start of the slot of length `slot` that `now` falls in, counting slots from the Unix
/// epoch (so a 1d slot starts at midnight UTC).
pub fn slot_start(now: Timestamp, slot: SignedDuration) -> Timestamp {
    let length = slot.as_secs().max(1);
    let start = now.as_second().div_euclid(length) * length;
    Timestamp::from_second(start).expect("rounding down keeps a valid timestamp in range")
}

/// `<pvc>-<schedule>-<YYYYMMDD>-<HHMM>` of the slot start in UTC. A PVC name too long to fit is
/// cut and followed by a hash of the whole name, so distinct PVCs keep distinct names.
pub fn snapshot_name(pvc: &str, schedule: &ScheduleName, slot_start: Timestamp) -> String {
    let suffix = format!("-{schedule}-{}", slot_start.strftime("%Y%m%d-%H%M"));
    if pvc.len() + suffix.len() <= MAX_NAME {
        return format!("{pvc}{suffix}");
    }
    let hash = hex::encode(&Sha256::digest(pvc.as_bytes())[..4]);
    let room = MAX_NAME - suffix.len() - hash.len() - 1;
    // PVC names are ASCII, so any byte index is a character boundary.
    let head = pvc[..room].trim_end_matches(['-', '.']);
    format!("{head}-{hash}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily() -> ScheduleName {
        "daily".parse().unwrap()
    }

    fn at(rfc3339: &str) -> Timestamp {
        rfc3339.parse().unwrap()
    }

    #[test]
    fn slots_round_down_from_the_epoch() {
        let hour = SignedDuration::from_hours(1);
        assert_eq!(
            slot_start(at("2026-11-25T02:59:59Z"), hour),
            at("2026-11-25T02:00:00Z")
        );
        assert_eq!(
            slot_start(at("2026-11-25T03:00:00Z"), hour),
            at("2026-11-25T03:00:00Z")
        );
        assert_eq!(
            slot_start(at("2026-11-25T23:10:00Z"), SignedDuration::from_hours(24)),
            at("2026-11-25T00:00:00Z")
        );
    }

    #[test]
    fn names_carry_pvc_schedule_and_slot() {
        assert_eq!(
            snapshot_name("db-data", &daily(), at("2026-11-25T02:00:00Z")),
            "db-data-daily-20261125-0200"
        );
    }

    #[test]
    fn long_pvc_names_are_cut_and_stay_distinct() {
        let slot = at("2026-11-25T02:00:00Z");
        let long_a = format!("{}a", "x".repeat(250));
        let long_b = format!("{}b", "x".repeat(250));
        let a = snapshot_name(&long_a, &daily(), slot);
        let b = snapshot_name(&long_b, &daily(), slot);
        assert_eq!(a.len(), MAX_NAME);
        assert_ne!(a, b);
        assert!(a.ends_with("-daily-20261125-0200"), "{a}");
        // The cut falls right after the dot.
        let dotted = format!("{}.{}", "y".repeat(223), "z".repeat(40));
        let cut = snapshot_name(&dotted, &daily(), slot);
        assert!(
            !cut.contains(".-"),
            "a cut must not end a segment on '.': {cut}"
        );
    }

    #[test]
    fn ownership_needs_both_labels_and_the_same_schedule() {
        let labels = owned_labels(&daily());
        assert!(is_owned(&labels, &daily()));
        assert!(!is_owned(&labels, &"hourly".parse().unwrap()));
        let mut foreign = labels.clone();
        foreign.remove(MANAGED_BY_LABEL);
        assert!(!is_owned(&foreign, &daily()));
        assert_eq!(
            owned_selector(&daily()),
            "app.kubernetes.io/managed-by=rds-csi-snapshot-schedule,rds.csi.mikrotik.com/snapshot-schedule=daily"
        );
    }
}

//! `rds-csi snapshot-schedule`: one run of a snapshot schedule, meant for a CronJob.
//!
//! A run takes a `snapshot.storage.k8s.io/v1` VolumeSnapshot of every selected PVC, labelled as
//! the schedule's own, then applies the retention to the schedule's own snapshots only. The
//! order is what keeps a failed run harmless:
//!
//! 1. **Select** the PVCs (label selector or name list; one namespace or all). A failed list
//!    selects nothing; a named PVC that is missing is one failure, and the others go on.
//! 2. **Create** one snapshot per PVC, each in a single request carrying its labels, so every
//!    snapshot that exists is complete. Names are deterministic per PVC, schedule and time slot:
//!    a retried run finds its snapshots there (409) and recognises them as its own.
//! 3. **Expire** only when every selected PVC has its snapshot for the slot: a run with any
//!    failure so far deletes nothing. Deletion removes only snapshots carrying this schedule's labels,
//!    and never a PVC's newest ready snapshot.
//!
//! `naming` and `retention` are pure; `cluster` is the only module that talks to Kubernetes.

mod args;
mod cluster;
mod error;
mod naming;
mod retention;
mod run;
mod settings;

pub use args::{Args, ArgsError};
pub use cluster::Cluster;
pub use error::{ApiFailure, ScheduleError};
pub use naming::{
    MANAGED_BY, MANAGED_BY_LABEL, SCHEDULE_LABEL, SLOT_ANNOTATION, owned_selector, slot_start,
    snapshot_name,
};
pub use retention::{Expiry, OwnedSnapshot, expired};
pub use run::{Report, RunFailed, SnapshotOf, run};
pub use settings::{Retention, Schedule, ScheduleName, Scope, Target};

//! The real driver (Identity and Controller over a UNIX socket) against an in-process rds-sim,
//! with the simulator's state checked after each step.

#[path = "controller/harness.rs"]
mod harness;

#[path = "controller/errors.rs"]
mod errors;
#[path = "controller/fencing.rs"]
mod fencing;
#[path = "controller/identity.rs"]
mod identity;
#[path = "controller/lifecycle.rs"]
mod lifecycle;
#[path = "controller/orphans.rs"]
mod orphans;
#[path = "controller/quirks.rs"]
mod quirks;
#[path = "controller/recovery.rs"]
mod recovery;

#[path = "controller/snapshot_btrfs.rs"]
mod snapshot_btrfs;
#[path = "controller/snapshot_copy_timeout.rs"]
mod snapshot_copy_timeout;
#[path = "controller/snapshot_data.rs"]
mod snapshot_data;

#[path = "controller/snapshot_faults.rs"]
mod snapshot_faults;
#[path = "controller/snapshot_lifecycle.rs"]
mod snapshot_lifecycle;
#[path = "controller/snapshot_probe.rs"]
mod snapshot_probe;
#[path = "controller/snapshot_restore.rs"]
mod snapshot_restore;

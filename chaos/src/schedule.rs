//! The schedule: one seed gives a list of steps, each either a workload operation (what the CO
//! asks of the driver, or what a node writes) or a fault for rds-sim to inject.
//!
//! Operations name their object by a number (`pick`) that the runner resolves against what the
//! workload believes exists at that moment, so the same operations stay meaningful when a
//! shrinker removes faults: the workload does not depend on the faults, only its retries do.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rds_sim::faults::{CrashPoint, Fault};
use serde::{Deserialize, Serialize};

/// A CSI call (with the retries a sidecar or kubelet makes) or a node's I/O.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// CreateVolume of a new, empty volume of `mib` MiB.
    Create {
        mib: u64,
    },
    /// CreateVolume from a snapshot.
    Restore {
        pick: u32,
    },
    /// CreateVolume from a volume.
    Clone {
        pick: u32,
    },
    /// CreateSnapshot of a volume, waited for until ready to use.
    Snapshot {
        pick: u32,
    },
    DeleteSnapshot {
        pick: u32,
    },
    /// ControllerPublishVolume to node `node`, then the node connects (its stage).
    Publish {
        pick: u32,
        node: u8,
    },
    /// A node writes a block of a published volume and flushes; the checksum is recorded once
    /// both returned.
    Write {
        pick: u32,
        block: u32,
        fill: u64,
    },
    /// A node reads every recorded block of a published volume back.
    Read {
        pick: u32,
    },
    /// ControllerExpandVolume by `mib` MiB.
    Expand {
        pick: u32,
        mib: u64,
    },
    /// The node disconnects (its unstage), then ControllerUnpublishVolume.
    Unpublish {
        pick: u32,
    },
    /// DeleteVolume, after unpublishing as the CO would.
    Delete {
        pick: u32,
    },
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::Restore { .. } => "restore",
            Op::Clone { .. } => "clone",
            Op::Snapshot { .. } => "snapshot",
            Op::DeleteSnapshot { .. } => "delete-snapshot",
            Op::Publish { .. } => "publish",
            Op::Write { .. } => "write",
            Op::Read { .. } => "read",
            Op::Expand { .. } => "expand",
            Op::Unpublish { .. } => "unpublish",
            Op::Delete { .. } => "delete",
        }
    }
}

/// A fault and how many operations it lasts: 0 for one that acts once (a crash, a restart, a
/// dropped session), more for a condition the runner switches off again (latency, a full pool).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chaos {
    pub fault: Fault,
    pub lasting: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Op(Op),
    Fault(Chaos),
}

/// Blocks a written volume holds: the first MiB, in 4 KiB blocks.
pub const BLOCKS: u32 = 256;
/// The nodes volumes are published to.
pub const NODES: u8 = 2;

/// The steps for `seed`: the same seed always gives the same schedule.
pub fn schedule(seed: u64, steps: usize) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..steps)
        .map(|_| {
            if rng.random_range(0..100) < 30 {
                Step::Fault(fault(&mut rng))
            } else {
                Step::Op(op(&mut rng))
            }
        })
        .collect()
}

fn op(rng: &mut StdRng) -> Op {
    let pick = rng.random();
    match rng.random_range(0..100) {
        0..=11 => Op::Create {
            mib: 16 * rng.random_range(1..=4),
        },
        12..=16 => Op::Restore { pick },
        17..=20 => Op::Clone { pick },
        21..=28 => Op::Snapshot { pick },
        29..=33 => Op::DeleteSnapshot { pick },
        34..=45 => Op::Publish {
            pick,
            node: rng.random_range(0..NODES),
        },
        46..=65 => Op::Write {
            pick,
            block: rng.random_range(0..BLOCKS),
            fill: rng.random(),
        },
        66..=72 => Op::Read { pick },
        73..=77 => Op::Expand {
            pick,
            mib: 16 * rng.random_range(1..=2),
        },
        78..=88 => Op::Unpublish { pick },
        _ => Op::Delete { pick },
    }
}

/// Commands of the driver's calls a fault may aim at.
const COMMANDS: [&str; 6] = [
    "^/disk add",
    "^/disk remove",
    "^/disk set",
    "^/file remove",
    "^/disk print",
    "^/disk copy",
];

/// Runtime failures in RouterOS's `failure: <reason>` form (../shared/routeros REFERENCE.md §4):
/// passing conditions the driver must report and a retry must get past. Never `no such item`,
/// which would be the RDS lying about what exists.
const ERRORS: [&str; 3] = [
    "failure: execution error",
    "failure: not enough space",
    "failure: device or resource busy",
];

fn fault(rng: &mut StdRng) -> Chaos {
    let command = COMMANDS[rng.random_range(0..COMMANDS.len())].to_owned();
    let once = |fault| Chaos { fault, lasting: 0 };
    let lasting = |fault, rng: &mut StdRng| Chaos {
        fault,
        lasting: rng.random_range(1..=4),
    };
    match rng.random_range(0..100) {
        0..=14 => once(Fault::Crash {
            pattern: command,
            point: if rng.random_bool(0.5) {
                CrashPoint::BeforeCommit
            } else {
                CrashPoint::AfterCommit
            },
            count: 1,
        }),
        15..=24 => once(Fault::Error {
            pattern: command,
            text: ERRORS[rng.random_range(0..ERRORS.len())].to_owned(),
            count: 1,
        }),
        25..=34 => once(Fault::DropSessions),
        35..=41 => once(Fault::Restart {
            downtime_ms: rng.random_range(0..=300),
        }),
        42..=51 => lasting(
            Fault::Latency {
                pattern: command,
                fixed_ms: rng.random_range(5..=50),
                jitter_ms: rng.random_range(0..=50),
            },
            rng,
        ),
        // Slower than the sidecar's deadline: the call is cancelled and retried while the
        // driver may still be running it.
        52..=55 => lasting(
            Fault::Latency {
                pattern: command,
                fixed_ms: 2_500,
                jitter_ms: 0,
            },
            rng,
        ),
        56..=70 => once(Fault::NvmeDrop {
            nqn: None,
            host: None,
        }),
        71..=76 => once(Fault::NvmeRefuse {
            duration_ms: rng.random_range(50..=400),
        }),
        77..=82 => lasting(
            Fault::NvmeLatency {
                latency_ms: rng.random_range(1..=30),
            },
            rng,
        ),
        83..=86 => lasting(Fault::NvmeStall { enabled: true }, rng),
        87..=91 => lasting(Fault::PoolFull { enabled: true }, rng),
        _ => lasting(Fault::ExitStatusOnError { enabled: true }, rng),
    }
}

/// The name a fault is counted under.
pub fn fault_kind(fault: &Fault) -> &'static str {
    match fault {
        Fault::Restart { .. } => "restart",
        Fault::Latency { .. } => "latency",
        Fault::Error { .. } => "error",
        Fault::Crash {
            point: CrashPoint::BeforeCommit,
            ..
        } => "crash-before-commit",
        Fault::Crash {
            point: CrashPoint::AfterCommit,
            ..
        } => "crash-after-commit",
        Fault::PoolFull { .. } => "pool-full",
        Fault::DropSessions => "drop-sessions",
        Fault::ExitStatusOnError { .. } => "exit-status-on-error",
        Fault::NvmeDrop { .. } => "nvme-drop",
        Fault::NvmeRefuse { .. } => "nvme-refuse",
        Fault::NvmeLatency { .. } => "nvme-latency",
        Fault::NvmeStall { .. } => "nvme-stall",
        Fault::Clear => "clear",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_seed_gives_one_schedule_and_a_shorter_run_is_its_prefix() {
        assert_eq!(schedule(42, 300), schedule(42, 300));
        assert_ne!(schedule(42, 300), schedule(43, 300));
        assert_eq!(schedule(42, 300)[..100], schedule(42, 100)[..]);
    }

    #[test]
    fn a_long_schedule_draws_every_fault_and_every_operation() {
        let steps = schedule(7, 5000);
        let faults: BTreeSet<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Fault(chaos) => Some(fault_kind(&chaos.fault)),
                Step::Op(_) => None,
            })
            .collect();
        let ops: BTreeSet<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Op(op) => Some(op.kind()),
                Step::Fault(_) => None,
            })
            .collect();
        // Every fault rds-sim has but the clear that ends them.
        assert_eq!(faults.len(), 12, "{faults:?}");
        assert_eq!(ops.len(), 11, "{ops:?}");
    }
}

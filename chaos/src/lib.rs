//! rds-chaos: a seeded workload through rds-csi's CSI API while rds-sim injects faults, with
//! invariants checked at the end, replay from the seed and shrinking of a failing schedule.
//!
//! The workload does what the sidecars and kubelet do (create, snapshot, restore, clone,
//! publish, stage, write, expand, unpublish, unstage, delete), each call with a short deadline
//! and retried until it converges. A node's NVMe/TCP connection and I/O are played by rds-sim's
//! userspace host ([`node`]), so the faults of the exported subsystem and its allow list hit
//! them. When the process can attach loop devices (root), the first node is also rds-csi's own
//! node plugin in loop mode: kubelet's stage, publish, expand, unpublish and unstage go through
//! its CSI API ([`kubelet`]), some writes go through the published block device, and nothing may
//! be left attached or mounted on the host at the end. Without root those steps are skipped,
//! and the run says so.

pub mod invariants;
pub mod kubelet;
pub mod model;
pub mod node;
pub mod runner;
pub mod schedule;
pub mod shrink;

use std::fmt;

pub use runner::{Faults, Runner, Stats};
pub use schedule::{Step, schedule};

/// A violated invariant or an operation that did not converge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The step it happened at; none for the checks at the end.
    pub step: Option<usize>,
    pub kind: &'static str,
    pub what: String,
    /// The RDS's last commands before it, for whoever debugs it.
    pub context: Vec<String>,
}

impl Failure {
    /// A failure of `kind`, its step and context filled in by the runner.
    pub fn new(kind: &'static str, what: String) -> Failure {
        Failure {
            step: None,
            kind,
            what,
            context: Vec::new(),
        }
    }

    /// The same failure again: the same kind at the same step.
    pub fn same_as(&self, other: &Failure) -> bool {
        self.kind == other.kind && self.step == other.step
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => write!(f, "step {step}: {}: {}", self.kind, self.what),
            None => write!(f, "at the end: {}: {}", self.kind, self.what),
        }
    }
}

impl std::error::Error for Failure {}

/// Known bugs a run can plant, to show that the invariants catch them. Only `rds-chaos --plant`
/// and the tests ask for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Plant {
    /// The node acknowledges a write whose I/O failed (a dropped NVMe/TCP connection) instead of
    /// retrying it: caught as a lost write.
    AckLostWrite,
}

/// One run of `seed`'s first `steps` steps with the faults `faults` keeps.
pub async fn run(
    seed: u64,
    steps: usize,
    faults: &Faults,
    plant: Option<Plant>,
    progress: runner::Progress<'_>,
) -> (Stats, Result<(), Failure>) {
    let schedule = schedule(seed, steps);
    match Runner::start(seed, plant).await {
        Ok(runner) => runner.run(&schedule, faults, progress).await,
        Err(failure) => (Stats::default(), Err(failure)),
    }
}

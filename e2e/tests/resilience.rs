//! The resilience suite, TC-09 and TC-10 of HARDWARE_VALIDATION.md, on the `qemu` target: rds-sim
//! in a container that testcontainers starts, stops, kills and disconnects (`src/container/`),
//! the controller on the host, and `rds-csi node` in a QEMU guest attaching with the real kernel
//! NVMe/TCP initiator. Each trial has its own container and guest.
//!
//! - TC-09: a pod's writer (checksummed O_DIRECT writes, `resilience/writer.rs`) on a published
//!   volume while the NVMe/TCP path is cut: shorter than `ctrlLossTmo` (the container
//!   disconnected, then rds-sim dropping and refusing connections), no error may reach the writer
//!   and I/O resumes by itself; longer, the volume is reported abnormal and a pod restart brings
//!   it back with what was acknowledged before the cut.
//! - TC-10: the container restarted, and in a second trial rds-sim killed with SIGKILL: mounted
//!   volumes resume, data reads back, the controller answers UNAVAILABLE before the deadline
//!   during the outage, recovers by itself, and a CreateVolume retried across the outage makes
//!   one disk.
//!
//! Needs Docker (`bash ci/docker.sh`), the release rds-sim (`cargo build --release -p rds-sim`),
//! QEMU and the guest (ci/qemu/), and the rds-csi binary (`cargo build -p rds-csi`); outside CI
//! a machine without Docker or QEMU skips every trial, saying why.

#[path = "resilience/rig.rs"]
mod rig;
#[path = "resilience/tc09.rs"]
mod tc09;
#[path = "resilience/tc10.rs"]
mod tc10;
#[path = "resilience/writer.rs"]
mod writer;

use libtest_mimic::{Completion, Failed, Trial};
use rds_e2e::config::TargetKind;

use rig::{NotStarted, Rig};
use tc10::Outage;

fn main() {
    // SAFETY: the first thing main does; no other thread runs yet.
    unsafe { rds_e2e::container::engine::install() };
    let trials = vec![
        trial(
            "tc09 cut shorter than ctrlLossTmo: partition, then NVMe drop",
            tc09::short_cuts,
        ),
        trial(
            "tc09 cut longer than ctrlLossTmo: abnormal, a pod restart recovers",
            tc09::long_cut,
        ),
        trial("tc10 rds restart: container restarted", |rig| {
            tc10::rds_restart(rig, Outage::Restart)
        }),
        trial("tc10 rds restart: rds-sim killed with SIGKILL", |rig| {
            tc10::rds_restart(rig, Outage::Kill)
        }),
    ];
    rds_e2e::suite::run(trials)
}

/// A trial of `case` on a rig of its own. The rig is the `qemu` target's; the suite runs there
/// under `RDS_E2E_TARGET=sim` too (the default, so CI runs it), and says why it does not elsewhere.
fn trial(name: &str, case: fn(&Rig) -> anyhow::Result<()>) -> Trial {
    Trial::ignorable_test(name, move || {
        match TargetKind::from_env().map_err(|e| Failed::from(e.to_string()))? {
            TargetKind::Sim | TargetKind::Qemu => {}
            other => {
                return Ok(Completion::ignored_with(format!(
                    "the resilience suite runs on the qemu target; on {other} follow \
                     HARDWARE_VALIDATION.md TC-09 and TC-10"
                )));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("rds-resilience-")
            .tempdir()
            .map_err(|e| Failed::from(format!("a work directory: {e}")))?;
        let rig = match rig::start(dir.path()) {
            Ok(rig) => rig,
            Err(NotStarted::Skip(reason)) => {
                eprintln!("SKIPPED: {reason}");
                return Ok(Completion::ignored_with(reason));
            }
            Err(NotStarted::Failed(reason)) => return Err(Failed::from(reason)),
        };
        let outcome = case(&rig).map_err(|e| {
            Failed::from(format!(
                "{e:#}\nnode plugin log:\n{}",
                rig.plugin.log_tail()
            ))
        });
        rig.shutdown();
        outcome.map(|()| Completion::Completed)
    })
}

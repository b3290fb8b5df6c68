//! TC-09, NVMe/TCP interruption: the path between the guest's kernel and the RDS cut while a pod
//! writes, for less and for longer than the volume's `ctrlLossTmo`.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rds_sim::faults::Fault;

use super::rig::{
    Rig, condition, controllers, dmesg_lines, dmesg_since, guest, mounted_volume, rds, retried,
};
use super::writer::{Writer, uptime};

/// Long enough that no cut of the short case reaches it (each lasts the kernel's detection,
/// within `NOTICED`, plus `HOLD`).
const SHORT_CTRL_LOSS_TMO: &str = "60";
/// Short, so the long case's kernel gives up soon after the cut.
const LONG_CTRL_LOSS_TMO: &str = "8";
/// How long the cut lasts once the kernel has noticed it.
const HOLD: Duration = Duration::from_secs(5);
/// The kernel notices a silent target within its keep-alive timeout.
const NOTICED: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TMO: &str = "5";

/// How the path is cut, and healed.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// The container disconnected from its network: the far end goes silent.
    Partition,
    /// rds-sim drops its NVMe/TCP connections and refuses new ones.
    NvmeDrop,
}

impl Cut {
    fn begin(self, rig: &Rig) -> anyhow::Result<()> {
        let rds = rds(rig);
        rig.block_on(async {
            match self {
                Cut::Partition => rds.disconnect().await,
                Cut::NvmeDrop => {
                    rds.inject(&Fault::NvmeRefuse {
                        duration_ms: 600_000,
                    })
                    .await?;
                    rds.inject(&Fault::NvmeDrop {
                        nqn: None,
                        host: None,
                    })
                    .await
                }
            }
        })
        .with_context(|| format!("cutting the path ({self:?})"))
    }

    fn end(self, rig: &Rig) -> anyhow::Result<()> {
        let rds = rds(rig);
        rig.block_on(async {
            match self {
                Cut::Partition => rds.reconnect().await,
                Cut::NvmeDrop => rds.inject(&Fault::NvmeRefuse { duration_ms: 0 }).await,
            }
        })
        .with_context(|| format!("healing the path ({self:?})"))
    }
}

fn parameters(ctrl_loss_tmo: &'static str) -> [(&'static str, &'static str); 3] {
    [
        ("ctrlLossTmo", ctrl_loss_tmo),
        ("reconnectDelay", "1"),
        ("keepAliveTmo", KEEP_ALIVE_TMO),
    ]
}

/// Waits until the guest's controller of `nqn` is no longer live: the kernel noticed the cut.
fn await_noticed(rig: &Rig, nqn: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + NOTICED;
    loop {
        let states = controllers(rig, nqn)?;
        if states.iter().any(|line| !line.ends_with(" live")) || states.is_empty() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the kernel did not notice the cut within {NOTICED:?}: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Both cuts, each shorter than `ctrlLossTmo`, under a writer that must see no error: I/O
/// resumes by itself and every acknowledged block reads back intact.
pub fn short_cuts(rig: &Rig) -> anyhow::Result<()> {
    let kubelet = mounted_volume(
        rig,
        "pvc-resil-tc09-short",
        &parameters(SHORT_CTRL_LOSS_TMO),
        "tc09",
    )?;
    let nqn = kubelet.volume.publish["nqn"].clone();
    let writer = Writer::start(rig, &kubelet.target)?;
    for cut in [Cut::Partition, Cut::NvmeDrop] {
        let dmesg = dmesg_lines(rig)?;
        writer.await_acks(rig, 2, Duration::from_secs(30))?;
        cut.begin(rig)?;
        let cut_at = Instant::now();
        await_noticed(rig, &nqn)?;
        std::thread::sleep(HOLD);
        cut.end(rig)?;
        let healed = uptime(rig)?;
        let cut_for = cut_at.elapsed();
        // The first write acknowledged after the path came back: the one held through the cut.
        let resumed = writer
            .await_ack_after(rig, healed, Duration::from_secs(60))
            .with_context(|| format!("after the {cut:?} cut of {cut_for:.1?}"))?
            .at
            - healed;
        let log = dmesg_since(rig, dmesg)?;
        ensure!(
            log.contains("Successfully reconnected"),
            "the kernel never reconnected after the {cut:?} cut, so the cut was not one:\n{log}"
        );
        let states = controllers(rig, &nqn)?;
        ensure!(
            states.len() == 1 && states[0].ends_with(" live"),
            "after the {cut:?} cut: {states:?}"
        );
        eprintln!(
            "tc09: {cut:?} cut for {cut_for:.1?} (ctrlLossTmo {SHORT_CTRL_LOSS_TMO} s): \
             I/O resumed {resumed:.2} s after the cut ended"
        );
    }
    writer.await_acks(rig, writer.acks(rig)?.len() + 2, Duration::from_secs(30))?;
    writer.stop(rig)?;
    let errors = writer.errors(rig)?;
    ensure!(errors.is_empty(), "an error reached the writer: {errors}");
    let verified = writer.verify(rig, &kubelet.target)?;
    eprintln!("tc09: {verified} acknowledged blocks read back intact");
    kubelet.unpublish(rig)?;
    kubelet.unstage(rig)?;
    rig.unpublish_and_delete(&kubelet.volume)?;
    Ok(())
}

/// A partition longer than `ctrlLossTmo`: the kernel gives the controller up, the writer sees
/// the failure, NodeGetVolumeStats reports the volume abnormal; once the path is back the
/// documented recovery, a pod restart (unpublish, unstage, stage, publish), brings it back with
/// every block acknowledged before the cut intact.
pub fn long_cut(rig: &Rig) -> anyhow::Result<()> {
    let kubelet = mounted_volume(
        rig,
        "pvc-resil-tc09-long",
        &parameters(LONG_CTRL_LOSS_TMO),
        "tc09-long",
    )?;
    let nqn = kubelet.volume.publish["nqn"].clone();
    let writer = Writer::start(rig, &kubelet.target)?;
    writer.await_acks(rig, 3, Duration::from_secs(30))?;
    Cut::Partition.begin(rig)?;
    let cut_at = Instant::now();
    let limit = Duration::from_secs(120);
    while !controllers(rig, &nqn)?.is_empty() {
        ensure!(
            cut_at.elapsed() < limit,
            "the kernel kept the controller {limit:?} into a cut longer than ctrlLossTmo"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "tc09: the kernel gave the controller up {:.1?} into the cut (ctrlLossTmo {LONG_CTRL_LOSS_TMO} s)",
        cut_at.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while writer.errors(rig)?.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "the writer saw no error after the controller was given up"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let abnormal = condition(rig, &kubelet)?;
    ensure!(
        abnormal.abnormal,
        "NodeGetVolumeStats calls the volume normal after its controller was given up: {abnormal:?}"
    );
    eprintln!(
        "tc09: volume condition during the cut: {:?}",
        abnormal.message
    );
    Cut::Partition.end(rig)?;
    // The kernel does not come back by itself once it gave up: still abnormal.
    let still = condition(rig, &kubelet)?;
    ensure!(
        still.abnormal,
        "abnormal, then normal with no recovery: {still:?}"
    );
    let limit = Duration::from_secs(120);
    retried("NodeUnpublishVolume", limit, || kubelet.unpublish(rig))?;
    retried("NodeUnstageVolume", limit, || kubelet.unstage(rig))?;
    retried("NodeStageVolume", limit, || kubelet.stage(rig))?;
    retried("NodePublishVolume", limit, || kubelet.publish(rig))?;
    let recovered = condition(rig, &kubelet)?;
    ensure!(!recovered.abnormal, "after the pod restart: {recovered:?}");
    let verified = writer.verify(rig, &kubelet.target)?;
    ensure!(verified > 3, "only {verified} blocks were acknowledged");
    eprintln!(
        "tc09: {verified} blocks acknowledged before the cut read back intact after the pod restart"
    );
    guest(
        rig,
        &format!("touch {}/after-recovery && sync", kubelet.target),
    )?;
    kubelet.unpublish(rig)?;
    kubelet.unstage(rig)?;
    rig.unpublish_and_delete(&kubelet.volume)?;
    Ok(())
}

//! TC-10, RDS restart: the rds-sim container restarted (`docker stop`, then start: a reboot) or
//! its process killed with SIGKILL (a crash) while pods have volumes mounted and a writer runs.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rds_csi::csi::v1::{DeleteVolumeRequest, ListVolumesRequest};
use rds_e2e::requests;
use rds_sim::faults::{CrashPoint, Fault};
use tonic::{Code, Status};

use super::rig::{Rig, SIZE, guest, mounted_volume, rds, retried};
use super::writer::{Writer, uptime};

/// The deadline the controller's sidecars give each call (the chart's `--timeout`).
const RPC_DEADLINE: Duration = Duration::from_secs(10);
/// How long the controller may take to serve again once the RDS is back: its breaker's open
/// period (`rds.breakerOpenMs`, 5 s against the container) plus a reconnect, with room for a
/// loaded machine.
const RECOVERY: Duration = Duration::from_secs(60);
/// ListVolumes calls during the outage, each failing to connect, by which the breaker (5 failed
/// connection attempts by default) must have opened.
const BREAKER_CALLS: usize = 12;
const PARAMETERS: [(&str, &str); 3] = [
    ("ctrlLossTmo", "120"),
    ("reconnectDelay", "1"),
    ("keepAliveTmo", "5"),
];

#[derive(Debug, Clone, Copy)]
pub enum Outage {
    /// `docker stop` (SIGTERM; rds-sim shuts down) and start.
    Restart,
    /// SIGKILL to rds-sim, and start.
    Kill,
}

/// One controller call with the sidecars' deadline: its outcome, or an error if it hung past it.
fn within_deadline<T>(
    rig: &Rig,
    what: &str,
    call: impl Future<Output = Result<T, Status>>,
) -> anyhow::Result<(Result<T, Status>, Duration)> {
    let started = Instant::now();
    let outcome = rig
        .block_on(async { tokio::time::timeout(RPC_DEADLINE, call).await })
        .map_err(|_| anyhow::anyhow!("{what} hung past the {RPC_DEADLINE:?} deadline"))?;
    Ok((outcome, started.elapsed()))
}

/// One controller call during the outage: UNAVAILABLE within the deadline, and how long it took.
fn unavailable<T>(
    rig: &Rig,
    what: &str,
    call: impl Future<Output = Result<T, Status>>,
) -> anyhow::Result<(Status, Duration)> {
    let (outcome, took) = within_deadline(rig, what, call)?;
    let status = outcome
        .err()
        .with_context(|| format!("{what} succeeded with the RDS down"))?;
    ensure!(
        status.code() == Code::Unavailable,
        "{what} during the outage: {status:?}"
    );
    Ok((status, took))
}

pub fn rds_restart(rig: &Rig, outage: Outage) -> anyhow::Result<()> {
    let writing = mounted_volume(rig, "pvc-resil-tc10-writer", &PARAMETERS, "tc10")?;
    let written = mounted_volume(rig, "pvc-resil-tc10-written", &PARAMETERS, "tc10")?;
    let pattern = format!("{}/pattern", written.target);
    let digest = guest(
        rig,
        &format!(
            "head -c 4194304 /dev/urandom >{pattern} && sync {pattern} && sha256sum <{pattern}"
        ),
    )?;
    let writer = Writer::start(rig, &writing.target)?;
    writer.await_acks(rig, 3, Duration::from_secs(30))?;

    // The first CreateVolume's `/disk add` commits, and its reply is lost with the connection
    // (rds-sim's after-commit crash): the provisioner will retry it across the outage.
    let container = rds(rig);
    let name = format!("pvc-resil-tc10-retried-{outage:?}").to_lowercase();
    let request = requests::create_volume(&name, SIZE, &Default::default());
    let mut controller = rig.controller.clone();
    let adds_before = rig.block_on(container.commands("/disk/add"))?;
    rig.block_on(container.inject(&Fault::Crash {
        pattern: "^/disk add ".into(),
        point: CrashPoint::AfterCommit,
        count: 1,
    }))?;
    let (first, took) = within_deadline(
        rig,
        "CreateVolume",
        controller.create_volume(request.clone()),
    )?;
    let first = first.map_or_else(|status| format!("{status:?}"), |_| "OK".to_owned());
    eprintln!(
        "tc10: {outage:?}: the first CreateVolume (its reply lost once) answered in {took:.2?}: {first}"
    );
    let adds = rig.block_on(container.commands("/disk/add"))?;
    let adds = &adds[adds_before.len().min(adds.len())..];
    ensure!(
        adds.len() == 1,
        "{} `/disk add` commands ran for one CreateVolume: {adds:#?}",
        adds.len()
    );

    rig.block_on(async {
        match outage {
            Outage::Restart => container.stop().await,
            Outage::Kill => container.kill().await,
        }
    })
    .with_context(|| format!("{outage:?}"))?;

    // The controller, during the outage: each call answers UNAVAILABLE before its deadline,
    // the retried CreateVolume as much as the calls after it, until the breaker opens and they
    // fail fast.
    let (status, took) = unavailable(
        rig,
        "CreateVolume",
        controller.create_volume(request.clone()),
    )?;
    eprintln!(
        "tc10: {outage:?}: CreateVolume answered UNAVAILABLE in {took:.2?}: {}",
        status.message()
    );
    let mut open = None;
    for _ in 0..BREAKER_CALLS {
        let (status, took) = unavailable(
            rig,
            "ListVolumes",
            controller.list_volumes(ListVolumesRequest::default()),
        )?;
        eprintln!("tc10: {outage:?}: ListVolumes answered UNAVAILABLE in {took:.2?}");
        if status.message().contains("failed in a row") {
            open = Some(took);
            break;
        }
    }
    let open = open.with_context(|| {
        format!("the controller's breaker did not open after {BREAKER_CALLS} failed calls")
    })?;
    eprintln!("tc10: {outage:?}: the breaker is open: calls fail in {open:.2?}");

    rig.block_on(container.start_again())
        .context("starting rds-sim again")?;
    let back = Instant::now();
    let restarted = uptime(rig)?;

    // The CreateVolume retried across the outage, as external-provisioner retries it: the same
    // controller (its SSH pool and breaker recovered), exactly one disk.
    let volume = retried("CreateVolume after the outage", RECOVERY, || {
        rig.block_on(controller.create_volume(request.clone()))
    })?
    .into_inner()
    .volume
    .context("CreateVolumeResponse without a volume")?;
    eprintln!(
        "tc10: {outage:?}: the controller served again {:.1?} after rds-sim was back",
        back.elapsed()
    );
    let again = rig
        .block_on(controller.create_volume(request.clone()))?
        .into_inner()
        .volume
        .context("CreateVolumeResponse without a volume")?;
    ensure!(
        again.volume_id == volume.volume_id,
        "{again:?} vs {volume:?}"
    );
    let slots = rig.block_on(container.slots())?;
    let disks = slots.iter().filter(|s| **s == volume.volume_id).count();
    ensure!(
        disks == 1,
        "{disks} disks in slot {} after a CreateVolume retried across the outage: {slots:?}",
        volume.volume_id
    );

    // The mounted volumes resumed: the writer went on without an error, both read back.
    let resumed = writer
        .await_ack_after(rig, restarted, Duration::from_secs(120))?
        .at
        - restarted;
    eprintln!("tc10: {outage:?}: the writer resumed {resumed:.2} s after rds-sim served again");
    writer.stop(rig)?;
    let errors = writer.errors(rig)?;
    ensure!(errors.is_empty(), "an error reached the writer: {errors}");
    let verified = writer.verify(rig, &writing.target)?;
    let after = guest(
        rig,
        &format!("echo 3 >/proc/sys/vm/drop_caches; sha256sum <{pattern}"),
    )?;
    ensure!(
        after == digest,
        "{pattern} read back different after the {outage:?}"
    );
    eprintln!(
        "tc10: {outage:?}: {verified} acknowledged blocks and the 4 MiB pattern read back intact"
    );

    rig.block_on(controller.delete_volume(DeleteVolumeRequest {
        volume_id: volume.volume_id,
        ..Default::default()
    }))?;
    for kubelet in [&writing, &written] {
        kubelet.unpublish(rig)?;
        kubelet.unstage(rig)?;
        rig.unpublish_and_delete(&kubelet.volume)?;
    }
    Ok(())
}

//! The controller driven the way the CSI sidecars drive it: every call with a short deadline
//! (tonic's request timeout, sent as `grpc-timeout`), cancelled when it passes, and retried with
//! backoff, while rds-sim copies at a rate that makes each copy last many deadlines.
//!
//! For every snapshot method: CreateSnapshot and CreateVolume from that snapshot complete, with
//! exactly one copy started on the RDS per target; while a copy runs, the snapshot reports
//! `ready_to_use: false`, and deleting its source is refused. A restore cut off by an RDS
//! restart leaves an incomplete volume that is refused for publish, snapshot and clone until
//! the retried CreateVolume completes it. Deletes interleaved with copies: a source stays while
//! a copy from it runs or is left pending, a target is removed whole once its copy ends. A copy
//! cut off by a controller restart is made again, once, by the retry to the new controller.
//!
//! These cases need rds-sim's copy rate, so they run on the `sim` target whatever
//! `RDS_E2E_TARGET` says.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rds_csi::csi::v1::{
    ControllerGetVolumeRequest, CreateSnapshotRequest, CreateVolumeRequest, DeleteSnapshotRequest,
    DeleteVolumeRequest, ListVolumesRequest, Volume, VolumeContentSource, volume_content_source,
};
use rds_csi::ids;
use rds_csi::snapshot::Method;
use rds_e2e::config::Settings;
use rds_e2e::requests::{self, laid_out_for};
use rds_e2e::sidecar::{is_retryable, succeeds, until, with_deadline};
use rds_e2e::target::Target;
use rds_sim::faults::Fault;
use rds_sim::sim::Sim;
use tonic::{Code, Request, Status};

const MIB: u64 = 1 << 20;
const VOLUME: u64 = 16 * MIB;
/// The copy rate that makes one copy last 8 of the callers' deadlines.
const RATE: u64 = VOLUME / 8;

/// How many copies into `target` the RDS was asked to start, by `method`'s command.
fn copies_into(sim: &Sim, method: Method, target: &str) -> usize {
    let arg = |args: &[(String, String)], name: &str| {
        args.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim_matches('"').to_owned())
    };
    sim.log_since(0)
        .iter()
        .filter(|record| {
            let command = &record.command;
            let args = &command.args;
            match method {
                Method::DiskCopy => {
                    command.path == "/disk/copy" && arg(args, "dst").as_deref() == Some(target)
                }
                Method::CopyFrom => {
                    command.path == "/disk/add"
                        && arg(args, "copy-from").is_some()
                        && arg(args, "slot").as_deref() == Some(target)
                }
                Method::Btrfs => {
                    command.path == "/disk/btrfs/subvolume/add"
                        && arg(args, "name").as_deref() == Some(target)
                }
            }
        })
        .count()
}

async fn snapshot_and_restore_under_deadlines(method: Method) {
    let (target, sim, source) = with_source(method).await;
    let controller = target.controller();
    sim.set_copy_rate(Some(RATE));

    let snapshot_name = requests::unique_name("deadline-snap");
    let snapshot_slot = ids::snapshot_id(&snapshot_name).to_string();
    let snapshot_request = snapshot_request(&snapshot_name, &source.volume_id, method);
    let deletes_refused = AtomicU32::new(0);
    let (snapshot, attempts) = until(
        &format!("{method}: CreateSnapshot"),
        || {
            let mut controller = controller.clone();
            let request = with_deadline(snapshot_request.clone());
            let source_id = source.volume_id.clone();
            let deletes_refused = &deletes_refused;
            async move {
                let answer = controller.create_snapshot(request).await?.into_inner();
                let snapshot = answer.snapshot.expect("a snapshot");
                // While the copy runs, its source cannot be deleted out from under it.
                if !snapshot.ready_to_use {
                    let refused = controller
                        .delete_volume(delete_volume(&source_id))
                        .await
                        .expect_err("deleting the source of a running copy must be refused");
                    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
                    deletes_refused.fetch_add(1, Ordering::SeqCst);
                }
                Ok(snapshot)
            }
        },
        |snapshot| snapshot.ready_to_use,
    )
    .await;
    if method == Method::DiskCopy {
        assert!(
            attempts > 1 && deletes_refused.into_inner() > 0,
            "{method}: a copy 8x the deadline finished within one call ({attempts} attempts)"
        );
    }
    assert_eq!(snapshot.size_bytes, VOLUME as i64);
    assert_eq!(
        copies_into(&sim, method, &snapshot_slot),
        1,
        "{method}: copies into the snapshot; log: {:#?}",
        sim.log_since(0)
    );

    let restored_name = requests::unique_name("deadline-restored");
    let restore = laid_out_for(
        restore_request(&restored_name, &snapshot.snapshot_id),
        method,
    );
    let restored = succeeds(&format!("{method}: CreateVolume from the snapshot"), || {
        let mut controller = controller.clone();
        let request = with_deadline(restore.clone());
        async move { Ok(controller.create_volume(request).await?.into_inner()) }
    })
    .await;
    let restored = restored.volume.expect("a volume");
    assert_eq!(
        copies_into(&sim, method, &restored.volume_id),
        1,
        "{method}: copies into the restored volume; log: {:#?}",
        sim.log_since(0)
    );

    sim.set_copy_rate(None);
    delete_all(
        &target,
        [
            &restored.volume_id,
            &snapshot.snapshot_id,
            &source.volume_id,
        ],
    )
    .await;
    target.shutdown().await.unwrap();
}

/// `CreateVolume` of `name` restored from `snapshot_id`.
fn restore_request(name: &str, snapshot_id: &str) -> CreateVolumeRequest {
    CreateVolumeRequest {
        volume_content_source: Some(snapshot_source(snapshot_id)),
        ..requests::create_volume(name, VOLUME, &HashMap::new())
    }
}

/// `CreateVolume` of `name` cloned from volume `volume_id`.
fn clone_request(name: &str, volume_id: &str) -> CreateVolumeRequest {
    CreateVolumeRequest {
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(volume_content_source::Type::Volume(
                volume_content_source::VolumeSource {
                    volume_id: volume_id.to_owned(),
                },
            )),
        }),
        ..requests::create_volume(name, VOLUME, &HashMap::new())
    }
}

fn snapshot_source(snapshot_id: &str) -> VolumeContentSource {
    VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: snapshot_id.to_owned(),
            },
        )),
    }
}

/// A restore whose `/disk copy` an RDS restart cut off leaves a volume that is incomplete: it
/// is refused for publish, snapshot and clone and reported abnormal, until the retried
/// CreateVolume copies again, once.
#[tokio::test]
async fn an_interrupted_restore_is_refused_until_its_retry_completes_it() {
    let (target, sim, source) = with_source(Method::DiskCopy).await;
    let mut controller = target.controller();
    let snapshot = controller
        .create_snapshot(snapshot_request(
            &requests::unique_name("interrupted-snap"),
            &source.volume_id,
            Method::DiskCopy,
        ))
        .await
        .expect("the snapshot is made")
        .into_inner()
        .snapshot
        .expect("a snapshot");

    sim.set_copy_rate(Some(RATE));
    let restored_name = requests::unique_name("interrupted-restored");
    let restored_id = ids::volume_id(&restored_name).to_string();
    let restore = restore_request(&restored_name, &snapshot.snapshot_id);
    let first = controller
        .create_volume(with_deadline(restore.clone()))
        .await
        .expect_err("a copy 8x the deadline is not done within it");
    assert_eq!(first.code(), Code::Aborted, "{first:?}");
    // Cut the copy off once it has moved some bytes.
    let mut copies = sim.subscribe_copies();
    copies
        .wait_for(|_| {
            sim.state()
                .copies
                .iter()
                .any(|copy| copy.dst.contains(&restored_id) && copy.copied > 0)
        })
        .await
        .expect("rds-sim announces copies");
    sim.inject(&Fault::Restart { downtime_ms: 200 }).unwrap();

    // Once the controller has seen the copy end, the volume is refused as incomplete.
    let node = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000016";
    let (refused, _) = until(
        "ControllerPublish of the incomplete volume",
        || {
            let mut controller = controller.clone();
            let request = requests::publish(&restored_id, node);
            async move {
                match controller.controller_publish_volume(request).await {
                    Ok(_) => panic!("an incomplete volume was published"),
                    Err(status) => Ok(status),
                }
            }
        },
        |status: &Status| status.message().contains("incomplete"),
    )
    .await;
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    let snapshotted = controller
        .create_snapshot(CreateSnapshotRequest {
            name: requests::unique_name("of-incomplete"),
            source_volume_id: restored_id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("an incomplete volume cannot be snapshotted");
    assert!(
        snapshotted.code() == Code::Aborted && snapshotted.message().contains("incomplete"),
        "{snapshotted:?}"
    );
    let cloned = controller
        .create_volume(clone_request(
            &requests::unique_name("clone-of-incomplete"),
            &restored_id,
        ))
        .await
        .expect_err("an incomplete volume cannot be cloned");
    assert!(
        cloned.code() == Code::Aborted && cloned.message().contains("incomplete"),
        "{cloned:?}"
    );
    let condition = controller
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: restored_id.clone(),
        })
        .await
        .expect("ControllerGetVolume answers")
        .into_inner()
        .status
        .and_then(|status| status.volume_condition)
        .expect("a volume condition");
    assert!(
        condition.abnormal && condition.message.contains("incomplete"),
        "{condition:?}"
    );
    let listed = controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .expect("ListVolumes answers")
        .into_inner()
        .entries
        .into_iter()
        .find(|entry| {
            entry
                .volume
                .as_ref()
                .is_some_and(|volume| volume.volume_id == restored_id)
        })
        .and_then(|entry| entry.status?.volume_condition)
        .expect("ListVolumes lists the incomplete volume with a condition");
    assert_eq!(listed, condition);
    // Its retry needs the snapshot it copies from.
    let kept = controller
        .delete_snapshot(delete_snapshot(&snapshot.snapshot_id))
        .await
        .expect_err("the snapshot of an incomplete restore cannot be deleted");
    assert!(
        kept.code() == Code::FailedPrecondition && kept.message().contains(&restored_id),
        "{kept:?}"
    );

    // The provisioner's retry copies again, once.
    succeeds("CreateVolume after the interruption", || {
        let mut controller = controller.clone();
        let request = with_deadline(restore.clone());
        async move { Ok(controller.create_volume(request).await?.into_inner()) }
    })
    .await;
    assert_eq!(
        copies_into(&sim, Method::DiskCopy, &restored_id),
        2,
        "the first copy and the one after the interruption; log: {:#?}",
        sim.log_since(0)
    );
    sim.set_copy_rate(None);
    delete_all(
        &target,
        [&restored_id, &snapshot.snapshot_id, &source.volume_id],
    )
    .await;
    target.shutdown().await.unwrap();
}

#[tokio::test]
async fn disk_copy_snapshot_and_restore_complete_under_short_deadlines() {
    snapshot_and_restore_under_deadlines(Method::DiskCopy).await;
}

#[tokio::test]
async fn copy_from_snapshot_and_restore_complete_under_short_deadlines() {
    snapshot_and_restore_under_deadlines(Method::CopyFrom).await;
}

#[tokio::test]
async fn btrfs_snapshot_and_restore_complete_under_short_deadlines() {
    snapshot_and_restore_under_deadlines(Method::Btrfs).await;
}

/// The sim target, its simulator, and a `VOLUME`-sized source volume laid out for `method`,
/// which the driver also clones volumes with.
async fn with_source(method: Method) -> (Target, Arc<Sim>, Volume) {
    let target = Target::start_with(&Settings::sim_for(method), |config| {
        config.controller.snapshot_method = method;
    })
    .await
    .expect("the sim target starts");
    let sim = target
        .sim()
        .expect("the sim target has a simulator")
        .clone();
    let name = requests::unique_name("source");
    let source = target
        .controller()
        .create_volume(laid_out_for(
            requests::create_volume(&name, VOLUME, &HashMap::new()),
            method,
        ))
        .await
        .unwrap_or_else(|status| panic!("{method}: creating the source: {status:?}"))
        .into_inner()
        .volume
        .expect("a volume");
    (target, sim, source)
}

fn snapshot_request(name: &str, source_id: &str, method: Method) -> CreateSnapshotRequest {
    CreateSnapshotRequest {
        name: name.to_owned(),
        source_volume_id: source_id.to_owned(),
        parameters: HashMap::from([("method".to_owned(), method.to_string())]),
        ..Default::default()
    }
}

fn delete_volume(volume_id: &str) -> Request<DeleteVolumeRequest> {
    with_deadline(DeleteVolumeRequest {
        volume_id: volume_id.to_owned(),
        ..Default::default()
    })
}

fn delete_snapshot(snapshot_id: &str) -> Request<DeleteSnapshotRequest> {
    with_deadline(DeleteSnapshotRequest {
        snapshot_id: snapshot_id.to_owned(),
        ..Default::default()
    })
}

/// Waits until `/disk copy` into `slot` has moved some bytes.
async fn copy_under_way(sim: &Sim, slot: &str) {
    sim.subscribe_copies()
        .wait_for(|_| {
            sim.state()
                .copies
                .iter()
                .any(|copy| copy.dst == slot && copy.copied > 0)
        })
        .await
        .expect("rds-sim announces copies");
}

/// Asserts that the delete of `slot` came after its copy had completed: the final comment
/// (no longer pending) was set on it before its `/disk remove`.
fn removed_after_its_copy(sim: &Sim, slot: &str) {
    let log = sim.log_since(0);
    let seq = |path: &str, also: &dyn Fn(&str) -> bool| {
        log.iter()
            .find(|record| {
                record.command.path == path && record.line.contains(slot) && also(&record.line)
            })
            .map(|record| record.seq)
    };
    let completed = seq("/disk/set", &|line| {
        line.contains("comment=") && !line.contains("pending:1")
    });
    let removed = seq("/disk/remove", &|_| true);
    assert!(
        completed.is_some() && completed < removed,
        "{slot} was removed (seq {removed:?}) before its copy completed (seq {completed:?}); \
         log: {log:#?}"
    );
}

/// Deletes a volume made from a snapshot, the snapshot and its source volume, in that order
/// (each may be gone already), and checks that the RDS holds no disk and no backing file.
async fn delete_all(target: &Target, [restored, snapshot, source]: [&str; 3]) {
    let mut controller = target.controller();
    for volume_id in [restored, source] {
        if volume_id == source {
            controller
                .delete_snapshot(delete_snapshot(snapshot))
                .await
                .unwrap_or_else(|status| panic!("deleting {snapshot}: {status:?}"));
        }
        controller
            .delete_volume(delete_volume(volume_id))
            .await
            .unwrap_or_else(|status| panic!("deleting {volume_id}: {status:?}"));
    }
    let left = target.sim().expect("a simulator").state();
    let images: Vec<_> = left
        .files
        .iter()
        .filter(|file| file.name.ends_with(".img"))
        .map(|file| &file.name)
        .collect();
    assert!(
        left.disks.is_empty() && images.is_empty(),
        "left: disks {:?}, files {images:?}",
        left.disks
    );
}

/// Makes the volume `create` asks for (a restore or a clone, copied by disk-copy at the slow
/// rate) as far as its first call goes; meanwhile `delete_source` must be refused, naming the
/// volume, and the volume's own delete waits: ABORTED saying so, then, retried, it goes through
/// once the copy has ended, the one copy into it.
async fn deleted_after_its_copy(
    target: &Target,
    create: CreateVolumeRequest,
    delete_source: impl AsyncFnOnce() -> Result<(), Status>,
) {
    let sim = target.sim().expect("a simulator");
    let controller = target.controller();
    let id = ids::volume_id(&create.name).to_string();
    let first = controller
        .clone()
        .create_volume(with_deadline(create))
        .await
        .expect_err("a copy 8x the deadline is not done within it");
    assert_eq!(first.code(), Code::Aborted, "{first:?}");
    let refused = delete_source()
        .await
        .expect_err("the source of a running copy cannot be deleted");
    assert!(
        refused.code() == Code::FailedPrecondition && refused.message().contains(&id),
        "{refused:?}"
    );
    let waited = controller
        .clone()
        .delete_volume(delete_volume(&id))
        .await
        .expect_err("a volume being copied is not deleted within the deadline");
    assert!(
        waited.code() == Code::Aborted && waited.message().contains("being copied from"),
        "{waited:?}"
    );
    succeeds(&format!("DeleteVolume of {id}, being copied"), || {
        let mut controller = controller.clone();
        let request = delete_volume(&id);
        async move { controller.delete_volume(request).await }
    })
    .await;
    removed_after_its_copy(sim, &id);
    assert_eq!(copies_into(sim, Method::DiskCopy, &id), 1);
}

/// While a restore copies from a snapshot, or a clone from a volume, that source cannot be
/// deleted (FAILED_PRECONDITION naming the volume being made); a DeleteVolume of that volume,
/// or a DeleteSnapshot of a snapshot still being made, answers ABORTED until the copy ends and
/// then removes the whole disk and its file, never one a copy is still writing.
#[tokio::test]
async fn deletes_during_a_copy_protect_its_source_and_wait_for_its_target() {
    let method = Method::DiskCopy;
    let (target, sim, source) = with_source(method).await;
    let controller = target.controller();
    let snapshot = controller
        .clone()
        .create_snapshot(snapshot_request(
            &requests::unique_name("restored-from"),
            &source.volume_id,
            method,
        ))
        .await
        .expect("the snapshot is made")
        .into_inner()
        .snapshot
        .expect("a snapshot");

    sim.set_copy_rate(Some(RATE));
    let restored_name = requests::unique_name("restoring");
    let restored_id = ids::volume_id(&restored_name).to_string();
    deleted_after_its_copy(
        &target,
        restore_request(&restored_name, &snapshot.snapshot_id),
        async || {
            let mut controller = controller.clone();
            let request = delete_snapshot(&snapshot.snapshot_id);
            controller.delete_snapshot(request).await.map(drop)
        },
    )
    .await;
    let clone_name = requests::unique_name("cloning");
    deleted_after_its_copy(
        &target,
        clone_request(&clone_name, &source.volume_id),
        async || {
            let mut controller = controller.clone();
            let request = delete_volume(&source.volume_id);
            controller.delete_volume(request).await.map(drop)
        },
    )
    .await;

    let making_name = requests::unique_name("being-made");
    let making = controller
        .clone()
        .create_snapshot(with_deadline(snapshot_request(
            &making_name,
            &source.volume_id,
            method,
        )))
        .await
        .expect("CreateSnapshot answers while its copy runs")
        .into_inner()
        .snapshot
        .expect("a snapshot");
    assert!(!making.ready_to_use, "{making:?}");
    succeeds("DeleteSnapshot of the snapshot being made", || {
        let mut controller = controller.clone();
        let request = delete_snapshot(&making.snapshot_id);
        async move { Ok(controller.delete_snapshot(request).await?.into_inner()) }
    })
    .await;
    removed_after_its_copy(&sim, &making.snapshot_id);

    sim.set_copy_rate(None);
    // The snapshot goes once no restore copies from it.
    delete_all(
        &target,
        [&restored_id, &snapshot.snapshot_id, &source.volume_id],
    )
    .await;
    target.shutdown().await.unwrap();
}

/// Holds `method`'s copy into `slot` on the RDS until the driver restarts: `/disk copy` at a
/// slow rate, `/disk add copy-from=` behind a latency longer than any test.
fn hold_copies_into(sim: &Sim, method: Method, slot: &str) {
    match method {
        Method::DiskCopy => sim.set_copy_rate(Some(RATE)),
        _ => sim
            .inject(&Fault::Latency {
                pattern: format!("^/disk add .*{slot}"),
                fixed_ms: 600_000,
                jitter_ms: 0,
            })
            .unwrap(),
    }
}

/// The first answer of `call` that a sidecar would not retry, which must be a refusal.
async fn refusal<T, F, Fut>(what: &str, mut call: F) -> Status
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let answer = |answer: Result<T, Status>| match answer {
        Ok(answer) => panic!("{what} must be refused, but answered {answer:?}"),
        Err(status) if is_retryable(status.code()) => Err(status),
        Err(status) => Ok(status),
    };
    succeeds(what, || {
        let call = call();
        async move { answer(call.await) }
    })
    .await
}

/// What cuts a copy off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    /// The driver is dropped and a new one started over the same RDS.
    Controller,
    /// rds-sim restarts: every session and copy ends, the driver stays.
    Rds,
}

/// Restarts the driver or the RDS once `method`'s copy into `slot` is under way, and waits
/// until the copy has stopped on the RDS; a restarted driver must also leave no session there.
async fn restart_mid_copy(
    target: Target,
    sim: &Sim,
    method: Method,
    slot: &str,
    restart: Restart,
) -> Target {
    if method == Method::DiskCopy {
        copy_under_way(sim, slot).await;
    }
    let target = match restart {
        Restart::Controller => target.restart_driver().await.expect("the driver restarts"),
        Restart::Rds => {
            sim.inject(&Fault::Restart { downtime_ms: 200 }).unwrap();
            target
        }
    };
    for _ in 0..200 {
        let state = sim.state();
        if state.copies.is_empty() && (restart == Restart::Rds || state.sessions.is_empty()) {
            sim.set_copy_rate(None);
            sim.inject(&Fault::Clear).unwrap();
            return target;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{method}, {restart:?} restart: sessions {:?} and copies {:?} are left on the RDS",
        sim.state().sessions,
        sim.state().copies
    );
}

/// A copy cut off by a restart of the controller (the driver dropped, a new one started over
/// the same RDS) or of the RDS is made again once by the retry, found from what the RDS holds;
/// until then a disk left pending still protects its source from deletion.
async fn copies_cut_off_by_a_restart_are_made_again_once(method: Method, restart: Restart) {
    let (mut target, sim, source) = with_source(method).await;
    let snapshot_name = requests::unique_name("cut-snap");
    let snapshot_slot = ids::snapshot_id(&snapshot_name).to_string();
    let snapshot_request = snapshot_request(&snapshot_name, &source.volume_id, method);
    hold_copies_into(&sim, method, &snapshot_slot);
    let first = target
        .controller()
        .create_snapshot(with_deadline(snapshot_request.clone()))
        .await;
    assert!(
        first.as_ref().map_or_else(
            |s| s.code() == Code::Aborted,
            |a| {
                !a.get_ref()
                    .snapshot
                    .as_ref()
                    .is_some_and(|s| s.ready_to_use)
            }
        ),
        "{method}: {first:?}"
    );
    target = restart_mid_copy(target, &sim, method, &snapshot_slot, restart).await;
    let controller = target.controller();
    if method == Method::DiskCopy {
        let refused = refusal("DeleteVolume of the source of a pending snapshot", || {
            let mut controller = controller.clone();
            let request = delete_volume(&source.volume_id);
            async move { controller.delete_volume(request).await }
        })
        .await;
        assert!(
            refused.code() == Code::FailedPrecondition
                && refused.message().contains(&snapshot_slot),
            "{refused:?}"
        );
    }
    let (snapshot, _) = until(
        &format!("{method}: CreateSnapshot after a {restart:?} restart"),
        || {
            let mut controller = controller.clone();
            let request = with_deadline(snapshot_request.clone());
            async move { Ok(controller.create_snapshot(request).await?.into_inner()) }
        },
        |answer| answer.snapshot.as_ref().is_some_and(|s| s.ready_to_use),
    )
    .await;
    let snapshot = snapshot.snapshot.expect("a snapshot");
    // `/disk copy` ran twice: the one cut off and the retry's. A `copy-from` add the restart
    // dropped never ran.
    let expected = if method == Method::DiskCopy { 2 } else { 1 };
    assert_eq!(
        copies_into(&sim, method, &snapshot_slot),
        expected,
        "{method}: copies into the snapshot; log: {:#?}",
        sim.log_since(0)
    );

    let restored_name = requests::unique_name("cut-restore");
    let restored_id = ids::volume_id(&restored_name).to_string();
    let restore = restore_request(&restored_name, &snapshot.snapshot_id);
    hold_copies_into(&sim, method, &restored_id);
    let first = target
        .controller()
        .create_volume(with_deadline(restore.clone()))
        .await
        .expect_err("a held copy is not done within the deadline");
    assert_eq!(first.code(), Code::Aborted, "{method}: {first:?}");
    target = restart_mid_copy(target, &sim, method, &restored_id, restart).await;
    let controller = target.controller();
    if method == Method::DiskCopy {
        let refused = refusal(
            "DeleteSnapshot of the snapshot of a pending restore",
            || {
                let mut controller = controller.clone();
                let request = delete_snapshot(&snapshot.snapshot_id);
                async move { controller.delete_snapshot(request).await }
            },
        )
        .await;
        assert!(
            refused.code() == Code::FailedPrecondition && refused.message().contains(&restored_id),
            "{refused:?}"
        );
    }
    succeeds(
        &format!("{method}: CreateVolume after a {restart:?} restart"),
        || {
            let mut controller = controller.clone();
            let request = with_deadline(restore.clone());
            async move { Ok(controller.create_volume(request).await?.into_inner()) }
        },
    )
    .await;
    assert_eq!(
        copies_into(&sim, method, &restored_id),
        expected,
        "{method}: copies into the restored volume; log: {:#?}",
        sim.log_since(0)
    );

    delete_all(
        &target,
        [&restored_id, &snapshot.snapshot_id, &source.volume_id],
    )
    .await;
    target.shutdown().await.unwrap();
}

#[tokio::test]
async fn disk_copy_copies_cut_off_by_a_controller_restart_are_made_again_once() {
    copies_cut_off_by_a_restart_are_made_again_once(Method::DiskCopy, Restart::Controller).await;
}

#[tokio::test]
async fn copy_from_copies_cut_off_by_a_controller_restart_are_made_again_once() {
    copies_cut_off_by_a_restart_are_made_again_once(Method::CopyFrom, Restart::Controller).await;
}

#[tokio::test]
async fn disk_copy_copies_cut_off_by_an_rds_restart_are_made_again_once() {
    copies_cut_off_by_a_restart_are_made_again_once(Method::DiskCopy, Restart::Rds).await;
}

#[tokio::test]
async fn copy_from_copies_cut_off_by_an_rds_restart_are_made_again_once() {
    copies_cut_off_by_a_restart_are_made_again_once(Method::CopyFrom, Restart::Rds).await;
}

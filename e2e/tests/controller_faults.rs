//! The controller under rds-sim's faults: a connection that drops around the commit of
//! `/disk add`, commands slower than the driver's timeout, and a restart of the RDS in the middle
//! of a burst of creates. Each case ends by checking what the RDS holds: every volume exactly once
//! (one disk, one backing file) or not at all, and no backing file without its disk.
//!
//! These cases need rds-sim's fault injection, so they run on the `sim` target whatever
//! `RDS_E2E_TARGET` says.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rds_csi::config::Config;
use rds_csi::csi::v1::{
    ControllerExpandVolumeRequest, CreateSnapshotRequest, CreateVolumeRequest,
    DeleteSnapshotRequest, DeleteVolumeRequest, GetCapacityRequest, ListSnapshotsRequest,
    ListVolumesRequest,
};
use rds_csi::ids;
use rds_csi::snapshot::Method;
use rds_e2e::config::Settings;
use rds_e2e::requests;
use rds_e2e::sidecar::{is_retryable, succeeds, with_deadline};
use rds_e2e::target::Target;
use rds_sim::faults::{CrashPoint, Fault};
use rds_sim::sim::Sim;
use tonic::Code;

const GIB: u64 = 1 << 30;

async fn start(adjust: impl FnOnce(&mut Config)) -> Target {
    Target::start_with(&Settings::sim_defaults(), adjust)
        .await
        .expect("the sim target starts")
}

fn sim(target: &Target) -> &Arc<Sim> {
    target.sim().expect("the sim target has a simulator")
}

fn create_request(name: &str) -> CreateVolumeRequest {
    requests::create_volume(name, GIB, &HashMap::new())
}

/// What the RDS holds: each disk's slot with its backing file, and every `.img` file.
struct Holdings {
    disks: Vec<(String, String)>,
    images: BTreeSet<String>,
}

impl Holdings {
    fn of(sim: &Sim) -> Holdings {
        let state = sim.state();
        Holdings {
            disks: state
                .disks
                .into_iter()
                .map(|disk| (disk.slot, disk.file_path))
                .collect(),
            images: state
                .files
                .into_iter()
                .map(|file| file.name)
                .filter(|name| name.ends_with(".img"))
                .collect(),
        }
    }

    /// How many disks sit in the slot of volume `name`, each checked to have its backing file.
    fn copies_of(&self, name: &str) -> usize {
        let slot = ids::volume_id(name);
        let copies: Vec<_> = self
            .disks
            .iter()
            .filter(|(disk_slot, _)| disk_slot == slot.as_str())
            .collect();
        for (_, file) in &copies {
            assert!(
                self.images.contains(file),
                "disk {slot} has no backing file {file}; files: {:?}",
                self.images
            );
        }
        copies.len()
    }

    /// Backing files that no disk uses.
    fn orphans(&self) -> Vec<&String> {
        let used: BTreeSet<&String> = self.disks.iter().map(|(_, file)| file).collect();
        self.images.iter().filter(|f| !used.contains(f)).collect()
    }
}

/// Deletes the volumes and checks that the RDS is left empty.
async fn delete_all(target: &Target, names: &[String]) {
    let mut controller = target.controller();
    for name in names {
        controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: ids::volume_id(name).to_string(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("deleting {name}: {status:?}"));
    }
    let left = Holdings::of(sim(target));
    assert!(
        left.disks.is_empty() && left.images.is_empty(),
        "after deleting every volume the RDS still holds disks {:?} and files {:?}",
        left.disks,
        left.images
    );
}

fn disk_adds(sim: &Sim) -> usize {
    sim.log_since(0)
        .iter()
        .filter(|record| record.command.path == "/disk/add")
        .count()
}

async fn crash_around_the_add_then_retry(point: CrashPoint) {
    let target = start(|_| {}).await;
    let sim = sim(&target);
    sim.inject(&Fault::Crash {
        pattern: "^/disk add".into(),
        point,
        count: 1,
    })
    .unwrap();
    let name = requests::unique_name("crash");
    let mut controller = target.controller();
    let first = controller.create_volume(create_request(&name)).await;
    let retried = controller
        .create_volume(create_request(&name))
        .await
        .unwrap_or_else(|status| panic!("the retried create failed: {status:?}"))
        .into_inner()
        .volume
        .expect("a created volume");
    assert_eq!(retried.volume_id, ids::volume_id(&name).as_str());
    assert_eq!(retried.capacity_bytes, GIB as i64);
    match first {
        Ok(first) => assert_eq!(
            first.into_inner().volume.map(|v| v.volume_id),
            Some(retried.volume_id.clone()),
            "the first create and its retry answered different volumes"
        ),
        Err(status) => assert!(
            matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded),
            "a create cut off by a crash must fail retryably, not with {status:?}"
        ),
    }
    let holdings = Holdings::of(sim);
    assert_eq!(holdings.copies_of(&name), 1, "disks: {:?}", holdings.disks);
    assert_eq!(holdings.disks.len(), 1, "disks: {:?}", holdings.disks);
    assert!(holdings.orphans().is_empty(), "{:?}", holdings.orphans());
    // Whether or not the crashed add committed, exactly one add ran: the retry read the disk
    // instead of adding it again.
    assert_eq!(disk_adds(sim), 1, "log: {:#?}", sim.log_since(0));
    delete_all(&target, &[name]).await;
    target.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_create_whose_connection_drops_after_the_commit_is_found_by_its_retry() {
    crash_around_the_add_then_retry(CrashPoint::AfterCommit).await;
}

#[tokio::test]
async fn a_create_whose_connection_drops_before_the_commit_is_made_by_its_retry() {
    crash_around_the_add_then_retry(CrashPoint::BeforeCommit).await;
}

/// Latency far past `command_timeout_ms` on the commands `pattern` matches.
async fn slow_commands_then_retry(pattern: &str) {
    const TIMEOUT_MS: u64 = 300;
    let target = start(|config| config.rds.command_timeout_ms = TIMEOUT_MS).await;
    let sim = sim(&target);
    sim.inject(&Fault::Latency {
        pattern: pattern.into(),
        fixed_ms: TIMEOUT_MS * 5,
        jitter_ms: 0,
    })
    .unwrap();
    let name = requests::unique_name("slow");
    let mut controller = target.controller();
    let status = controller
        .create_volume(create_request(&name))
        .await
        .expect_err("a create slower than the command timeout cannot succeed");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Unavailable),
        "latency {pattern:?}: {status:?}"
    );
    sim.inject(&Fault::Clear).unwrap();
    let volume = controller
        .create_volume(create_request(&name))
        .await
        .unwrap_or_else(|status| panic!("latency {pattern:?}: the retry failed: {status:?}"))
        .into_inner()
        .volume
        .expect("a created volume");
    assert_eq!(volume.volume_id, ids::volume_id(&name).as_str());
    let holdings = Holdings::of(sim);
    assert_eq!(holdings.copies_of(&name), 1, "disks: {:?}", holdings.disks);
    assert!(holdings.orphans().is_empty(), "{:?}", holdings.orphans());
    delete_all(&target, &[name]).await;
    target.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_disk_add_slower_than_the_timeout_fails_retryably_and_a_retry_converges() {
    slow_commands_then_retry("^/disk add").await;
}

#[tokio::test]
async fn an_rds_slower_than_the_timeout_fails_retryably_and_a_retry_converges() {
    slow_commands_then_retry(".").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_burst_leaves_every_volume_created_once_or_absent() {
    const BURST: usize = 20;
    let target = start(|config| config.controller.max_concurrent_creates = BURST).await;
    let sim = sim(&target).clone();
    // Slow enough that the burst is still in flight when the restart comes.
    sim.inject(&Fault::Latency {
        pattern: ".".into(),
        fixed_ms: 20,
        jitter_ms: 10,
    })
    .unwrap();
    let names: Vec<String> = (0..BURST).map(|_| requests::unique_name("burst")).collect();
    let creates: Vec<_> = names
        .iter()
        .map(|name| {
            let mut controller = target.controller();
            let request = create_request(name);
            tokio::spawn(async move { controller.create_volume(request).await })
        })
        .collect();

    // Restart once a third of the disks are added: some creates are done, some in flight. The
    // simulator announces no adds, so its log is polled.
    while disk_adds(&sim) < BURST / 3 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sim.inject(&Fault::Restart { downtime_ms: 300 }).unwrap();

    let mut failed = Vec::new();
    for (name, create) in names.iter().zip(creates) {
        match create.await.unwrap() {
            Ok(response) => assert_eq!(
                response.into_inner().volume.map(|v| v.volume_id),
                Some(ids::volume_id(name).to_string())
            ),
            Err(status) => failed.push((name.clone(), status)),
        }
    }
    assert!(
        !failed.is_empty() && failed.len() < BURST,
        "the restart should cut the burst in two; failed: {failed:?}"
    );
    let holdings = Holdings::of(&sim);
    for name in &names {
        assert!(
            holdings.copies_of(name) <= 1,
            "{name}: {:?}",
            holdings.disks
        );
    }
    assert!(holdings.orphans().is_empty(), "{:?}", holdings.orphans());

    // A CO retries with backoff; the driver's breaker may fail calls fast for a while.
    sim.inject(&Fault::Clear).unwrap();
    let controller = target.controller();
    for (name, _) in &failed {
        succeeds(name, || {
            let mut controller = controller.clone();
            async move { controller.create_volume(create_request(name)).await }
        })
        .await;
    }
    let holdings = Holdings::of(&sim);
    for name in &names {
        assert_eq!(holdings.copies_of(name), 1, "{name}: {:?}", holdings.disks);
    }
    assert_eq!(holdings.disks.len(), BURST);
    assert!(holdings.orphans().is_empty(), "{:?}", holdings.orphans());
    delete_all(&target, &names).await;
    target.shutdown().await.unwrap();
}

/// Makes `call` once with the connection dropping right after `step` commits (it must fail
/// retryably), then retries it until it succeeds.
async fn crash_after_then_retry<T, F, Fut>(sim: &Sim, step: &str, what: &str, mut call: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    sim.inject(&Fault::Crash {
        pattern: step.into(),
        point: CrashPoint::AfterCommit,
        count: 1,
    })
    .unwrap();
    let Err(status) = call().await else {
        panic!("{what}: a call cut off by a crash on {step:?} cannot succeed");
    };
    assert!(
        is_retryable(status.code()),
        "{what}: a call cut off by a crash on {step:?} must fail retryably, not with {status:?}"
    );
    succeeds(&format!("{what} after a crash on {step:?}"), call).await;
}

/// The removal of a Btrfs subvolume: a volume's own, or a `btrfs` snapshot.
const SUBVOLUME_REMOVE: &str = "^/disk btrfs subvolume remove";

/// The mutating steps of a delete, in order: `/disk remove`, then `/file remove` of the file
/// `/disk remove` keeps.
const DELETE_STEPS: [&str; 2] = ["^/disk remove", "^/file remove"];

/// Where a volume's file is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// The driver's `rds.baseDir`.
    Default,
    /// A StorageClass `baseDir`.
    BaseDir(&'static str),
    /// A Btrfs subvolume of the volume's own (StorageClass `layout: subvolume`).
    OwnSubvolume,
}

/// A DeleteVolume whose connection drops right after `step` committed, then retried: the retry
/// finds the file where the volume was made (`placement`) and leaves neither disk, nor file,
/// nor subvolume.
async fn crash_after_a_delete_step_then_retry(step: &str, placement: Placement) {
    let (settings, parameter) = match placement {
        Placement::Default => (Settings::sim_defaults(), None),
        Placement::BaseDir(dir) => (Settings::sim_defaults(), Some(("baseDir", dir))),
        Placement::OwnSubvolume => (
            Settings::sim_for(Method::Btrfs),
            Some(("layout", "subvolume")),
        ),
    };
    let target = Target::start_with(&settings, |_| {})
        .await
        .expect("the sim target starts");
    let sim = sim(&target);
    let name = requests::unique_name("delete-crash");
    let parameters: HashMap<String, String> = parameter
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .into_iter()
        .collect();
    let controller = target.controller();
    controller
        .clone()
        .create_volume(requests::create_volume(&name, GIB, &parameters))
        .await
        .unwrap_or_else(|status| panic!("creating {name}: {status:?}"));
    let made = Holdings::of(sim);
    assert_eq!(made.copies_of(&name), 1, "disks: {:?}", made.disks);
    if let Placement::BaseDir(dir) = placement {
        assert!(
            made.images
                .iter()
                .all(|file| file.contains(&format!("/{dir}/"))),
            "the file is not in baseDir {dir}: {:?}",
            made.images
        );
    }

    let request = DeleteVolumeRequest {
        volume_id: ids::volume_id(&name).to_string(),
        ..Default::default()
    };
    crash_after_then_retry(sim, step, &format!("deleting {name}"), || {
        let mut controller = controller.clone();
        let request = request.clone();
        async move { controller.delete_volume(request).await }
    })
    .await;
    let left = Holdings::of(sim);
    let subvolumes = sim.state().subvolumes;
    assert!(
        left.disks.is_empty() && left.images.is_empty() && subvolumes.is_empty(),
        "{step} ({placement:?}): the retried delete left disks {:?}, files {:?} and \
         subvolumes {subvolumes:?}",
        left.disks,
        left.images
    );
    target.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_retried_delete_after_a_crash_at_every_step_leaves_nothing() {
    for step in DELETE_STEPS {
        crash_after_a_delete_step_then_retry(step, Placement::Default).await;
    }
}

#[tokio::test]
async fn a_retried_delete_after_a_crash_finds_the_file_in_the_storage_class_base_dir() {
    for step in DELETE_STEPS {
        crash_after_a_delete_step_then_retry(step, Placement::BaseDir("fast")).await;
    }
}

#[tokio::test]
async fn a_retried_delete_after_a_crash_removes_the_volumes_own_subvolume() {
    for step in DELETE_STEPS.iter().chain(&[SUBVOLUME_REMOVE]) {
        crash_after_a_delete_step_then_retry(step, Placement::OwnSubvolume).await;
    }
}

/// How many `/disk set … file-size=` commands the RDS ran on `slot`.
fn resizes_of(sim: &Sim, slot: &str) -> usize {
    sim.log_since(0)
        .iter()
        .filter(|record| {
            record.command.path == "/disk/set"
                && record.line.contains("file-size")
                && record.line.contains(slot)
        })
        .count()
}

/// ControllerExpandVolume driven like external-resizer (a short deadline, retries): its resize
/// held past the deadline and dropped, then one whose answer a crash loses after the commit,
/// then an RDS restart and latency on every command. The retries converge on the size, which
/// the RDS set exactly once.
#[tokio::test]
async fn an_expand_retried_through_latency_a_crash_and_a_restart_grows_the_volume_once() {
    let target = start(|_| {}).await;
    let sim = sim(&target).clone();
    let name = requests::unique_name("expand");
    let slot = ids::volume_id(&name).to_string();
    let controller = target.controller();
    controller
        .clone()
        .create_volume(create_request(&name))
        .await
        .unwrap_or_else(|status| panic!("creating {name}: {status:?}"));
    let expand = ControllerExpandVolumeRequest {
        volume_id: slot.clone(),
        capacity_range: Some(requests::exact_capacity(2 * GIB)),
        ..Default::default()
    };
    let call = || {
        let mut controller = controller.clone();
        let request = with_deadline(expand.clone());
        async move {
            controller
                .controller_expand_volume(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };

    let resize = "^/disk set .*file-size";
    sim.inject(&Fault::Latency {
        pattern: resize.into(),
        fixed_ms: 600_000,
        jitter_ms: 0,
    })
    .unwrap();
    let held = call().await.expect_err("a resize held past the deadline");
    assert!(is_retryable(held.code()), "{held:?}");
    sim.inject(&Fault::Clear).unwrap();
    sim.inject(&Fault::Crash {
        pattern: resize.into(),
        point: CrashPoint::AfterCommit,
        count: 1,
    })
    .unwrap();
    let lost = call().await.expect_err("a resize whose answer is lost");
    assert!(is_retryable(lost.code()), "{lost:?}");
    sim.inject(&Fault::Restart { downtime_ms: 300 }).unwrap();
    sim.inject(&Fault::Latency {
        pattern: ".".into(),
        fixed_ms: 100,
        jitter_ms: 200,
    })
    .unwrap();
    let expanded = succeeds("ControllerExpandVolume", call).await;
    assert_eq!(expanded.capacity_bytes, 2 * GIB as i64);
    assert_eq!(resizes_of(&sim, &slot), 1, "log: {:#?}", sim.log_since(0));
    let disk = sim.disks().into_iter().find(|disk| disk.slot == slot);
    assert_eq!(disk.map(|disk| disk.file_size), Some(2 * GIB));
    sim.inject(&Fault::Clear).unwrap();
    delete_all(&target, &[name]).await;
    target.shutdown().await.unwrap();
}

/// Every page of ListVolumes (or ListSnapshots, by `list`) from the start, each call retried
/// like a sidecar: the ids listed.
async fn listed<F, Fut>(what: &str, list: F) -> BTreeSet<String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<String>, String), tonic::Status>>,
{
    let mut ids = BTreeSet::new();
    let mut token = String::new();
    loop {
        let (page, next) = succeeds(what, || list(token.clone())).await;
        ids.extend(page);
        if next.is_empty() {
            return ids;
        }
        token = next;
    }
}

/// ListVolumes, ListSnapshots (paged two at a time) and GetCapacity driven like the sidecars
/// through latency on every command and an RDS restart: no code but retryable ones, and every
/// round lists exactly the volumes and snapshots there are.
#[tokio::test]
async fn lists_and_capacity_through_latency_and_a_restart_answer_whole_and_retryably() {
    let target = start(|_| {}).await;
    let sim = sim(&target).clone();
    let mut controller = target.controller();
    let names: Vec<String> = (0..3).map(|_| requests::unique_name("listed")).collect();
    let mut volumes = BTreeSet::new();
    let mut snapshots = BTreeSet::new();
    for name in &names {
        let volume = controller
            .create_volume(create_request(name))
            .await
            .unwrap_or_else(|status| panic!("creating {name}: {status:?}"))
            .into_inner()
            .volume
            .expect("a volume");
        let snapshot = controller
            .create_snapshot(CreateSnapshotRequest {
                name: requests::unique_name("listed-snap"),
                source_volume_id: volume.volume_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("snapshotting {name}: {status:?}"))
            .into_inner()
            .snapshot
            .expect("a snapshot");
        volumes.insert(volume.volume_id);
        snapshots.insert(snapshot.snapshot_id);
    }

    sim.inject(&Fault::Latency {
        pattern: ".".into(),
        fixed_ms: 150,
        jitter_ms: 900,
    })
    .unwrap();
    for round in 0..3 {
        if round == 1 {
            sim.inject(&Fault::Restart { downtime_ms: 300 }).unwrap();
        }
        let listed_volumes = listed("ListVolumes", |starting_token| {
            let mut controller = controller.clone();
            async move {
                let page = controller
                    .list_volumes(with_deadline(ListVolumesRequest {
                        max_entries: 2,
                        starting_token,
                    }))
                    .await?
                    .into_inner();
                let ids = page
                    .entries
                    .into_iter()
                    .filter_map(|entry| entry.volume.map(|volume| volume.volume_id))
                    .collect();
                Ok((ids, page.next_token))
            }
        })
        .await;
        assert_eq!(listed_volumes, volumes, "round {round}");
        let listed_snapshots = listed("ListSnapshots", |starting_token| {
            let mut controller = controller.clone();
            async move {
                let page = controller
                    .list_snapshots(with_deadline(ListSnapshotsRequest {
                        max_entries: 2,
                        starting_token,
                        ..Default::default()
                    }))
                    .await?
                    .into_inner();
                let ids = page
                    .entries
                    .into_iter()
                    .filter_map(|entry| entry.snapshot.map(|snapshot| snapshot.snapshot_id))
                    .collect();
                Ok((ids, page.next_token))
            }
        })
        .await;
        assert_eq!(listed_snapshots, snapshots, "round {round}");
        let capacity = succeeds("GetCapacity", || {
            let mut controller = controller.clone();
            async move {
                Ok(controller
                    .get_capacity(with_deadline(GetCapacityRequest::default()))
                    .await?
                    .into_inner())
            }
        })
        .await;
        let pool = sim.state().pool;
        assert!(
            capacity.available_capacity > 0 && capacity.available_capacity as u64 <= pool.size,
            "round {round}: {capacity:?} of a pool of {} bytes",
            pool.size
        );
    }
    sim.inject(&Fault::Clear).unwrap();
    for snapshot_id in snapshots {
        controller
            .delete_snapshot(DeleteSnapshotRequest {
                snapshot_id,
                ..Default::default()
            })
            .await
            .expect("the snapshot is deleted");
    }
    delete_all(&target, &names).await;
    target.shutdown().await.unwrap();
}

/// The mutating steps of a DeleteSnapshot by `method`: a disk snapshot goes as a volume does, a
/// `btrfs` one is a read-only subvolume, removed by one command.
fn delete_snapshot_steps(method: Method) -> &'static [&'static str] {
    match method {
        Method::Btrfs => &[SUBVOLUME_REMOVE],
        Method::CopyFrom | Method::DiskCopy => &DELETE_STEPS,
    }
}

/// For each mutating step of a DeleteSnapshot by `method`: the connection drops right after the
/// step committed, the first call fails retryably, and the retried delete leaves no disk, file
/// or subvolume of the snapshot while its source stays.
async fn crash_after_each_delete_snapshot_step_then_retry(method: Method) {
    for step in delete_snapshot_steps(method) {
        let target = Target::start_with(&Settings::sim_for(method), |_| {})
            .await
            .expect("the sim target starts");
        let sim = sim(&target);
        let name = requests::unique_name("snapshot-crash");
        let controller = target.controller();
        let volume = controller
            .clone()
            .create_volume(requests::laid_out_for(create_request(&name), method))
            .await
            .unwrap_or_else(|status| panic!("{method}: creating {name}: {status:?}"))
            .into_inner()
            .volume
            .expect("a volume");
        let snapshot = controller
            .clone()
            .create_snapshot(CreateSnapshotRequest {
                name: requests::unique_name("crashed-snap"),
                source_volume_id: volume.volume_id.clone(),
                parameters: HashMap::from([("method".to_owned(), method.to_string())]),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("{method}: snapshotting {name}: {status:?}"))
            .into_inner()
            .snapshot
            .expect("a snapshot");

        let request = DeleteSnapshotRequest {
            snapshot_id: snapshot.snapshot_id.clone(),
            ..Default::default()
        };
        let what = format!("{method}: deleting the snapshot");
        crash_after_then_retry(sim, step, &what, || {
            let mut controller = controller.clone();
            let request = request.clone();
            async move { controller.delete_snapshot(request).await }
        })
        .await;
        let left = sim.state();
        let id = snapshot.snapshot_id.as_str();
        assert!(
            left.disks.iter().all(|disk| disk.slot == volume.volume_id)
                && left.files.iter().all(|file| !file.name.contains(id))
                && left
                    .subvolumes
                    .iter()
                    .all(|subvolume| !subvolume.path.contains(id)),
            "{method}, {step}: the retried delete left disks {:?}, files {:?}, subvolumes {:?}",
            left.disks,
            left.files,
            left.subvolumes
        );
        delete_all(&target, &[name]).await;
        target.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_retried_delete_snapshot_after_a_crash_at_every_step_leaves_nothing() {
    for method in Method::ALL {
        crash_after_each_delete_snapshot_step_then_retry(method).await;
    }
}

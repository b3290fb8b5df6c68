//! The controller under rds-sim's faults: a connection that drops around the commit of
//! `/disk add`, commands slower than the driver's timeout, and a restart of the RDS in the middle
//! of a burst of creates. Each case ends by checking what the RDS holds: every volume exactly once
//! (one disk, one backing file) or not at all, and no backing file without its disk.
//!
//! These cases need rds-sim's fault injection, so they run on the `sim` target whatever
//! `RDS_E2E_TARGET` says.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rds_csi::config::Config;
use rds_csi::csi::v1::{CreateVolumeRequest, DeleteVolumeRequest};
use rds_csi::ids;
use rds_e2e::config::Settings;
use rds_e2e::requests;
use rds_e2e::target::Target;
use rds_sim::faults::{CrashPoint, Fault};
use rds_sim::sim::Sim;
use tonic::{Code, Status};

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
        retried(name, || {
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

/// Calls `call` until it succeeds, as a CO does: retryable codes are retried with a pause (the
/// driver's breaker may fail calls fast for a while), any other code fails the test.
async fn retried<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    for attempt in 1..=120 {
        match call().await {
            Ok(done) => return done,
            Err(status) if is_retryable(status.code()) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(status) => panic!("{what}: attempt {attempt} failed: {status:?}"),
        }
    }
    panic!("{what}: still failing after 120 attempts")
}

fn is_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted
    )
}

/// The mutating steps of a delete, in order: `/disk remove`, then `/file remove` of the file
/// `/disk remove` keeps.
const DELETE_STEPS: [&str; 2] = ["^/disk remove", "^/file remove"];

/// A DeleteVolume whose connection drops right after `step` committed, then retried: the retry
/// finds the file where the volume was made (`base_dir`, a StorageClass `baseDir`, or the
/// default) and leaves neither disk nor file.
async fn crash_after_a_delete_step_then_retry(step: &str, base_dir: Option<&str>) {
    let target = start(|_| {}).await;
    let sim = sim(&target);
    let name = requests::unique_name("delete-crash");
    let parameters: HashMap<String, String> = base_dir
        .map(|dir| ("baseDir".to_owned(), dir.to_owned()))
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
    if let Some(dir) = base_dir {
        assert!(
            made.images
                .iter()
                .all(|file| file.contains(&format!("/{dir}/"))),
            "the file is not in baseDir {dir}: {:?}",
            made.images
        );
    }

    sim.inject(&Fault::Crash {
        pattern: step.into(),
        point: CrashPoint::AfterCommit,
        count: 1,
    })
    .unwrap();
    let request = DeleteVolumeRequest {
        volume_id: ids::volume_id(&name).to_string(),
        ..Default::default()
    };
    let first = controller.clone().delete_volume(request.clone()).await;
    let status = first.expect_err("a delete cut off by a crash cannot succeed");
    assert!(
        is_retryable(status.code()),
        "{step}: a delete cut off by a crash must fail retryably, not with {status:?}"
    );
    retried(
        &format!("deleting {name} after a crash on {step:?}"),
        || {
            let mut controller = controller.clone();
            let request = request.clone();
            async move { controller.delete_volume(request).await }
        },
    )
    .await;
    let left = Holdings::of(sim);
    assert!(
        left.disks.is_empty() && left.images.is_empty(),
        "{step} (baseDir {base_dir:?}): the retried delete left disks {:?} and files {:?}",
        left.disks,
        left.images
    );
    target.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_retried_delete_after_a_crash_at_every_step_leaves_nothing() {
    for step in DELETE_STEPS {
        crash_after_a_delete_step_then_retry(step, None).await;
    }
}

#[tokio::test]
async fn a_retried_delete_after_a_crash_finds_the_file_in_the_storage_class_base_dir() {
    for step in DELETE_STEPS {
        crash_after_a_delete_step_then_retry(step, Some("fast")).await;
    }
}

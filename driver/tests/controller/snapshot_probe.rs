//! Proof before trust: with `copy-from` copying only settings, the controller refuses it and
//! names the method that works, and `rds-csi doctor --snapshots` says which methods copy data.

use rds_csi::dev;
use rds_csi::doctor::snapshots;
use rds_csi::snapshot::Method;
use rds_csi::snapshot::probe::Verdict;
use rds_sim::store::CopySemantics;

use crate::harness::*;

#[tokio::test]
async fn copy_from_without_data_is_refused_and_disk_copy_works() {
    let mut plugin = Plugin::start().await;
    plugin.sim().set_copy_from(CopySemantics::Settings);
    let volume = plugin.volume_with_data("v", 1).await;
    let refused = plugin
        .snapshot("s", &volume, Method::CopyFrom)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let message = refused.message();
    assert!(
        message.contains("copy-from does not copy data"),
        "{message}"
    );
    assert!(message.contains("use disk-copy"), "{message}");
    assert!(plugin.disk(&ids::snapshot_id("s").to_string()).is_none());
    // The probe cleaned up after itself.
    let probes: Vec<_> = plugin
        .state()
        .disks
        .iter()
        .filter(|d| d.slot.starts_with("probe-"))
        .map(|d| d.slot.clone())
        .collect();
    assert!(probes.is_empty(), "{probes:?}");
    assert!(
        !plugin
            .state()
            .files
            .iter()
            .any(|f| f.name.contains("probe-"))
    );

    plugin.disk_copy_holding_the_data("s", &volume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_copy_from_in_both_switch_positions() {
    let env = dev::start(None).await.unwrap();
    let report = snapshots::probe(&env.config).await.unwrap();
    assert_eq!(
        report.verdict(Method::CopyFrom),
        Some(&Verdict::CopiesData),
        "{report}"
    );
    assert_eq!(
        report.verdict(Method::DiskCopy),
        Some(&Verdict::CopiesData),
        "{report}"
    );
    assert!(report.ok(), "{report}");

    env.sim.sim.set_copy_from(CopySemantics::Settings);
    let report = snapshots::probe(&env.config).await.unwrap();
    assert_eq!(
        report.verdict(Method::CopyFrom),
        Some(&Verdict::CopiesSettingsOnly),
        "{report}"
    );
    assert_eq!(
        report.verdict(Method::DiskCopy),
        Some(&Verdict::CopiesData),
        "{report}"
    );
    assert!(!report.ok());
    let text = report.to_string();
    assert!(
        text.contains("set controller.snapshotMethod to disk-copy"),
        "{text}"
    );
    assert!(
        report.outcomes.iter().all(|o| o.leftovers.is_empty()),
        "{report}"
    );
    env.sim.shutdown().await;
}

/// Found by rds-chaos: a probe whose clean-up met a passing failure left its files on the RDS,
/// and nobody retries a probe's clean-up. It tries again now.
#[tokio::test]
async fn a_probe_cleans_up_after_a_failed_removal() {
    let mut plugin = Plugin::start().await;
    let volume = plugin.volume_with_data("v", 1).await;
    plugin
        .sim()
        .inject(&Fault::Error {
            pattern: "^/file remove".into(),
            text: "failure: execution error".into(),
            count: 1,
        })
        .unwrap();
    plugin
        .snapshot("s", &volume, Method::CopyFrom)
        .await
        .unwrap();
    let state = plugin.state();
    let left: Vec<_> = state
        .disks
        .iter()
        .map(|d| d.slot.clone())
        .chain(state.files.iter().map(|f| f.name.clone()))
        .filter(|name| name.contains("probe-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Found by rds-chaos: a CreateSnapshot whose deadline passed while the method was being probed
/// was dropped with its probe, which never removed its disks and files. The probe now finishes
/// by itself.
#[tokio::test]
async fn a_probe_outlives_the_call_that_started_it() {
    let mut plugin = Plugin::start().await;
    let volume = plugin.volume_with_data("v", 1).await;
    plugin
        .sim()
        .inject(&Fault::Latency {
            pattern: "^/disk add copy-from".into(),
            fixed_ms: 600,
            jitter_ms: 0,
        })
        .unwrap();
    let mut request = tonic::Request::new(crate::snapshot_data::snapshot_request(
        "s",
        &volume,
        Method::CopyFrom,
    ));
    request.set_timeout(std::time::Duration::from_millis(200));
    let cut = plugin
        .controller
        .create_snapshot(request)
        .await
        .unwrap_err();
    assert!(
        matches!(cut.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{cut:?}"
    );
    let probe_files = |plugin: &Plugin| {
        plugin
            .state()
            .files
            .iter()
            .filter(|f| f.name.contains("probe-"))
            .count()
    };
    assert!(probe_files(&plugin) > 0, "the probe was still running");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while probe_files(&plugin) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the probe left {:?}",
            plugin.state().files
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

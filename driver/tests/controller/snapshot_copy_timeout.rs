//! `/disk copy` runs as one command for the whole block copy, under `rds.copyTimeoutMs`; every
//! other command keeps `rds.commandTimeoutMs`.

use rds_csi::snapshot::Method;

use crate::harness::*;
use crate::snapshot_data::*;

/// rds-sim's `/disk copy` pace at which a copy of a `SIZE` volume takes about three seconds.
const SLOW_COPY: u64 = SIZE as u64 / 3;

/// A volume with data in it, and rds-sim's `/disk copy` slowed to [`SLOW_COPY`].
async fn slow_copy_source(plugin: &mut Plugin) -> String {
    let volume = plugin.volume_with_data("v", 3).await;
    plugin.sim().set_copy_rate(Some(SLOW_COPY));
    volume
}

/// Waits until rds-sim runs no `/disk copy`, woken by copy progress.
async fn no_copy_running(plugin: &Plugin) {
    let mut changes = plugin.sim().subscribe_copies();
    while !plugin.state().copies.is_empty() {
        changes.changed().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_longer_than_the_command_timeout_finishes_within_the_copy_timeout() {
    let mut plugin = Plugin::with(Setup {
        config: |c| {
            c.rds.command_timeout_ms = 1_000;
            c.rds.copy_timeout_ms = 60_000;
        },
        ..Setup::default()
    })
    .await;
    let volume = slow_copy_source(&mut plugin).await;
    plugin.disk_copy_holding_the_data("s", &volume).await;

    // The long copy limit is the copy's alone: an ordinary command still gives up at 1 s.
    plugin
        .sim()
        .inject(&Fault::Latency {
            pattern: "mount-point".into(),
            fixed_ms: 10_000,
            jitter_ms: 0,
        })
        .unwrap();
    let error = plugin.capacity().await.unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{}", error.message());
    assert!(error.message().contains("within 1s"), "{}", error.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_past_the_copy_timeout_is_deadline_exceeded_and_a_retry_completes_it() {
    let mut plugin = Plugin::with(Setup {
        config: |c| c.rds.copy_timeout_ms = 1_000,
        ..Setup::default()
    })
    .await;
    let volume = slow_copy_source(&mut plugin).await;
    let error = plugin
        .snapshot("s", &volume, Method::DiskCopy)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{}", error.message());
    let message = error.message();
    assert!(message.contains("/disk copy"), "{message}");
    assert!(message.contains("within 1s"), "{message}");

    // The driver hung up on the copy, and rds-sim stopped it with the session; the snapshot's
    // disk stays, pending.
    no_copy_running(&plugin).await;
    let slot = ids::snapshot_id("s").to_string();
    assert!(plugin.disk(&slot).is_some(), "the pending disk stays");

    plugin.sim().set_copy_rate(None);
    let snapshot = plugin.disk_copy_holding_the_data("s", &volume).await;
    assert_eq!(snapshot.snapshot_id, slot);
}

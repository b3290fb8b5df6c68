//! An unanswered snapshot command is settled by reading back, never duplicated.

use rds_csi::snapshot::Method;

use crate::harness::*;
use crate::snapshot_data::*;

#[tokio::test]
async fn a_crash_after_the_first_snapshot_command_commits_is_retried_into_the_same_snapshot() {
    for (method, pattern) in [
        (Method::CopyFrom, "^/disk add copy-from=.* slot=\"snap-"),
        (Method::DiskCopy, "^/disk add type=file .* slot=\"snap-"),
        (Method::Btrfs, "^/disk btrfs subvolume add .* name=\"snap-"),
    ] {
        let mut plugin = plugin_for(method).await;
        let volume = plugin
            .create(laid_out_for(create_request("v", SIZE, 0), method))
            .await
            .unwrap()
            .volume_id;
        plugin.write_pattern(&volume, 5);
        plugin
            .sim()
            .inject(&Fault::Crash {
                pattern: pattern.into(),
                point: CrashPoint::AfterCommit,
                count: 1,
            })
            .unwrap();
        // The first attempt may fail or settle by reading back; either way a retry answers
        // the snapshot.
        let first = plugin.snapshot("s", &volume, method).await;
        let retried = plugin.snapshot("s", &volume, method).await.unwrap();
        if let Ok(first) = first {
            assert_eq!(first.snapshot_id, retried.snapshot_id);
        }
        assert!(retried.ready_to_use, "{method}");
        let state = plugin.state();
        let snapshots: Vec<String> = state
            .disks
            .iter()
            .map(|d| d.slot.clone())
            .chain(state.subvolumes.iter().map(|s| s.path.clone()))
            .filter(|name| name.rsplit('/').next().unwrap().starts_with("snap-"))
            .collect();
        assert_eq!(snapshots.len(), 1, "{method}: {snapshots:?}");
        assert_eq!(
            plugin.snapshot_contents(&retried.snapshot_id, method, SIZE as u64),
            plugin.contents(&volume, SIZE as u64),
            "{method}"
        );
        // The crash ended the session that ran the command: nothing ran on it afterwards.
        let log = plugin.sim().log_since(0);
        let crashed = log
            .iter()
            .rfind(|record| regex_lite_match(pattern, &record.line))
            .unwrap_or_else(|| panic!("{method}: no command matched {pattern}"));
        assert!(
            !log.iter()
                .any(|r| r.seq > crashed.seq && r.session == crashed.session),
            "{method}: the session survived, so the fault never fired"
        );
    }
}

/// `pattern` is `^<literal prefix>.* <literal suffix>`: enough to count the matching lines
/// without a regex dependency.
fn regex_lite_match(pattern: &str, line: &str) -> bool {
    let pattern = pattern.trim_start_matches('^');
    let (prefix, suffix) = pattern.split_once(".*").unwrap();
    line.starts_with(prefix) && line.contains(suffix.trim_start())
}

//! The Btrfs subvolume operations the `btrfs` snapshot method builds on, against rds-sim with a
//! Btrfs pool: subvolumes, read-only snapshots that outlive their parent, and an add that
//! crashes after committing, settled by reading back; and what only the `btrfs` method does
//! (the per-method tests in snapshot_*.rs run it too).

use rds_csi::rds::disk::ErrorKind;
use rds_csi::rds::value::{FileText, RosPath, Slot};
use rds_csi::snapshot::Method;
use rds_csi::snapshot::probe::{self, Verdict};

use crate::harness::*;
use crate::snapshot_data::*;

fn slot(name: &str) -> Slot {
    Slot::parse(name).unwrap()
}

fn file_in(subvolume: &str) -> RosPath {
    RosPath::parse(&format!("{POOL}/{subvolume}/volume.img")).unwrap()
}

async fn btrfs_plugin() -> Plugin {
    Plugin::with(Setup {
        pool_fs: PoolFs::Btrfs,
        ..Setup::default()
    })
    .await
}

#[tokio::test]
async fn only_a_btrfs_pool_reads_as_btrfs() {
    assert!(btrfs_plugin().await.rds.pool_is_btrfs().await.unwrap());
    assert!(!Plugin::start().await.rds.pool_is_btrfs().await.unwrap());
}

#[tokio::test]
async fn a_read_only_snapshot_keeps_its_data_after_its_parent_is_removed() {
    let plugin = btrfs_plugin().await;
    let rds = &plugin.rds;
    let volume = rds
        .add_subvolume(&slot("pvc-a"), None, false)
        .await
        .unwrap();
    assert_eq!((volume.parent, volume.read_only), (None, false));
    let text = FileText::new("data written before the snapshot").unwrap();
    rds.write_file(&file_in("pvc-a"), &text).await.unwrap();

    let snapshot = rds
        .add_subvolume(&slot("snap-b"), Some(&slot("pvc-a")), true)
        .await
        .unwrap();
    assert_eq!(snapshot.parent.as_deref(), Some("pvc-a"));
    assert!(snapshot.read_only);
    assert!(snapshot.created.is_some());
    let again = rds
        .add_subvolume(&slot("snap-b"), Some(&slot("pvc-a")), true)
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists, "{again}");

    rds.remove_subvolume(&slot("pvc-a")).await.unwrap();
    assert_eq!(rds.subvolume(&slot("pvc-a")).await.unwrap(), None);
    let listed = rds.subvolumes(&slot("snap-")).await.unwrap();
    assert_eq!(listed, vec![snapshot]);
    assert_eq!(
        rds.read_file(&file_in("snap-b")).await.unwrap(),
        text.as_str()
    );
    assert_eq!(
        rds.file_size(&file_in("snap-b")).await.unwrap(),
        text.as_str().len() as u64
    );

    rds.remove_subvolume(&slot("snap-b")).await.unwrap();
    assert!(rds.subvolumes(&slot("snap-")).await.unwrap().is_empty());
    // Removing what is gone already is fine, so a retried delete completes.
    rds.remove_subvolume(&slot("snap-b")).await.unwrap();
}

#[tokio::test]
async fn a_snapshot_add_that_crashes_after_committing_is_settled_by_reading_back() {
    let plugin = btrfs_plugin().await;
    let rds = &plugin.rds;
    rds.add_subvolume(&slot("pvc-a"), None, false)
        .await
        .unwrap();
    plugin
        .sim()
        .inject(&Fault::Crash {
            pattern: "^/disk btrfs subvolume add .*name=\"snap-".into(),
            point: CrashPoint::AfterCommit,
            count: 1,
        })
        .unwrap();
    let snapshot = rds
        .add_subvolume(&slot("snap-b"), Some(&slot("pvc-a")), true)
        .await
        .unwrap();
    assert_eq!(snapshot.parent.as_deref(), Some("pvc-a"));
    // The crash ended the session that ran the add: the fault fired, and nothing ran the add
    // again.
    let log = plugin.sim().log_since(0);
    let adds: Vec<_> = log
        .iter()
        .filter(|r| r.line.starts_with("/disk btrfs subvolume add") && r.line.contains("snap-b"))
        .collect();
    assert_eq!(adds.len(), 1, "{adds:?}");
    assert!(
        !log.iter()
            .any(|r| r.seq > adds[0].seq && r.session == adds[0].session),
        "the session survived, so the fault never fired"
    );
    let subvolumes = &plugin.state().subvolumes;
    assert_eq!(
        subvolumes
            .iter()
            .filter(|s| s.path.ends_with("snap-b"))
            .count(),
        1,
        "{subvolumes:?}"
    );
}

fn in_subvolume(name: &str) -> CreateVolumeRequest {
    let mut request = create_request(name, 16 << 20, 0);
    request
        .parameters
        .insert("layout".into(), "subvolume".into());
    request
}

#[tokio::test]
async fn a_subvolume_volume_lives_and_dies_with_its_subvolume() {
    let mut plugin = btrfs_plugin().await;
    let volume = plugin.create(in_subvolume("v")).await.unwrap().volume_id;
    let disk = plugin.disk(&volume).unwrap();
    assert_eq!(
        disk.file_path.trim_start_matches('/'),
        format!("{POOL}/{volume}/volume.img")
    );
    let subvolume = slot(&volume);
    assert!(plugin.rds.subvolume(&subvolume).await.unwrap().is_some());
    // The same request again is the same volume.
    let again = plugin.create(in_subvolume("v")).await.unwrap().volume_id;
    assert_eq!(again, volume);

    plugin
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: volume.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(plugin.disk(&volume).is_none());
    assert_eq!(plugin.rds.subvolume(&subvolume).await.unwrap(), None);
    assert!(!plugin.has_file(&format!("{POOL}/{volume}/volume.img")));
}

#[tokio::test]
async fn the_subvolume_layout_is_refused_on_a_pool_that_is_not_btrfs() {
    let mut plugin = Plugin::start().await;
    let error = plugin.create(in_subvolume("v")).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error}");
    assert!(error.message().contains("Btrfs"), "{}", error.message());
    assert!(plugin.state().disks.is_empty());
}

#[tokio::test]
async fn a_delete_that_stopped_after_the_disk_still_removes_the_subvolume() {
    let mut plugin = btrfs_plugin().await;
    let volume = plugin.create(in_subvolume("v")).await.unwrap().volume_id;
    // What an earlier delete leaves when it stops after removing the disk.
    plugin
        .routeros(&format!("/disk remove [find where slot=\"{volume}\"]"))
        .await;
    plugin
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: volume.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(plugin.rds.subvolume(&slot(&volume)).await.unwrap(), None);
    assert!(!plugin.has_file(&format!("{POOL}/{volume}/volume.img")));
}

#[tokio::test]
async fn a_volume_in_a_plain_file_cannot_take_a_btrfs_snapshot() {
    let mut plugin = btrfs_plugin().await;
    let volume = plugin
        .create(create_request("plain", 16 << 20, 0))
        .await
        .unwrap()
        .volume_id;
    let error = plugin
        .snapshot("s", &volume, Method::Btrfs)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition, "{error}");
    assert!(
        error.message().contains("layout: subvolume"),
        "{}",
        error.message()
    );
    assert!(
        plugin
            .rds
            .subvolumes(&slot("snap-"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn btrfs_and_disk_snapshots_list_together_and_outlive_their_source() {
    let mut plugin = btrfs_plugin().await;
    let volume = plugin.create(in_subvolume("v")).await.unwrap().volume_id;
    let mut made = Vec::new();
    for (name, method) in [
        ("b-0", Method::Btrfs),
        ("d-0", Method::DiskCopy),
        ("b-1", Method::Btrfs),
    ] {
        made.push(plugin.snapshot(name, &volume, method).await.unwrap());
    }
    made.sort_by(|a, b| a.snapshot_id.cmp(&b.snapshot_id));
    plugin.delete_volume(&volume).await;

    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = plugin
            .controller
            .list_snapshots(ListSnapshotsRequest {
                max_entries: 2,
                starting_token: token,
                source_volume_id: volume.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        listed.extend(page.entries.into_iter().map(|e| e.snapshot.unwrap()));
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(listed, made);
    assert!(
        listed
            .iter()
            .all(|s| s.ready_to_use && s.size_bytes == 16 << 20)
    );
    let other = plugin
        .controller
        .list_snapshots(ListSnapshotsRequest {
            source_volume_id: ids::volume_id("other").to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(other.entries.is_empty());
}

#[tokio::test]
async fn a_btrfs_snapshot_restores_only_into_the_subvolume_layout() {
    let mut plugin = btrfs_plugin().await;
    let volume = plugin.create(in_subvolume("v")).await.unwrap().volume_id;
    let snapshot = plugin
        .snapshot("s", &volume, Method::Btrfs)
        .await
        .unwrap()
        .snapshot_id;
    let error = plugin
        .create(from_snapshot("plain", &snapshot, 0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error}");
    assert!(
        error.message().contains("with layout: subvolume"),
        "{}",
        error.message()
    );
    assert_eq!(
        plugin
            .rds
            .subvolume(&ids::volume_id("plain"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn the_btrfs_probe_needs_a_btrfs_pool_and_cleans_up() {
    let on_btrfs = btrfs_plugin().await;
    let dir = RosPath::parse(POOL).unwrap();
    let outcome = probe::probe(&on_btrfs.rds, &dir, Method::Btrfs).await;
    assert_eq!(outcome.verdict, Verdict::CopiesData);
    assert!(outcome.leftovers.is_empty(), "{:?}", outcome.leftovers);
    assert!(on_btrfs.state().subvolumes.is_empty());

    let elsewhere = Plugin::start().await;
    let outcome = probe::probe(&elsewhere.rds, &dir, Method::Btrfs).await;
    match outcome.verdict {
        Verdict::Unavailable(reason) => assert!(reason.contains("not a Btrfs"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(outcome.leftovers.is_empty(), "{:?}", outcome.leftovers);
}

#[tokio::test]
async fn a_restore_whose_grow_was_interrupted_is_grown_by_the_retry() {
    let mut plugin = btrfs_plugin().await;
    let volume = plugin.create(in_subvolume("v")).await.unwrap().volume_id;
    let snapshot = plugin
        .snapshot("s", &volume, Method::Btrfs)
        .await
        .unwrap()
        .snapshot_id;
    plugin
        .sim()
        .inject(&Fault::Crash {
            pattern: "^/disk set .*file-size=".into(),
            point: CrashPoint::BeforeCommit,
            count: 1,
        })
        .unwrap();
    let grown = laid_out_for(from_snapshot("grown", &snapshot, 32 << 20), Method::Btrfs);
    plugin.create(grown.clone()).await.unwrap_err();
    let attached = plugin.disk(&ids::volume_id("grown").to_string()).unwrap();
    assert_eq!(attached.file_size, 16 << 20, "the grow never ran");
    let retried = plugin.create(grown).await.unwrap();
    assert_eq!(retried.capacity_bytes, 32 << 20);
    // Another size under the same name is another request, refused rather than grown.
    let other = laid_out_for(from_snapshot("grown", &snapshot, 48 << 20), Method::Btrfs);
    assert_eq!(
        plugin.create(other).await.unwrap_err().code(),
        Code::AlreadyExists
    );
}

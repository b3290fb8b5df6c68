//! CreateVolume from a snapshot or a volume: the data, the size rules and the conflicts.

use rds_csi::snapshot::Method;

use crate::harness::*;
use crate::snapshot_data::*;

#[tokio::test]
async fn a_snapshot_outlives_its_source_and_restores_its_data() {
    for method in Method::ALL {
        let mut plugin = plugin_for(method).await;
        let source = plugin
            .create(laid_out_for(create_request("source", SIZE, 0), method))
            .await
            .unwrap()
            .volume_id;
        plugin.write_pattern(&source, 7);
        let written = plugin.contents(&source, SIZE as u64);
        let snapshot = plugin
            .snapshot("before", &source, method)
            .await
            .unwrap()
            .snapshot_id;
        // Writes after the snapshot are not in it.
        plugin.write_pattern(&source, 99);
        plugin.delete_volume(&source).await;
        assert!(plugin.disk(&source).is_none());

        let restored = plugin
            .create(laid_out_for(
                from_snapshot("restored", &snapshot, 0),
                method,
            ))
            .await
            .unwrap();
        assert_eq!(restored.capacity_bytes, SIZE, "{method}");
        let id = restored.volume_id;
        assert_eq!(plugin.contents(&id, SIZE as u64), written, "{method}");
        let disk = plugin.disk(&id).unwrap();
        assert!(
            disk.nvme_tcp_export,
            "{method}: a restored volume is exported"
        );
        assert_eq!(disk.nvme_tcp_server_nqn, volume_nqn(&id));
        let recorded = ids::Metadata::parse(disk.comment.as_deref().unwrap()).unwrap();
        assert_eq!(recorded.source.unwrap().as_str(), snapshot);

        // Larger: grown, the data in front; smaller: refused.
        let grown = plugin
            .create(laid_out_for(
                from_snapshot("grown", &snapshot, 2 * SIZE),
                method,
            ))
            .await
            .unwrap();
        assert_eq!(grown.capacity_bytes, 2 * SIZE, "{method}");
        assert_eq!(plugin.contents(&grown.volume_id, SIZE as u64), written);
        let smaller = plugin
            .create(laid_out_for(
                from_snapshot("smaller", &snapshot, SIZE / 2),
                method,
            ))
            .await
            .unwrap_err();
        assert_eq!(smaller.code(), Code::OutOfRange, "{}", smaller.message());
        assert!(
            plugin
                .disk(&ids::volume_id("smaller").to_string())
                .is_none()
        );

        // Same name again: the same volume; the same name from another source: refused.
        let again = plugin
            .create(laid_out_for(
                from_snapshot("restored", &snapshot, 0),
                method,
            ))
            .await
            .unwrap();
        assert_eq!(again.volume_id, id);
        let other = plugin
            .create(laid_out_for(
                from_volume("restored", &grown.volume_id, 0),
                method,
            ))
            .await
            .unwrap_err();
        assert_eq!(other.code(), Code::AlreadyExists, "{}", other.message());
        let plain = plugin
            .create(create_request("restored", SIZE, 0))
            .await
            .unwrap_err();
        assert_eq!(plain.code(), Code::AlreadyExists, "{}", plain.message());

        plugin.delete_snapshot(&snapshot).await.unwrap();
        assert!(plugin.disk(&snapshot).is_none());
        assert!(!plugin.has_file(&snapshot_file(&snapshot, method)));
        // The restored volume keeps its data without the snapshot.
        assert_eq!(plugin.contents(&id, SIZE as u64), written);
    }
}

#[tokio::test]
async fn a_volume_clones_with_its_data() {
    for method in Method::ALL {
        // A volume in its own subvolume clones as a Btrfs snapshot whatever is configured.
        let mut plugin = Plugin::with(Setup {
            config: match method {
                Method::CopyFrom | Method::Btrfs => {
                    |c| c.controller.snapshot_method = Method::CopyFrom
                }
                Method::DiskCopy => |c| c.controller.snapshot_method = Method::DiskCopy,
            },
            pool_fs: match method {
                Method::Btrfs => PoolFs::Btrfs,
                Method::CopyFrom | Method::DiskCopy => PoolFs::Xfs,
            },
            ..Setup::default()
        })
        .await;
        let source = plugin
            .create(laid_out_for(create_request("original", SIZE, 0), method))
            .await
            .unwrap()
            .volume_id;
        plugin.write_pattern(&source, 3);
        let clone = plugin
            .create(laid_out_for(from_volume("clone", &source, SIZE), method))
            .await
            .unwrap();
        assert_eq!(
            plugin.contents(&clone.volume_id, SIZE as u64),
            plugin.contents(&source, SIZE as u64),
            "{method}"
        );
        let recorded = ids::Metadata::parse(
            plugin
                .disk(&clone.volume_id)
                .unwrap()
                .comment
                .as_deref()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(recorded.method, Some(method));
        // The clone is independent of its source.
        plugin.write_pattern(&clone.volume_id, 200);
        assert_ne!(
            plugin.contents(&clone.volume_id, SIZE as u64),
            plugin.contents(&source, SIZE as u64)
        );
    }
}

#[tokio::test]
async fn missing_sources_are_not_found() {
    let mut plugin = Plugin::start().await;
    for request in [
        from_snapshot("a", &ids::snapshot_id("never").to_string(), 0),
        from_snapshot("b", "garbage", 0),
        from_volume("c", &ids::volume_id("never").to_string(), 0),
        from_volume("d", "garbage", 0),
    ] {
        let error = plugin.create(request).await.unwrap_err();
        assert_eq!(error.code(), Code::NotFound, "{}", error.message());
    }
    assert!(
        plugin
            .state()
            .disks
            .iter()
            .all(|d| d.slot == POOL || !d.slot.starts_with("pvc-") && !d.slot.starts_with("vol-"))
    );
}

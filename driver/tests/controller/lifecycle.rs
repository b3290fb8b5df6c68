//! Volumes through their whole life, every step checked on the simulator.

use crate::harness::*;
use rds_csi::rds::command::FENCED_HOST;

#[tokio::test]
async fn a_volume_lives_and_dies_on_the_rds() {
    let mut plugin = Plugin::start().await;
    let name = "pvc-8f2e4b1c-3d5a-4e6f-9a7b-0c1d2e3f4a5b";
    let mut request = create_request(name, GIB, 0);
    request.parameters = HashMap::from([
        ("fsType".into(), "xfs".into()),
        ("ctrlLossTmo".into(), "-1".into()),
        ("csi.storage.k8s.io/pvc/name".into(), "data".into()),
    ]);
    let volume = plugin.create(request).await.unwrap();
    let id = volume.volume_id.clone();
    assert_eq!(id, "pvc-8f2e4b1c3d5a4e6f9a7b0c1d2e3f");
    assert_eq!(volume.capacity_bytes, GIB);
    assert_eq!(
        volume.volume_context,
        HashMap::from([
            ("fsType".into(), "xfs".into()),
            ("ctrlLossTmo".into(), "-1".into())
        ])
    );
    let disk = plugin.disk(&id).expect("the disk exists");
    assert_eq!(disk.file_path, file_of(&id));
    assert_eq!(disk.file_size, GIB as u64);
    assert!(disk.nvme_tcp_export);
    assert_eq!(disk.nvme_tcp_server_port, 4420);
    assert_eq!(disk.nvme_tcp_server_nqn, volume_nqn(&id));
    assert_eq!(disk.nvme_tcp_server_allow_host_name, FENCED_HOST);
    let comment = ids::Metadata::parse(disk.comment.as_deref().unwrap()).unwrap();
    assert_eq!(comment.csi_name, name);
    assert_eq!(comment.requested_bytes, GIB as u64);
    assert!(plugin.has_file(&file_of(&id)));

    let got = plugin
        .controller
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.volume.unwrap().capacity_bytes, GIB);
    let status = got.status.unwrap();
    assert!(status.published_node_ids.is_empty());
    let condition = status.volume_condition.unwrap();
    assert!(!condition.abnormal, "{}", condition.message);

    let listed = plugin
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listed
        .entries
        .iter()
        .map(|e| e.volume.as_ref().unwrap().volume_id.as_str())
        .collect();
    assert_eq!(ids, [id.as_str()]);

    let context = plugin.publish(&id, NODE_A).await.unwrap();
    assert_eq!(
        context,
        HashMap::from([
            ("address".into(), "192.0.2.10".into()),
            ("port".into(), "4420".into()),
            ("nqn".into(), volume_nqn(&id)),
            ("filePath".into(), format!("storage-pool/csi/{id}.img")),
        ])
    );
    assert_eq!(
        plugin.disk(&id).unwrap().nvme_tcp_server_allow_host_name,
        NODE_A
    );
    let listed = plugin
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.entries[0]
            .status
            .as_ref()
            .unwrap()
            .published_node_ids,
        [NODE_A]
    );

    plugin
        .controller
        .controller_unpublish_volume(ControllerUnpublishVolumeRequest {
            volume_id: id.clone(),
            node_id: NODE_A.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        plugin.disk(&id).unwrap().nvme_tcp_server_allow_host_name,
        FENCED_HOST
    );

    let expanded = plugin
        .controller
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 2 * GIB,
                limit_bytes: 0,
            }),
            volume_capability: Some(mount()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(expanded.capacity_bytes, 2 * GIB);
    assert!(expanded.node_expansion_required);
    assert_eq!(plugin.disk(&id).unwrap().file_size, 2 * GIB as u64);

    plugin
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(plugin.disk(&id).is_none());
    assert!(!plugin.has_file(&file_of(&id)));
}

#[tokio::test]
async fn every_call_is_idempotent() {
    let mut plugin = Plugin::start().await;
    let first = plugin
        .create(create_request("twice", GIB, GIB))
        .await
        .unwrap();
    let again = plugin
        .create(create_request("twice", GIB, 0))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(plugin.state().disks.len(), 1);
    let id = first.volume_id;
    for _ in 0..2 {
        plugin.publish(&id, NODE_A).await.unwrap();
    }
    let expand = ControllerExpandVolumeRequest {
        volume_id: id.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: 2 * GIB - 1,
            limit_bytes: 0,
        }),
        volume_capability: Some(block()),
        ..Default::default()
    };
    for _ in 0..2 {
        let answer = plugin
            .controller
            .controller_expand_volume(expand.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.capacity_bytes, 2 * GIB, "rounded up to 4 KiB");
        assert!(
            !answer.node_expansion_required,
            "a block volume has no file system"
        );
    }
    let unpublish = ControllerUnpublishVolumeRequest {
        volume_id: id.clone(),
        node_id: NODE_A.into(),
        ..Default::default()
    };
    for _ in 0..2 {
        plugin
            .controller
            .controller_unpublish_volume(unpublish.clone())
            .await
            .unwrap();
    }
    let delete = DeleteVolumeRequest {
        volume_id: id.clone(),
        ..Default::default()
    };
    for _ in 0..2 {
        plugin
            .controller
            .delete_volume(delete.clone())
            .await
            .unwrap();
    }
    assert!(plugin.state().disks.is_empty());
    assert!(!plugin.has_file(&file_of(&id)));
}

#[tokio::test]
async fn a_maximum_length_name_fits() {
    let mut plugin = Plugin::start().await;
    let name = format!("sanity-max-{}", "ü".repeat(58));
    assert_eq!(name.len(), 127);
    let volume = plugin.create(create_request(&name, 0, 0)).await.unwrap();
    assert_eq!(volume.capacity_bytes, GIB, "no capacity asked: 1 GiB");
    let again = plugin.create(create_request(&name, 0, 0)).await.unwrap();
    assert_eq!(volume, again);
    let comment = plugin.disk(&volume.volume_id).unwrap().comment.unwrap();
    assert_eq!(ids::Metadata::parse(&comment).unwrap().csi_name, name);
}

#[tokio::test]
async fn list_tokens_survive_adds_and_deletes() {
    let mut plugin = Plugin::start().await;
    for n in 0..5 {
        plugin
            .create(create_request(&format!("list-{n}"), 4096, 0))
            .await
            .unwrap();
    }
    let page = |token: &str, max| ListVolumesRequest {
        max_entries: max,
        starting_token: token.into(),
    };
    let first = plugin
        .controller
        .list_volumes(page("", 2))
        .await
        .unwrap()
        .into_inner();
    let first_ids: Vec<String> = first
        .entries
        .iter()
        .map(|e| e.volume.as_ref().unwrap().volume_id.clone())
        .collect();
    assert_eq!(first_ids.len(), 2);
    assert_eq!(first.next_token, first_ids[1]);
    // The page's last volume goes away and a new one arrives: the token still works.
    plugin
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: first_ids[1].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    plugin
        .create(create_request("list-new", 4096, 0))
        .await
        .unwrap();
    let rest = plugin
        .controller
        .list_volumes(page(&first.next_token, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.next_token, "");
    let rest_ids: Vec<String> = rest
        .entries
        .iter()
        .map(|e| e.volume.as_ref().unwrap().volume_id.clone())
        .collect();
    assert!(
        rest_ids.iter().all(|id| !first_ids.contains(id)),
        "no duplicates"
    );
    let mut all: Vec<String> = plugin
        .controller
        .list_volumes(page("", 0))
        .await
        .unwrap()
        .into_inner()
        .entries
        .iter()
        .map(|e| e.volume.as_ref().unwrap().volume_id.clone())
        .collect();
    assert_eq!(all.len(), 5);
    all.retain(|id| id.as_str() > first_ids[1].as_str());
    assert_eq!(
        rest_ids, all,
        "the next page is every volume after the token"
    );
}

#[tokio::test]
async fn validate_confirms_only_what_is_supported() {
    let mut plugin = Plugin::start().await;
    let id = plugin
        .create(create_request("v", GIB, 0))
        .await
        .unwrap()
        .volume_id;
    let request = |caps| ValidateVolumeCapabilitiesRequest {
        volume_id: id.clone(),
        volume_capabilities: caps,
        ..Default::default()
    };
    let confirmed = plugin
        .controller
        .validate_volume_capabilities(request(vec![mount(), block()]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        confirmed.confirmed.unwrap().volume_capabilities,
        [mount(), block()]
    );
    let refused = plugin
        .controller
        .validate_volume_capabilities(request(vec![capability(
            Access::MultiNodeMultiWriter,
            AccessType::Mount(MountVolume::default()),
        )]))
        .await
        .unwrap()
        .into_inner();
    assert!(refused.confirmed.is_none());
    assert!(
        refused.message.contains("MULTI_NODE_MULTI_WRITER"),
        "{}",
        refused.message
    );
    // A raw block volume may be shared, for KubeVirt live migration.
    let shared = capability(
        Access::MultiNodeMultiWriter,
        AccessType::Block(BlockVolume {}),
    );
    let confirmed = plugin
        .controller
        .validate_volume_capabilities(request(vec![shared.clone()]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(confirmed.confirmed.unwrap().volume_capabilities, [shared]);
}

#[tokio::test]
async fn publishing_follows_the_single_node_rules() {
    let mut plugin = Plugin::with(Setup {
        config: |c| c.controller.max_volumes_per_node = 2,
        ..Setup::default()
    })
    .await;
    let mut ids = Vec::new();
    for name in ["p1", "p2", "p3"] {
        ids.push(
            plugin
                .create(create_request(name, GIB, 0))
                .await
                .unwrap()
                .volume_id,
        );
    }
    plugin.publish(&ids[0], NODE_A).await.unwrap();
    assert_eq!(
        plugin.publish(&ids[0], NODE_B).await,
        Err(Code::FailedPrecondition)
    );
    let readonly = plugin
        .controller
        .controller_publish_volume(ControllerPublishVolumeRequest {
            readonly: true,
            ..publish_request(&ids[0], NODE_A)
        })
        .await
        .unwrap_err();
    assert_eq!(readonly.code(), Code::AlreadyExists);
    assert_eq!(
        plugin
            .disk(&ids[0])
            .unwrap()
            .nvme_tcp_server_allow_host_name,
        NODE_A
    );

    let delete = plugin
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: ids[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::FailedPrecondition);
    assert!(
        delete
            .message()
            .contains("ControllerUnpublishVolume it first"),
        "{}",
        delete.message()
    );
    assert!(plugin.disk(&ids[0]).is_some());

    plugin.publish(&ids[1], NODE_A).await.unwrap();
    assert_eq!(
        plugin.publish(&ids[2], NODE_A).await,
        Err(Code::ResourceExhausted)
    );
    assert_eq!(
        plugin
            .disk(&ids[2])
            .unwrap()
            .nvme_tcp_server_allow_host_name,
        FENCED_HOST
    );
    plugin.publish(&ids[2], NODE_B).await.unwrap();

    // Unpublishing from a node the volume is not published to leaves it alone.
    let unpublish = |volume: &str, node: &str| ControllerUnpublishVolumeRequest {
        volume_id: volume.into(),
        node_id: node.into(),
        ..Default::default()
    };
    plugin
        .controller
        .controller_unpublish_volume(unpublish(&ids[0], NODE_B))
        .await
        .unwrap();
    assert_eq!(
        plugin
            .disk(&ids[0])
            .unwrap()
            .nvme_tcp_server_allow_host_name,
        NODE_A
    );
    // No node id: unpublish from every node.
    plugin
        .controller
        .controller_unpublish_volume(unpublish(&ids[0], ""))
        .await
        .unwrap();
    assert_eq!(
        plugin
            .disk(&ids[0])
            .unwrap()
            .nvme_tcp_server_allow_host_name,
        FENCED_HOST
    );
    plugin.publish(&ids[2], NODE_B).await.unwrap();
    plugin.publish(&ids[0], NODE_B).await.unwrap();
}

/// mkfs.xfs refuses a device under 300 MiB, so a small xfs volume would be made on the RDS and
/// then fail every NodeStageVolume: it is made big enough when the range allows, else refused
/// before anything is made.
#[tokio::test]
async fn an_xfs_volume_is_never_smaller_than_mkfs_xfs_can_format() {
    const XFS_MIN: i64 = 300 << 20;
    let mut plugin = Plugin::start().await;
    let xfs = HashMap::from([("fsType".to_owned(), "xfs".to_owned())]);
    let mut small = create_request("small-xfs", 16 << 20, 0);
    small.parameters = xfs.clone();
    let volume = plugin.create(small).await.unwrap();
    assert_eq!(volume.capacity_bytes, XFS_MIN);
    assert_eq!(
        plugin.disk(&volume.volume_id).unwrap().file_size,
        XFS_MIN as u64
    );

    let mut capped = create_request("capped-xfs", 16 << 20, 64 << 20);
    capped.volume_capabilities = vec![capability(
        Access::SingleNodeWriter,
        AccessType::Mount(MountVolume {
            fs_type: "xfs".into(),
            ..MountVolume::default()
        }),
    )];
    let disks = plugin.state().disks.len();
    let status = plugin.create(capped).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{}", status.message());
    assert!(
        status.message().contains("mkfs.xfs"),
        "{}",
        status.message()
    );
    assert_eq!(plugin.state().disks.len(), disks, "nothing was made");

    let mut as_block = create_request("small-block", 16 << 20, 64 << 20);
    as_block.parameters = xfs;
    as_block.volume_capabilities = vec![block()];
    let volume = plugin.create(as_block).await.unwrap();
    assert_eq!(
        volume.capacity_bytes,
        16 << 20,
        "a raw block volume has no floor"
    );
}

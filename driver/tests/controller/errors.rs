//! Requests the driver must refuse, with the spec's codes, leaving the RDS unchanged.

use crate::harness::*;

#[tokio::test]
async fn conflicting_creates_are_already_exists() {
    let mut plugin = Plugin::start().await;
    plugin
        .create(create_request("sized", GIB, GIB))
        .await
        .unwrap();
    let before = plugin.state().disks;
    let bigger = plugin
        .create(create_request("sized", 2 * GIB, 2 * GIB))
        .await;
    assert_eq!(bigger.unwrap_err().code(), Code::AlreadyExists);
    let mut moved = create_request("sized", GIB, 0);
    moved.parameters = HashMap::from([("nvmePort".into(), "4421".into())]);
    assert_eq!(
        plugin.create(moved).await.unwrap_err().code(),
        Code::AlreadyExists
    );

    // Another CSI name recorded in the slot this name maps to: a collision.
    let slot = ids::volume_id("collides");
    let comment = ids::Metadata {
        kind: ids::IdKind::Volume,
        csi_name: "another name".into(),
        source: None,
        created: 1,
        requested_bytes: 0,
        context: Default::default(),
        method: None,
        pending: false,
    }
    .to_comment()
    .unwrap();
    plugin
        .routeros(&format!(
            "/disk add type=file file-path=\"{}\" file-size=4096 slot=\"{slot}\" comment=\"{comment}\"",
            file_of(slot.as_str())
        ))
        .await;
    let error = plugin
        .create(create_request("collides", 0, 0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);
    assert!(
        error.message().contains("another name"),
        "{}",
        error.message()
    );

    // A disk rds-csi did not make.
    let foreign = ids::volume_id("foreign");
    plugin
        .routeros(&format!(
            "/disk add type=file file-path=\"{POOL}/mine.img\" file-size=4096 slot=\"{foreign}\""
        ))
        .await;
    let error = plugin
        .create(create_request("foreign", 0, 0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);
    assert!(
        error.message().contains("did not create"),
        "{}",
        error.message()
    );
    let delete = plugin
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: foreign.to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::FailedPrecondition);
    assert_eq!(
        plugin.publish(foreign.as_str(), NODE_A).await,
        Err(Code::NotFound)
    );
    assert!(
        plugin.disk(foreign.as_str()).is_some(),
        "a foreign disk is never deleted"
    );
    let sized = before
        .iter()
        .find(|d| d.slot == ids::volume_id("sized").as_str());
    assert_eq!(
        sized,
        plugin.disk(ids::volume_id("sized").as_str()).as_ref()
    );
}

/// One bad request per row: its code, and the simulator's disks and files unchanged.
#[tokio::test]
async fn bad_requests_get_the_spec_codes_and_change_nothing() {
    let mut plugin = Plugin::start().await;
    let id = plugin
        .create(create_request("existing", GIB, 0))
        .await
        .unwrap()
        .volume_id;
    let unknown = ids::volume_id("never-created").to_string();
    let before = plugin.state();
    let c = &mut plugin.controller;
    let with = |change: fn(&mut CreateVolumeRequest)| {
        let mut request = create_request("new-volume", GIB, 0);
        change(&mut request);
        request
    };
    let cases: Vec<(&str, Code, Code)> = vec![
        (
            "create without name",
            code(c.create_volume(with(|r| r.name.clear())).await),
            Code::InvalidArgument,
        ),
        (
            "create without capabilities",
            code(
                c.create_volume(with(|r| r.volume_capabilities.clear()))
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "create multi-node multi-writer mount",
            code(
                c.create_volume(with(|r| {
                    r.volume_capabilities = vec![capability(
                        Access::MultiNodeMultiWriter,
                        AccessType::Mount(MountVolume::default()),
                    )]
                }))
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "create without access type",
            code(
                c.create_volume(with(|r| r.volume_capabilities[0].access_type = None))
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "create with an unknown parameter",
            code(
                c.create_volume(with(|r| {
                    r.parameters.insert("replicas".into(), "3".into());
                }))
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "create with fsType btrfs",
            code(
                c.create_volume(with(|r| {
                    r.parameters.insert("fsType".into(), "btrfs".into());
                }))
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "create from a missing snapshot",
            code(
                c.create_volume(with(|r| {
                    r.volume_content_source = Some(VolumeContentSource {
                        r#type: Some(volume_content_source::Type::Snapshot(
                            volume_content_source::SnapshotSource {
                                snapshot_id: "snap-1".into(),
                            },
                        )),
                    })
                }))
                .await,
            ),
            Code::NotFound,
        ),
        (
            "create with a limit below required",
            code(
                c.create_volume(with(|r| r.capacity_range.as_mut().unwrap().limit_bytes = 1))
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "create with no 4 KiB size in range",
            code(c.create_volume(create_request("tiny", 1000, 2000)).await),
            Code::OutOfRange,
        ),
        (
            "create bigger than a disk can be",
            code(c.create_volume(create_request("huge", i64::MAX, 0)).await),
            Code::OutOfRange,
        ),
        (
            "delete without id",
            code(c.delete_volume(DeleteVolumeRequest::default()).await),
            Code::InvalidArgument,
        ),
        (
            "delete of an id this driver never made",
            code(
                c.delete_volume(DeleteVolumeRequest {
                    volume_id: "fake-volume-id".into(),
                    ..Default::default()
                })
                .await,
            ),
            Code::Ok,
        ),
        (
            "validate without id",
            code(
                c.validate_volume_capabilities(ValidateVolumeCapabilitiesRequest::default())
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "validate without capabilities",
            code(
                c.validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                    volume_id: id.clone(),
                    ..Default::default()
                })
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "validate a missing volume",
            code(
                c.validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                    volume_id: unknown.clone(),
                    volume_capabilities: vec![mount()],
                    ..Default::default()
                })
                .await,
            ),
            Code::NotFound,
        ),
        (
            "publish without volume id",
            code(
                c.controller_publish_volume(publish_request("", NODE_A))
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "publish without node id",
            code(c.controller_publish_volume(publish_request(&id, "")).await),
            Code::InvalidArgument,
        ),
        (
            "publish without capability",
            code(
                c.controller_publish_volume(ControllerPublishVolumeRequest {
                    volume_capability: None,
                    ..publish_request(&id, NODE_A)
                })
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "publish multi-node",
            code(
                c.controller_publish_volume(ControllerPublishVolumeRequest {
                    volume_capability: Some(capability(
                        Access::MultiNodeReaderOnly,
                        AccessType::Block(BlockVolume {}),
                    )),
                    ..publish_request(&id, NODE_A)
                })
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "publish a missing volume",
            code(
                c.controller_publish_volume(publish_request(&unknown, NODE_A))
                    .await,
            ),
            Code::NotFound,
        ),
        (
            "publish to a node id that is no host NQN",
            code(
                c.controller_publish_volume(publish_request(&id, "fake-node-id"))
                    .await,
            ),
            Code::NotFound,
        ),
        (
            "publish read-only",
            code(
                c.controller_publish_volume(ControllerPublishVolumeRequest {
                    readonly: true,
                    ..publish_request(&id, NODE_A)
                })
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "unpublish without volume id",
            code(
                c.controller_unpublish_volume(ControllerUnpublishVolumeRequest::default())
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "list from a token this driver never gave",
            code(
                c.list_volumes(ListVolumesRequest {
                    starting_token: "invalid-token".into(),
                    ..Default::default()
                })
                .await,
            ),
            Code::Aborted,
        ),
        (
            "list with negative max_entries",
            code(
                c.list_volumes(ListVolumesRequest {
                    max_entries: -1,
                    ..Default::default()
                })
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "expand without id",
            code(
                c.controller_expand_volume(ControllerExpandVolumeRequest::default())
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "expand without capacity range",
            code(
                c.controller_expand_volume(ControllerExpandVolumeRequest {
                    volume_id: id.clone(),
                    ..Default::default()
                })
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "expand a missing volume",
            code(
                c.controller_expand_volume(ControllerExpandVolumeRequest {
                    volume_id: unknown.clone(),
                    capacity_range: Some(CapacityRange {
                        required_bytes: 2 * GIB,
                        limit_bytes: 0,
                    }),
                    ..Default::default()
                })
                .await,
            ),
            Code::NotFound,
        ),
        (
            "shrink",
            code(
                c.controller_expand_volume(ControllerExpandVolumeRequest {
                    volume_id: id.clone(),
                    capacity_range: Some(CapacityRange {
                        required_bytes: 4096,
                        limit_bytes: 8192,
                    }),
                    ..Default::default()
                })
                .await,
            ),
            Code::OutOfRange,
        ),
        (
            "get without id",
            code(
                c.controller_get_volume(ControllerGetVolumeRequest::default())
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "get a missing volume",
            code(
                c.controller_get_volume(ControllerGetVolumeRequest {
                    volume_id: unknown.clone(),
                })
                .await,
            ),
            Code::NotFound,
        ),
        (
            "create a snapshot without a name",
            code(c.create_snapshot(CreateSnapshotRequest::default()).await),
            Code::InvalidArgument,
        ),
        (
            "modify a volume",
            code(
                c.controller_modify_volume(ControllerModifyVolumeRequest::default())
                    .await,
            ),
            Code::Unimplemented,
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(case, got, want)| format!("{case}: {got:?}, expected {want:?}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    let after = plugin.state();
    assert_eq!(after.disks, before.disks);
    assert_eq!(
        after.files.iter().map(|f| &f.name).collect::<Vec<_>>(),
        before.files.iter().map(|f| &f.name).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_full_pool_is_resource_exhausted() {
    let mut plugin = Plugin::with(Setup {
        pool_size: 8 << 30,
        ..Setup::default()
    })
    .await;
    assert_eq!(plugin.capacity().await.unwrap(), 8 << 30);
    let before = plugin.state();
    let error = plugin
        .create(create_request("too-big", 9 * GIB, 0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted);
    assert!(error.message().contains("/disk add"), "{}", error.message());
    assert_eq!(plugin.state().disks, before.disks);
    plugin
        .sim()
        .inject(&Fault::PoolFull { enabled: true })
        .unwrap();
    assert_eq!(plugin.capacity().await.unwrap(), 0);
}

#[tokio::test]
async fn an_old_routeros_is_refused_with_the_version() {
    let mut plugin = Plugin::with(Setup {
        routeros_version: "7.20.8 (long-term)",
        ..Setup::default()
    })
    .await;
    let error = plugin
        .create(create_request("old", GIB, 0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(error.message().contains("7.20.8"), "{}", error.message());
    assert!(error.message().contains("7.21"), "{}", error.message());
    assert!(plugin.state().disks.is_empty(), "nothing was added");
}

#[tokio::test]
async fn a_command_past_its_timeout_is_deadline_exceeded() {
    let mut plugin = Plugin::with(Setup {
        config: |c| c.rds.command_timeout_ms = 300,
        ..Setup::default()
    })
    .await;
    plugin
        .sim()
        .inject(&Fault::Latency {
            pattern: "mount-point".into(),
            fixed_ms: 1_000,
            jitter_ms: 0,
        })
        .unwrap();
    let error = plugin.capacity().await.unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{}", error.message());
    assert!(
        error.message().contains("mount-point"),
        "{}",
        error.message()
    );
    plugin.sim().inject(&Fault::Clear).unwrap();
    assert_eq!(plugin.capacity().await.unwrap(), 64 << 30);
}

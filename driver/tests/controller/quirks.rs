//! The controller in every position of every rds-sim switch for an open RouterOS question
//! (REFERENCE.md §13; rds-sim's engine/quirks.rs): it works in each, or refuses clearly, naming
//! the probe that tells which answer an RDS gives.

use crate::harness::*;
use rds_csi::rds::value::{RosPath, Slot};
use rds_sim::engine::quirks::SWITCHES;

fn expand_request(volume_id: &str, bytes: i64) -> ControllerExpandVolumeRequest {
    ControllerExpandVolumeRequest {
        volume_id: volume_id.to_owned(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_volume_lifecycle_holds_in_every_position_of_every_switch() {
    for switch in SWITCHES {
        for position in switch.positions {
            let mut plugin = Plugin::start().await;
            plugin.sim().set_quirk(switch.name, position).unwrap();
            let at = format!("{}={position}", switch.name);
            let id = plugin
                .create(create_request("pvc-quirks", GIB, 0))
                .await
                .unwrap_or_else(|e| panic!("{at}: CreateVolume: {e}"))
                .volume_id;
            // A refusal of RouterOS's own (no space), whatever stream its text comes on.
            let too_big = plugin
                .create(create_request("pvc-quirks-too-big", 1 << 50, 0))
                .await
                .unwrap_err();
            assert_eq!(
                too_big.code(),
                Code::ResourceExhausted,
                "{at}: {}",
                too_big.message()
            );
            // Lookups of what does not exist: an empty print in this position.
            let missing = plugin
                .controller
                .controller_get_volume(ControllerGetVolumeRequest {
                    volume_id: "pvc-0000000000000000000000000000".into(),
                })
                .await
                .unwrap_err();
            assert_eq!(
                missing.code(),
                Code::NotFound,
                "{at}: {}",
                missing.message()
            );
            plugin
                .publish(&id, NODE_A)
                .await
                .unwrap_or_else(|e| panic!("{at}: ControllerPublishVolume: {e:?}"));
            let expanded = plugin
                .controller
                .controller_expand_volume(expand_request(&id, 2 * GIB))
                .await;
            match (switch.name, *position) {
                ("grow", "refused") => {
                    let refused = expanded.unwrap_err();
                    assert_eq!(refused.code(), Code::FailedPrecondition, "{at}");
                    assert!(
                        refused.message().contains("rds-csi doctor --all"),
                        "{at}: {}",
                        refused.message()
                    );
                    assert_eq!(plugin.disk(&id).unwrap().file_size, GIB as u64, "{at}");
                }
                _ => {
                    let answer = expanded.unwrap_or_else(|e| panic!("{at}: expand: {e}"));
                    assert_eq!(answer.into_inner().capacity_bytes, 2 * GIB, "{at}");
                }
            }
            plugin
                .controller
                .controller_unpublish_volume(ControllerUnpublishVolumeRequest {
                    volume_id: id.clone(),
                    node_id: NODE_A.into(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{at}: ControllerUnpublishVolume: {e}"));
            for _ in 0..2 {
                plugin
                    .controller
                    .delete_volume(DeleteVolumeRequest {
                        volume_id: id.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{at}: DeleteVolume (and its repeat): {e}"));
            }
            assert!(plugin.state().disks.is_empty(), "{at}: a disk is left");
            // Removing what is gone, as a retried delete may: fine in every position.
            let slot = Slot::parse(&id).unwrap();
            let file = RosPath::parse(&file_of(&id)).unwrap();
            plugin
                .rds
                .remove(&slot, &file)
                .await
                .unwrap_or_else(|e| panic!("{at}: removing a removed disk: {e}"));
            let listed = plugin
                .controller
                .list_volumes(ListVolumesRequest::default())
                .await
                .unwrap_or_else(|e| panic!("{at}: ListVolumes: {e}"))
                .into_inner();
            assert!(listed.entries.is_empty(), "{at}");
        }
    }
}

/// A `/disk add` of `slot` on `file`, 1 MiB or `size`, not exported.
fn spec(slot: &str, file: &str, size: u64) -> rds_csi::rds::command::DiskSpec {
    rds_csi::rds::command::DiskSpec {
        slot: Slot::parse(slot).unwrap(),
        file_path: RosPath::parse(&format!("{POOL}/csi/{file}.img")).unwrap(),
        size: rds_csi::rds::value::ByteSize::new(size).unwrap(),
        export: None,
        comment: None,
    }
}

/// §13.5: whatever words RouterOS refuses an add with, the driver tells a taken slot, a file in
/// use, a file left without a disk and a full pool apart, by reading the RDS.
#[tokio::test]
async fn a_refused_add_means_the_same_in_every_add_errors_position() {
    use rds_csi::rds::disk::ErrorKind;
    for position in ["known", "opaque"] {
        let plugin = Plugin::start().await;
        plugin.sim().set_quirk("add-errors", position).unwrap();
        plugin.rds.create(&spec("a", "a", 1 << 20)).await.unwrap();
        let kind = async |spec| plugin.rds.create(&spec).await.unwrap_err().kind();
        assert_eq!(
            kind(spec("a", "other", 1 << 20)).await,
            ErrorKind::AlreadyExists,
            "{position}: a taken slot"
        );
        assert_eq!(
            kind(spec("b", "a", 1 << 20)).await,
            ErrorKind::Busy,
            "{position}: a file another disk uses"
        );
        assert_eq!(
            kind(spec("c", "c", 1 << 50)).await,
            ErrorKind::OutOfSpace,
            "{position}: more than the pool has"
        );
        assert_eq!(plugin.state().disks.len(), 1, "{position}");
        // A backing file an interrupted add left behind, with no disk on it, is replaced.
        plugin
            .routeros(&format!(
                r#"/file add name="{POOL}/csi/left.img" contents="stale""#
            ))
            .await;
        plugin
            .rds
            .create(&spec("left", "left", 1 << 20))
            .await
            .unwrap();
        assert_eq!(
            plugin.disk("left").unwrap().file_size,
            1 << 20,
            "{position}"
        );
        assert!(plugin.has_file(&format!("{POOL}/csi/a.img")), "{position}");
    }
}

/// §13.3: with a one-host allow-list (`allow-list=single` in rds-sim, `rds.allowList = "single"`
/// in the driver) a ReadWriteMany block volume is served on one node and a live migration's
/// second node is refused, naming the setting and the check that decides it; with a list the
/// second node is admitted and both hosts are written.
#[tokio::test]
async fn a_live_migration_needs_an_allow_list_of_two_hosts() {
    use rds_csi::controller::migration::Window;
    use rds_csi::rds::allow_list::Reading;
    for form in [Reading::List, Reading::Single] {
        let mut plugin = Plugin::with(Setup {
            config: match form {
                Reading::List => |_| {},
                Reading::Single => |c| c.rds.allow_list = Reading::Single,
            },
            ..Setup::default()
        })
        .await;
        if form == Reading::Single {
            plugin.sim().set_quirk("allow-list", "single").unwrap();
        }
        let shared = capability(
            Access::MultiNodeMultiWriter,
            AccessType::Block(BlockVolume {}),
        );
        let id = plugin
            .create(CreateVolumeRequest {
                volume_capabilities: vec![shared.clone()],
                ..create_request("pvc-migrating", GIB, 0)
            })
            .await
            .unwrap()
            .volume_id;
        let publish = |node: &str| ControllerPublishVolumeRequest {
            volume_capability: Some(shared.clone()),
            ..publish_request(&id, node)
        };
        plugin
            .controller
            .controller_publish_volume(publish(NODE_A))
            .await
            .unwrap_or_else(|e| panic!("{form:?}: the first node: {e}"));
        plugin.service.migrations().replace(
            [(
                id.clone(),
                Window {
                    migration: "vms/migrate-1".into(),
                    vmi: "vms/vm-1".into(),
                    source: Some(NODE_A.into()),
                    target: Some(NODE_B.into()),
                    timeout: std::time::Duration::from_secs(300),
                    expired: false,
                },
            )]
            .into(),
        );
        let second = plugin
            .controller
            .controller_publish_volume(publish(NODE_B))
            .await;
        let allowed = plugin.disk(&id).unwrap().nvme_tcp_server_allow_host_name;
        match form {
            Reading::List => {
                second.unwrap_or_else(|e| panic!("the migration's target: {e}"));
                assert_eq!(allowed, format!("{NODE_A},{NODE_B}"));
            }
            Reading::Single => {
                let refused = second.unwrap_err();
                assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
                for words in ["rds.allowList", "TC-04 step 1", NODE_A] {
                    assert!(refused.message().contains(words), "{}", refused.message());
                }
                assert_eq!(allowed, NODE_A, "the refusal changed the allow-list");
            }
        }
    }
}

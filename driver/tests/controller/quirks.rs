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

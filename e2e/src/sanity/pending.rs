//! The csi-sanity cases whose services arrive with later issues, listed as ignored trials so the
//! mirror of csi-sanity stays complete and visible.

use libtest_mimic::Trial;

use crate::suite::ignored;

/// Why the Node Service cases do not run yet.
pub const NODE_REASON: &str = "node service: issue 6";
/// Why the group snapshot cases do not run: volume snapshots landed with issue 8, group
/// snapshots (a GroupController service) are not planned yet.
pub const GROUP_SNAPSHOT_REASON: &str = "group snapshots: no GroupController service";

/// The Node Service cases.
pub const NODE_CASES: &[&str] = &[
    "Node Service NodeGetCapabilities should return appropriate capabilities",
    "Node Service NodeGetInfo should return appropriate values",
    "Node Service NodePublishVolume should fail when no volume id is provided",
    "Node Service NodePublishVolume should fail when no target path is provided",
    "Node Service NodePublishVolume should fail when no volume capability is provided",
    "Node Service NodePublishVolume with single node multi writer capability should fail when volume with single node single writer access mode is already mounted at a different target path",
    "Node Service NodeUnpublishVolume should fail when no volume id is provided",
    "Node Service NodeUnpublishVolume should fail when no target path is provided",
    "Node Service NodeUnpublishVolume should remove target path",
    "Node Service NodeStageVolume should fail when no volume id is provided",
    "Node Service NodeStageVolume should fail when no staging target path is provided",
    "Node Service NodeStageVolume should fail when no volume capability is provided",
    "Node Service NodeUnstageVolume should fail when no volume id is provided",
    "Node Service NodeUnstageVolume should fail when no staging target path is provided",
    "Node Service NodeGetVolumeStats should fail when no volume id is provided",
    "Node Service NodeGetVolumeStats should fail when no volume path is provided",
    "Node Service NodeGetVolumeStats should fail when volume is not found",
    "Node Service NodeGetVolumeStats should fail when volume does not exist on the specified path",
    "Node Service NodeExpandVolume should fail when no volume id is provided",
    "Node Service NodeExpandVolume should fail when no volume path is provided",
    "Node Service NodeExpandVolume should fail when volume is not found",
    "Node Service NodeExpandVolume should work if node-expand is called after node-publish",
    "Node Service should work",
    "Node Service should be idempotent",
];

/// The group snapshot cases of GroupController.
pub const GROUP_SNAPSHOT_CASES: &[&str] = &[
    "GroupController Service [GroupController Server] GroupControllerGetCapabilities should return appropriate capabilities",
    "GroupController Service [GroupController VolumeGroupSnapshots] CreateVolumeGroupSnapshot should fail when no name is provided",
    "GroupController Service [GroupController VolumeGroupSnapshots] GetVolumeGroupSnapshot should fail when no volume id is provided",
    "GroupController Service [GroupController VolumeGroupSnapshots] GetVolumeGroupSnapshot should fail when an invalid volume id is used",
    "GroupController Service [GroupController VolumeGroupSnapshots] DeleteVolumeGroupSnapshot should fail when no volume id is provided",
    "GroupController Service [GroupController VolumeGroupSnapshots] DeleteVolumeGroupSnapshot should succeed when an invalid volume id is used",
];

pub fn trials() -> Vec<Trial> {
    let node = NODE_CASES.iter().map(|name| ignored(name, NODE_REASON));
    let group = GROUP_SNAPSHOT_CASES
        .iter()
        .map(|name| ignored(name, GROUP_SNAPSHOT_REASON));
    node.chain(group).collect()
}

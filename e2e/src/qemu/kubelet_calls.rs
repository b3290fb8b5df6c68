//! kubelet's Node calls for one volume on a [`KernelNodeRig`]: its staging and target paths in the
//! guest and the requests kubelet sends, so suites drive stage, publish and their undoing as a
//! pod's volume does.

use rds_csi::csi::v1::{NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, VolumeCapability};

use super::kernel_node::{KernelNodeRig, PublishedVolume, RigRds};

/// One volume's kubelet paths and requests.
pub struct Kubelet {
    pub volume: PublishedVolume,
    pub capability: VolumeCapability,
    pub staging: String,
    pub target: String,
}

impl Kubelet {
    /// kubelet's paths for `volume` in a pod named `pod`.
    pub fn new(volume: PublishedVolume, capability: VolumeCapability, pod: &str) -> Kubelet {
        Kubelet {
            staging: format!("/var/lib/kubelet/plugins/rds/staging/{}", volume.id),
            target: format!("/var/lib/kubelet/pods/{pod}/volumes/{}", volume.id),
            volume,
            capability,
        }
    }

    pub fn stage<R: RigRds>(&self, rig: &KernelNodeRig<R>) -> Result<(), tonic::Status> {
        let mut node = rig.node.clone();
        let request = self
            .volume
            .stage_request(&self.staging, self.capability.clone());
        rig.block_on(node.node_stage_volume(request)).map(drop)
    }

    pub fn publish<R: RigRds>(&self, rig: &KernelNodeRig<R>) -> Result<(), tonic::Status> {
        let mut node = rig.node.clone();
        let request = self.volume.publish_request(
            &self.staging,
            &self.target,
            self.capability.clone(),
            false,
        );
        rig.block_on(node.node_publish_volume(request)).map(drop)
    }

    pub fn unpublish<R: RigRds>(&self, rig: &KernelNodeRig<R>) -> Result<(), tonic::Status> {
        let mut node = rig.node.clone();
        rig.block_on(node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: self.volume.id.clone(),
            target_path: self.target.clone(),
        }))
        .map(drop)
    }

    pub fn unstage<R: RigRds>(&self, rig: &KernelNodeRig<R>) -> Result<(), tonic::Status> {
        let mut node = rig.node.clone();
        rig.block_on(node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: self.volume.id.clone(),
            staging_target_path: self.staging.clone(),
        }))
        .map(drop)
    }
}

//! What kubelet does with rds-csi's node plugin on the `sim` target's node (loop mode: loop
//! devices over rds-sim's backing files): where it stages and publishes a raw block volume, the
//! requests it sends, and the writes a Pod makes through the published device.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rds_csi::csi::v1::volume_capability::access_mode::Mode;
use rds_csi::csi::v1::{
    NodeExpandVolumeRequest, NodePublishVolumeRequest, NodeStageVolumeRequest,
    NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, VolumeCapability,
};
use rds_e2e::requests;

use crate::node::BLOCK_BYTES;

/// The node's directory for staging and target paths, one subdirectory per volume as kubelet's
/// `plugins/kubernetes.io/csi/...` and `pods/.../volumeDevices` are.
#[derive(Debug, Clone)]
pub struct Kubelet {
    dir: PathBuf,
}

fn capability() -> VolumeCapability {
    requests::block_capability(Mode::SingleNodeWriter)
}

impl Kubelet {
    pub fn new(dir: PathBuf) -> Kubelet {
        Kubelet { dir }
    }

    /// Where volume `id`'s staging and target paths lie.
    pub fn volume_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn staging(&self, id: &str) -> PathBuf {
        self.volume_dir(id).join("staging")
    }

    /// The published device: a file the node plugin binds the block device onto.
    pub fn device(&self, id: &str) -> PathBuf {
        self.volume_dir(id).join("pod").join("dev")
    }

    /// Kubelet makes the staging directory before NodeStageVolume.
    pub fn stage(
        &self,
        id: &str,
        publish_context: &HashMap<String, String>,
    ) -> std::io::Result<NodeStageVolumeRequest> {
        std::fs::create_dir_all(self.staging(id))?;
        Ok(NodeStageVolumeRequest {
            volume_id: id.to_owned(),
            staging_target_path: path(&self.staging(id)),
            volume_capability: Some(capability()),
            publish_context: publish_context.clone(),
            ..Default::default()
        })
    }

    pub fn publish(
        &self,
        id: &str,
        publish_context: &HashMap<String, String>,
    ) -> NodePublishVolumeRequest {
        NodePublishVolumeRequest {
            volume_id: id.to_owned(),
            staging_target_path: path(&self.staging(id)),
            target_path: path(&self.device(id)),
            volume_capability: Some(capability()),
            publish_context: publish_context.clone(),
            ..Default::default()
        }
    }

    pub fn expand(&self, id: &str, bytes: u64) -> NodeExpandVolumeRequest {
        NodeExpandVolumeRequest {
            volume_id: id.to_owned(),
            volume_path: path(&self.device(id)),
            staging_target_path: path(&self.staging(id)),
            capacity_range: Some(requests::exact_capacity(bytes)),
            volume_capability: Some(capability()),
            ..Default::default()
        }
    }

    pub fn unpublish(&self, id: &str) -> NodeUnpublishVolumeRequest {
        NodeUnpublishVolumeRequest {
            volume_id: id.to_owned(),
            target_path: path(&self.device(id)),
        }
    }

    pub fn unstage(&self, id: &str) -> NodeUnstageVolumeRequest {
        NodeUnstageVolumeRequest {
            volume_id: id.to_owned(),
            staging_target_path: path(&self.staging(id)),
        }
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Writes `data` (one block) at block `block` of the published device and fsyncs it, as a Pod
/// that needs it durable does: returns once the loop device has handed it to the backing file.
pub fn write_block(device: &Path, block: u32, data: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(device)?;
    file.seek(SeekFrom::Start(u64::from(block) * BLOCK_BYTES as u64))?;
    file.write_all(data)?;
    file.sync_all()
}

/// The size of the published device, as the Pod sees it.
pub fn device_bytes(device: &Path) -> std::io::Result<u64> {
    OpenOptions::new()
        .read(true)
        .open(device)?
        .seek(SeekFrom::End(0))
}

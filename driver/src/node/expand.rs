//! NodeExpandVolume: the controller grew the disk on the RDS; make the kernel see the new size
//! (rescan the namespace, or LOOP_SET_CAPACITY) and grow the mounted file system online.

use tonic::Status;

use super::NodeCore;
use super::context::require;
use super::host::FsType;
use crate::csi::v1::{NodeExpandVolumeRequest, NodeExpandVolumeResponse};

impl NodeCore {
    pub(super) fn expand(
        &self,
        request: NodeExpandVolumeRequest,
    ) -> Result<NodeExpandVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        let path = self.lookup_path(&request.volume_id, "volume_path", &request.volume_path)?;
        if let Some(capability) = &request.volume_capability {
            crate::contract::capability::check(capability)?;
        }
        let _volume = self.locks.try_lock(&request.volume_id)?;
        let attached = self.attached_at(&request.volume_id, &path)?;
        let size = self.host.fabric.rescan(&attached)?;
        let required = request
            .capacity_range
            .as_ref()
            .map_or(0, |r| u64::try_from(r.required_bytes).unwrap_or(0));
        if size < required {
            return Err(Status::failed_precondition(format!(
                "the device of volume {} has {size} bytes, fewer than the {required} asked for: \
                 expand it with ControllerExpandVolume first",
                request.volume_id
            )));
        }
        let device = attached.device.as_ref().ok_or_else(|| {
            Status::unavailable(format!(
                "volume {} has no block device on this node right now",
                request.volume_id
            ))
        })?;
        if self.host.mounts.device_node(&path)?.is_none() {
            let mounted = self
                .mount_at(&path)?
                .filter(|m| m.dev == device.dev)
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "volume {} is not mounted at {}",
                        request.volume_id,
                        path.display()
                    ))
                })?;
            let fs: FsType = mounted
                .fs_type
                .parse()
                .map_err(Status::failed_precondition)?;
            // xfs_growfs needs a writable mount, and a publication may be read-only: grow
            // through the staging mount when the CO names it.
            let grow_at = match &request.staging_target_path {
                staging if staging.is_empty() => path,
                staging => {
                    let staging =
                        self.lookup_path(&request.volume_id, "staging_target_path", staging)?;
                    match self.mount_at(&staging)? {
                        Some(m) if m.dev == device.dev => staging,
                        _ => {
                            return Err(Status::failed_precondition(format!(
                                "volume {} is not staged at {}",
                                request.volume_id,
                                staging.display()
                            )));
                        }
                    }
                }
            };
            self.host.resize.grow(&device.path, &grow_at, fs)?;
        } else {
            // A read-only publication sees the device through its view, which keeps the size
            // it was made with until told.
            self.host.views.resize(device.dev)?;
        }
        Ok(NodeExpandVolumeResponse {
            capacity_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        })
    }
}

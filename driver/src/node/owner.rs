//! Whether what a path holds is the volume a request names, before the node unmounts or removes
//! it. Kubelet names the volume and the path separately; a path reused for another volume, a
//! retry that raced another pod's publish, or a hand-made mount must not be torn down under the
//! volume that really uses it.

use std::path::Path;

use tonic::Status;

use super::NodeCore;
use super::host::{DevNum, FsType, MountEntry};

impl NodeCore {
    /// FAILED_PRECONDITION unless the mount at `path` can be `volume_id`'s: a file system this
    /// node makes, on the volume's device or on a device the kernel no longer has (the dead
    /// mount of a connection that was lost, which only an unmount clears).
    pub(super) fn check_mount_is_ours(
        &self,
        volume_id: &str,
        path: &Path,
        mounted: &MountEntry,
    ) -> Result<(), Status> {
        if mounted.fs_type.parse::<FsType>().is_err() {
            return Err(Status::failed_precondition(format!(
                "{} has a {} mount of {}, which is no volume of this driver (they are ext4 or \
                 xfs); the node leaves it alone: unmount it by hand if it does not belong there",
                path.display(),
                mounted.fs_type,
                mounted.source
            )));
        }
        self.check_device_is_ours(volume_id, path, mounted.dev)
    }

    /// FAILED_PRECONDITION when `dev`, found at `path`, is a block device the kernel has now
    /// and not `volume_id`'s.
    pub(super) fn check_device_is_ours(
        &self,
        volume_id: &str,
        path: &Path,
        dev: DevNum,
    ) -> Result<(), Status> {
        let ours = self.device_of(volume_id)?.map(|d| d.dev);
        // A read-only view stands for the device it shows.
        let dev = self.host.views.viewed(dev)?.unwrap_or(dev);
        if ours == Some(dev) || !self.host.mounts.is_block_device(dev) {
            return Ok(());
        }
        let attached = match ours {
            Some(ours) => format!("its device is {ours}"),
            None => "it is not attached to this node".to_owned(),
        };
        Err(Status::failed_precondition(format!(
            "{} holds block device {dev}, which is not volume {volume_id}'s ({attached}); the \
             node leaves it alone: unstage or unpublish it under the volume it belongs to",
            path.display()
        )))
    }
}

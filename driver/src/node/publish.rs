//! NodePublishVolume and NodeUnpublishVolume: a bind mount of the staging mount for file systems;
//! for raw block, a hard link at the target path of a device node made with the device's
//! major:minor in the staging directory (a bind mount of /dev would multiply mounts with every
//! pod), so that the node's link count tells unstage whether a publication remains.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::mount::MountFlags;
use tonic::Status;

use super::NodeCore;
use super::context::{self, Access, Use, require, require_path};
use super::crash::CrashPoint;
use super::host::{Device, MountOptions};
use crate::csi::v1::{
    NodePublishVolumeRequest, NodePublishVolumeResponse, NodeUnpublishVolumeRequest,
    NodeUnpublishVolumeResponse,
};

/// The name of a block volume's device node in its staging directory.
const STAGED_DEVICE: &str = "device";

/// How many publications link the staged device node `node`.
fn publications(node: &Path) -> u64 {
    std::fs::symlink_metadata(node).map_or(0, |m| m.nlink().saturating_sub(1))
}

/// How many publications link the device node of the block volume staged at `staging`.
pub(super) fn block_publications(staging: &Path) -> u64 {
    publications(&staging.join(STAGED_DEVICE))
}

/// The staged device node of a block volume at `staging`, if there is one: unstage must not
/// detach a device a publication still names (its major:minor could go to another volume).
pub(super) fn unstage_block(
    core: &NodeCore,
    volume_id: &str,
    staging: &Path,
) -> Result<(), Status> {
    let node = staging.join(STAGED_DEVICE);
    if core.host.mounts.device_node(&node)?.is_none() {
        return Ok(());
    }
    match publications(&node) {
        0 => std::fs::remove_file(&node)
            .map_err(|e| Status::internal(format!("removing {}: {e}", node.display()))),
        n => Err(Status::failed_precondition(format!(
            "block volume {volume_id} is still published at {n} target path(s): \
             NodeUnpublishVolume them first"
        ))),
    }
}

impl NodeCore {
    pub(super) fn publish(
        &self,
        request: NodePublishVolumeRequest,
    ) -> Result<NodePublishVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        let target = require_path("target_path", &request.target_path)?;
        let usage =
            context::volume_use(request.volume_capability.as_ref(), &request.volume_context)?;
        let staging = require_path("staging_target_path", &request.staging_target_path)?;
        let _volume = self.locks.try_lock(&request.volume_id)?;
        let device = self.device_of(&request.volume_id)?.ok_or_else(|| {
            Status::failed_precondition(format!(
                "volume {} is not attached to this node: NodeStageVolume first",
                request.volume_id
            ))
        })?;
        let readonly = request.readonly || usage.read_only_mode();
        match &usage.access {
            Access::Mount { fs, flags } => {
                // The data options were the file system's at stage; a bind mount takes flags.
                let options = MountOptions::parse(flags, *fs)
                    .map_err(Status::invalid_argument)?
                    .read_only(readonly);
                self.publish_mount(
                    &request.volume_id,
                    &device,
                    &staging,
                    &target,
                    &options,
                    &usage,
                )?
            }
            Access::Block => self.publish_block(&device, &staging, &target)?,
        }
        Ok(NodePublishVolumeResponse {})
    }

    fn publish_mount(
        &self,
        volume_id: &str,
        device: &Device,
        staging: &Path,
        target: &Path,
        options: &MountOptions,
        usage: &Use,
    ) -> Result<(), Status> {
        let staged = match self.mount_at(staging)? {
            Some(m) if m.dev == device.dev => m,
            _ => {
                return Err(Status::failed_precondition(format!(
                    "volume {volume_id} is not staged at {}: NodeStageVolume first",
                    staging.display()
                )));
            }
        };
        // A read-only staging mount makes every publication of it read-only: a repeated call
        // finds what the first one made.
        let inherited = if staged.readonly {
            MountFlags::RDONLY
        } else {
            MountFlags::empty()
        };
        let readonly = options.applied_to(inherited).contains(MountFlags::RDONLY);
        if let Some(mounted) = self.mount_at(target)? {
            if mounted.dev == device.dev && mounted.readonly == readonly {
                return Ok(());
            }
            let how = |ro: bool| if ro { "read-only" } else { "read-write" };
            let what = if mounted.dev == device.dev {
                format!("volume {volume_id} {}", how(mounted.readonly))
            } else {
                mounted.source.clone()
            };
            return Err(Status::already_exists(format!(
                "target path {} already has {what} mounted, and this request asks for it {}; \
                 unpublish it first",
                target.display(),
                how(readonly)
            )));
        }
        let elsewhere: Vec<_> = self
            .users(device.dev, Some(staging))?
            .into_iter()
            .filter(|p| p != target)
            .collect();
        if usage.single_writer() && !elsewhere.is_empty() {
            return Err(Status::failed_precondition(format!(
                "volume {volume_id} is SINGLE_NODE_SINGLE_WRITER and already published at {}",
                elsewhere[0].display()
            )));
        }
        if !context::exists(target) {
            std::fs::create_dir_all(target).map_err(|e| {
                Status::internal(format!("creating target path {}: {e}", target.display()))
            })?;
        }
        self.host.mounts.bind(staging, target, options)?;
        CrashPoint::Published.reached();
        Ok(())
    }

    fn publish_block(&self, device: &Device, staging: &Path, target: &Path) -> Result<(), Status> {
        if let Some(dev) = self.host.mounts.device_node(target)? {
            if dev == device.dev {
                return Ok(());
            }
            return Err(Status::already_exists(format!(
                "target path {} is the device node of {dev}, not of {} ({}); unpublish it first",
                target.display(),
                device.path.display(),
                device.dev
            )));
        }
        match std::fs::symlink_metadata(target) {
            // An empty file a CO made as the place holder is replaced by the node.
            Ok(meta) if meta.is_file() && meta.len() == 0 => {
                std::fs::remove_file(target).map_err(|e| {
                    Status::internal(format!("replacing {}: {e}", target.display()))
                })?;
            }
            Ok(_) => {
                return Err(Status::already_exists(format!(
                    "target path {} exists and is not a block device node; remove it or \
                     unpublish first",
                    target.display()
                )));
            }
            Err(_) => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        Status::internal(format!("creating {}: {e}", parent.display()))
                    })?;
                }
            }
        }
        let node = self.staged_device_node(staging, device)?;
        CrashPoint::DeviceNode.reached();
        match std::fs::hard_link(&node, target) {
            Ok(()) => {
                CrashPoint::Linked.reached();
                Ok(())
            }
            // Another file system than the staging path's: a node of its own, which unstage
            // cannot count (kubelet keeps both under its root directory).
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                tracing::warn!(
                    target = %target.display(),
                    "the target is on another file system than the staging path; unstage will \
                     not see this publication"
                );
                Ok(self.host.mounts.make_device_node(target, device.dev)?)
            }
            Err(e) => Err(Status::internal(format!(
                "linking {} to {}: {e}",
                target.display(),
                node.display()
            ))),
        }
    }

    /// The node of `device` in the staging directory, made when missing. Publications are hard
    /// links of it, so its link count says without any state whether one remains.
    fn staged_device_node(&self, staging: &Path, device: &Device) -> Result<PathBuf, Status> {
        let node = staging.join(STAGED_DEVICE);
        match self.host.mounts.device_node(&node)? {
            Some(dev) if dev == device.dev => return Ok(node),
            // A node left from an earlier attachment, which nothing publishes any more.
            Some(_) if publications(&node) == 0 => std::fs::remove_file(&node)
                .map_err(|e| Status::internal(format!("removing {}: {e}", node.display())))?,
            Some(dev) => {
                return Err(Status::failed_precondition(format!(
                    "{} is the device node of {dev}, which is still published; unpublish it first",
                    node.display()
                )));
            }
            None => std::fs::create_dir_all(staging).map_err(|e| {
                Status::internal(format!("creating staging path {}: {e}", staging.display()))
            })?,
        }
        self.host.mounts.make_device_node(&node, device.dev)?;
        Ok(node)
    }

    pub(super) fn unpublish(
        &self,
        request: NodeUnpublishVolumeRequest,
    ) -> Result<NodeUnpublishVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        let target = require_path("target_path", &request.target_path)?;
        let _volume = self.locks.try_lock(&request.volume_id)?;
        if self.mount_at(&target)?.is_some() {
            self.host.mounts.unmount(&target)?;
        }
        let removed = match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir(&target),
            Ok(_) => std::fs::remove_file(&target),
            Err(_) => Ok(()),
        };
        removed.map_err(|e| {
            Status::internal(format!("removing target path {}: {e}", target.display()))
        })?;
        Ok(NodeUnpublishVolumeResponse {})
    }
}

//! NodePublishVolume and NodeUnpublishVolume: a bind mount of the staging mount for file systems;
//! for raw block, a hard link at the target path of a device node made with the device's
//! major:minor in the staging directory (a bind mount of /dev would multiply mounts with every
//! pod), so that the node's link count tells unstage whether a publication remains. A read-only
//! block publication links a second node, of the device's read-only view (see
//! [`super::host::views`]), so that the kernel refuses its writes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::mount::MountFlags;
use tonic::Status;

use super::NodeCore;
use super::context::{self, Access, Use, require};
use super::crash::CrashPoint;
use super::host::{DevNum, Device, MountOptions};
use crate::csi::v1::{
    NodePublishVolumeRequest, NodePublishVolumeResponse, NodeUnpublishVolumeRequest,
    NodeUnpublishVolumeResponse,
};

/// The names of a block volume's device nodes in its staging directory: the device's, and its
/// read-only view's.
const STAGED_DEVICE: &str = "device";
const STAGED_READ_ONLY: &str = "device-ro";

/// How many publications link the staged device node `node`.
fn publications(node: &Path) -> u64 {
    std::fs::symlink_metadata(node).map_or(0, |m| m.nlink().saturating_sub(1))
}

/// How many publications link the device nodes of the block volume staged at `staging`.
pub(super) fn block_publications(staging: &Path) -> u64 {
    [STAGED_DEVICE, STAGED_READ_ONLY]
        .into_iter()
        .map(|name| publications(&staging.join(name)))
        .sum()
}

/// Removes the staged device nodes of a block volume at `staging` and the device's read-only
/// views, unless a publication still links one: unstage must not detach a device a
/// publication still names (its major:minor could go to another volume).
pub(super) fn unstage_block(
    core: &NodeCore,
    volume_id: &str,
    staging: &Path,
) -> Result<(), Status> {
    let mut staged = Vec::new();
    for name in [STAGED_DEVICE, STAGED_READ_ONLY] {
        let node = staging.join(name);
        let Some(dev) = core.host.mounts.device_node(&node)? else {
            continue;
        };
        core.check_device_is_ours(volume_id, &node, dev)?;
        match publications(&node) {
            0 => staged.push((node, dev)),
            n => {
                return Err(Status::failed_precondition(format!(
                    "block volume {volume_id} is still published at {n} target path(s): \
                     NodeUnpublishVolume them first"
                )));
            }
        }
    }
    let mut views: Vec<DevNum> = match core.device_of(volume_id)? {
        Some(device) => core.host.views.views_of(device.dev)?,
        None => Vec::new(),
    };
    for (node, dev) in staged {
        std::fs::remove_file(&node)
            .map_err(|e| Status::internal(format!("removing {}: {e}", node.display())))?;
        if node.ends_with(STAGED_READ_ONLY) {
            views.push(dev);
        }
    }
    for view in views {
        core.host.views.remove(view)?;
    }
    Ok(())
}

impl NodeCore {
    pub(super) fn publish(
        &self,
        request: NodePublishVolumeRequest,
    ) -> Result<NodePublishVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        let target = self.require_path("target_path", &request.target_path)?;
        let usage =
            context::volume_use(request.volume_capability.as_ref(), &request.volume_context)?;
        let staging = self.require_path("staging_target_path", &request.staging_target_path)?;
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
            Access::Block => self.publish_block(
                &request.volume_id,
                &device,
                (&staging, &target),
                readonly,
                usage.single_writer(),
            )?,
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

    fn publish_block(
        &self,
        volume_id: &str,
        device: &Device,
        (staging, target): (&Path, &Path),
        readonly: bool,
        single_writer: bool,
    ) -> Result<(), Status> {
        let (name, dev) = if readonly {
            (STAGED_READ_ONLY, self.host.views.view(device)?)
        } else {
            (STAGED_DEVICE, device.dev)
        };
        if let Some(found) = self.host.mounts.device_node(target)? {
            if found == dev {
                return Ok(());
            }
            return Err(Status::already_exists(format!(
                "target path {} is the device node of {found}, not of {}{} ({dev}); unpublish \
                 it first",
                target.display(),
                if readonly {
                    "the read-only view of "
                } else {
                    ""
                },
                device.path.display(),
            )));
        }
        if single_writer && block_publications(staging) > 0 {
            return Err(Status::failed_precondition(format!(
                "volume {volume_id} is SINGLE_NODE_SINGLE_WRITER and already published at \
                 another target path on this node"
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
        let node = self.staged_device_node(staging, name, dev)?;
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
                Ok(self.host.mounts.make_device_node(target, dev)?)
            }
            Err(e) => Err(Status::internal(format!(
                "linking {} to {}: {e}",
                target.display(),
                node.display()
            ))),
        }
    }

    /// The node `name` of `dev` in the staging directory, made when missing. Publications are
    /// hard links of it, so its link count says without any state whether one remains.
    fn staged_device_node(
        &self,
        staging: &Path,
        name: &str,
        dev: DevNum,
    ) -> Result<PathBuf, Status> {
        let node = staging.join(name);
        match self.host.mounts.device_node(&node)? {
            Some(found) if found == dev => return Ok(node),
            // A node left from an earlier attachment, which nothing publishes any more.
            Some(_) if publications(&node) == 0 => std::fs::remove_file(&node)
                .map_err(|e| Status::internal(format!("removing {}: {e}", node.display())))?,
            Some(found) => {
                return Err(Status::failed_precondition(format!(
                    "{} is the device node of {found}, which is still published; unpublish it \
                     first",
                    node.display()
                )));
            }
            None => std::fs::create_dir_all(staging).map_err(|e| {
                Status::internal(format!("creating staging path {}: {e}", staging.display()))
            })?,
        }
        self.host.mounts.make_device_node(&node, dev)?;
        Ok(node)
    }

    pub(super) fn unpublish(
        &self,
        request: NodeUnpublishVolumeRequest,
    ) -> Result<NodeUnpublishVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        let target = self.require_path("target_path", &request.target_path)?;
        let _volume = self.locks.try_lock(&request.volume_id)?;
        if let Some(mounted) = self.mount_at(&target)? {
            self.check_mount_is_ours(&request.volume_id, &target, &mounted)?;
            self.host.mounts.unmount(&target)?;
        } else if let Some(dev) = self.host.mounts.device_node(&target)? {
            self.check_device_is_ours(&request.volume_id, &target, dev)?;
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

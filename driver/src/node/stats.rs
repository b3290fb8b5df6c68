//! NodeGetVolumeStats: bytes and inodes of a mounted file system, the size of a block volume, and
//! whether the volume can serve I/O (controller live, device present, mount not stale).

use std::path::Path;

use tonic::Status;

use super::NodeCore;
use super::context::require;
use super::host::mount::is_stale;
use super::host::{Attached, FsType, Unhealthy, Usage};
use crate::csi::v1::volume_usage::Unit;
use crate::csi::v1::{
    NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, VolumeCondition, VolumeUsage,
};

impl NodeCore {
    pub(super) fn stats(
        &self,
        request: NodeGetVolumeStatsRequest,
    ) -> Result<NodeGetVolumeStatsResponse, Status> {
        require("volume_id", &request.volume_id)?;
        let path = self.lookup_path(&request.volume_id, "volume_path", &request.volume_path)?;
        let attached = match self.attached_at(&request.volume_id, &path) {
            Ok(attached) => attached,
            Err(not_found) => {
                return match self.given_up(&request.volume_id, &path)? {
                    Some(condition) => Ok(answer(Vec::new(), condition)),
                    None => Err(not_found),
                };
            }
        };
        let health = self.host.fabric.health(&attached);
        let device = attached.device.as_ref();
        if let Some(dev) = self.host.mounts.device_node(&path)? {
            let dev = self.host.views.viewed(dev)?.unwrap_or(dev);
            if device.is_some_and(|d| d.dev != dev) {
                return Err(not_here(&request.volume_id, &path));
            }
            let usage = device.map(|d| VolumeUsage {
                total: i64::try_from(d.size).unwrap_or(i64::MAX),
                unit: Unit::Bytes.into(),
                ..VolumeUsage::default()
            });
            return Ok(answer(
                usage.into_iter().collect(),
                condition(&attached, health, None),
            ));
        }
        let mounted = self
            .mount_at(&path)?
            .filter(|m| device.is_none_or(|d| d.dev == m.dev))
            .ok_or_else(|| not_here(&request.volume_id, &path))?;
        let (usage, stale) = match self.host.mounts.usage(&mounted.mount_point) {
            Ok(usage) => (usage_of(usage), None),
            Err(error) if is_stale(&error) => (Vec::new(), Some(error)),
            Err(error) => {
                return Err(Status::internal(format!(
                    "statvfs {}: {error}",
                    path.display()
                )));
            }
        };
        let stale = stale.map(|error| {
            format!(
                "the mount at {} is stale ({error}): unstage and stage the volume again",
                path.display()
            )
        });
        Ok(answer(usage, condition(&attached, health, stale)))
    }
}

impl NodeCore {
    /// The condition of a volume that has no controller here any more but is still mounted (or
    /// has its device node) at `path`, on a device the kernel no longer has: the kernel gave the
    /// controller up when the RDS stayed away longer than `ctrlLossTmo`. The pod still uses the
    /// path and its I/O fails; NOT_FOUND would leave kubelet nothing to report.
    fn given_up(&self, volume_id: &str, path: &Path) -> Result<Option<VolumeCondition>, Status> {
        let dev = match self.host.mounts.device_node(path)? {
            Some(dev) => Some(dev),
            None => self
                .mount_at(path)?
                .filter(|m| m.fs_type.parse::<FsType>().is_ok())
                .map(|m| m.dev),
        };
        Ok(dev
            .filter(|dev| !self.host.mounts.is_block_device(*dev))
            .map(|dev| VolumeCondition {
                abnormal: true,
                message: format!(
                    "volume {volume_id} has no NVMe/TCP controller on this node any more (the \
                     kernel gives one up when the RDS stays unreachable longer than ctrlLossTmo), \
                     yet {} still holds its device {dev}: every I/O fails. Once the RDS is \
                     reachable, restart the pod: NodeUnpublish, NodeUnstage, NodeStage and \
                     NodePublish connect it again",
                    path.display()
                ),
            }))
    }
}

fn not_here(volume_id: &str, path: &Path) -> Status {
    Status::not_found(format!(
        "volume {volume_id} is not mounted or published at {}",
        path.display()
    ))
}

fn answer(usage: Vec<VolumeUsage>, condition: VolumeCondition) -> NodeGetVolumeStatsResponse {
    NodeGetVolumeStatsResponse {
        usage,
        volume_condition: Some(condition),
    }
}

fn usage_of(u: Usage) -> Vec<VolumeUsage> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    vec![
        VolumeUsage {
            available: n(u.available_bytes),
            total: n(u.total_bytes),
            used: n(u.used_bytes),
            unit: Unit::Bytes.into(),
        },
        VolumeUsage {
            available: n(u.free_inodes),
            total: n(u.total_inodes),
            used: n(u.used_inodes),
            unit: Unit::Inodes.into(),
        },
    ]
}

/// Abnormal, with the first reason, when the transport is down, the device gone or the mount
/// stale.
fn condition(
    attached: &Attached,
    health: Result<(), Unhealthy>,
    stale: Option<String>,
) -> VolumeCondition {
    let problem = health.err().map(|u| u.to_string()).or_else(|| {
        attached.device.is_none().then(|| {
            format!(
                "the block device of {} is gone: the namespace is no longer exported to this node",
                attached.controllers.join(", ")
            )
        })
    });
    match problem.or(stale) {
        Some(message) => VolumeCondition {
            abnormal: true,
            message,
        },
        None => VolumeCondition {
            abnormal: false,
            message: format!("attached through {}", attached.controllers.join(", ")),
        },
    }
}

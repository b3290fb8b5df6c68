//! ControllerPublishVolume and ControllerUnpublishVolume: the disk's NVMe/TCP allow-list names
//! the one node (by host NQN, which is the node id) that may connect, so a node the volume is not
//! published to is fenced out; unpublishing also ends every connection to the export, which
//! matters when Kubernetes detaches from a node that is gone without unstaging (fence.rs).

use std::collections::HashMap;

use tonic::Status;

use super::volume::{metadata, not_found, require, require_complete, volume_slot};
use super::{ControllerService, capability};
use crate::csi::v1::{
    ControllerPublishVolumeRequest, ControllerPublishVolumeResponse,
    ControllerUnpublishVolumeRequest, ControllerUnpublishVolumeResponse,
};
use crate::rds::parse::DiskRecord;
use crate::rds::value::{Nqn, Slot};

pub use crate::contract::{ADDRESS, FILE_PATH, NQN, PORT};

impl ControllerService {
    pub(super) async fn publish(
        &self,
        request: ControllerPublishVolumeRequest,
    ) -> Result<ControllerPublishVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        require("node_id", &request.node_id)?;
        let capability = request
            .volume_capability
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("volume_capability is required"))?;
        capability::check(capability)?;
        let slot = volume_slot(&request.volume_id).ok_or_else(|| not_found(&request.volume_id))?;
        let node = Nqn::parse(&request.node_id).map_err(|_| {
            Status::not_found(format!(
                "node {:?} does not exist: node ids of this driver are NVMe host NQNs",
                request.node_id
            ))
        })?;
        let _volume = self.locks.try_lock(slot.as_str())?;
        let _publishing = self.publishes.lock().await;
        self.fences.check(&node)?;
        let disk = self.volume_disk(&slot, &request.volume_id).await?;
        require_complete(&disk, &request.volume_id)?;
        let disk = match disk.allowed_host.as_deref() {
            Some(host) if host == node.as_str() => {
                if request.readonly {
                    return Err(Status::already_exists(format!(
                        "volume {slot} is published read-write to node {node}; it cannot also \
                         be published read-only"
                    )));
                }
                disk
            }
            Some(other) => {
                return Err(Status::failed_precondition(format!(
                    "volume {slot} is published to node {other}: a volume is attached to one \
                     node at a time, unpublish it there first"
                )));
            }
            None => {
                if request.readonly {
                    return Err(Status::invalid_argument(
                        "readonly publishing is not supported (this driver does not advertise \
                         PUBLISH_READONLY): publish read-write and mount read-only on the node",
                    ));
                }
                self.check_attach_limit(&node).await?;
                self.rds.set_allowed_host(&slot, Some(&node)).await?
            }
        };
        Ok(ControllerPublishVolumeResponse {
            publish_context: self.publish_context(&slot, &disk)?,
        })
    }

    pub(super) async fn unpublish(
        &self,
        request: ControllerUnpublishVolumeRequest,
    ) -> Result<ControllerUnpublishVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        // A volume that does not exist is not published anywhere.
        let Some(slot) = volume_slot(&request.volume_id) else {
            return Ok(ControllerUnpublishVolumeResponse {});
        };
        let _volume = self.locks.try_lock(slot.as_str())?;
        // Nor is a disk this driver did not make: its allow-list is not ours to change.
        let Some(disk) = self
            .rds
            .find(&slot)
            .await?
            .filter(|d| metadata(d).is_some())
        else {
            return Ok(ControllerUnpublishVolumeResponse {});
        };
        // An empty node id means every node.
        let published_there = disk
            .allowed_host
            .as_deref()
            .is_some_and(|host| request.node_id.is_empty() || host == request.node_id);
        if published_there {
            self.release(&slot, &disk).await?;
        }
        Ok(ControllerUnpublishVolumeResponse {})
    }

    /// RESOURCE_EXHAUSTED when `node` already has the most volumes it may have.
    async fn check_attach_limit(&self, node: &Nqn) -> Result<(), Status> {
        let published = self
            .volume_disks()
            .await?
            .iter()
            .filter(|disk| disk.allowed_host.as_deref() == Some(node.as_str()))
            .count() as u64;
        let limit = self.settings.max_volumes_per_node;
        if published >= limit {
            return Err(Status::resource_exhausted(format!(
                "node {node} already has {published} volumes published, the most it may have \
                 (controller.maxVolumesPerNode = {limit}); unpublish one first"
            )));
        }
        Ok(())
    }

    fn publish_context(
        &self,
        slot: &Slot,
        disk: &DiskRecord,
    ) -> Result<HashMap<String, String>, Status> {
        let nqn = disk.nqn.as_deref().filter(|_| disk.export).ok_or_else(|| {
            Status::failed_precondition(format!(
                "disk {slot} is not exported over NVMe/TCP, so no node can attach it; set \
                 nvme-tcp-export=yes on the RDS"
            ))
        })?;
        let port = disk.port.unwrap_or(self.settings.nvme_port.get());
        let mut context = HashMap::from([
            (ADDRESS.to_owned(), self.settings.nvme_address.clone()),
            (PORT.to_owned(), port.to_string()),
            (NQN.to_owned(), nqn.to_owned()),
        ]);
        if let Some(path) = &disk.file_path {
            context.insert(FILE_PATH.to_owned(), path.clone());
        }
        Ok(context)
    }
}

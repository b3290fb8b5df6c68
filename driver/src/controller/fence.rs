//! Fencing: taking a node's access to its volumes away on the RDS, and refusing to publish to a
//! fenced node until Kubernetes says it is back. The Kubernetes side (`crate::kubernetes`)
//! decides which nodes are fenced and records it on their Node objects; every controller replica
//! learns the set from there, so the refusal holds whichever replica a publish reaches.

use std::collections::BTreeMap;
use std::num::NonZeroU16;
use std::sync::{PoisonError, RwLock};

use tonic::Status;

use super::ControllerService;
use super::publish::host_nqns;
use super::volume::metadata;
use crate::ids;
use crate::rds::command::NvmeExport;
use crate::rds::parse::DiskRecord;
use crate::rds::value::{Nqn, Slot};

/// A node no volume may be published to, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedNode {
    /// The Kubernetes Node's name.
    pub node: String,
    pub why: String,
}

/// The fenced nodes by host NQN (the CSI node id).
#[derive(Debug, Default)]
pub struct Fences(RwLock<BTreeMap<String, FencedNode>>);

impl Fences {
    /// Replaces the whole set with what the API server shows now.
    pub fn replace(&self, fenced: BTreeMap<String, FencedNode>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = fenced;
    }

    pub fn get(&self, host: &str) -> Option<FencedNode> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(host)
            .cloned()
    }

    /// FAILED_PRECONDITION when `host` is fenced.
    pub(super) fn check(&self, host: &Nqn) -> Result<(), Status> {
        match self.get(host.as_str()) {
            Some(fenced) => Err(Status::failed_precondition(format!(
                "node {} (host {host}) is fenced: {}; no volume is published to it until its \
                 Node is Ready again and none of its old VolumeAttachments is left",
                fenced.node, fenced.why
            ))),
            None => Ok(()),
        }
    }
}

impl ControllerService {
    /// The registry of fenced nodes that publishing consults.
    pub fn fences(&self) -> &Fences {
        &self.fences
    }

    /// Takes every volume published to `host` away from it on the RDS (its allow-list keeps
    /// only its other host, if any; connections ended) and answers their volume ids. A volume in
    /// the middle of another call fails the whole fence with ABORTED: the caller tries again.
    pub async fn fence_host(&self, host: &Nqn) -> Result<Vec<String>, Status> {
        let held: Vec<DiskRecord> = self
            .volume_disks()
            .await?
            .into_iter()
            .filter(|disk| disk.allowed_hosts.iter().any(|h| h == host.as_str()))
            .filter(|disk| metadata(disk).is_some())
            .collect();
        let mut fenced = Vec::new();
        for disk in held {
            if self.remove_host(&disk.slot, host).await? {
                fenced.push(disk.slot);
            }
        }
        Ok(fenced)
    }

    /// Takes `host` off the allow-list of volume `volume_id`, keeping its other host, and ends
    /// every connection to the volume; false when the host was not on it (published elsewhere
    /// since, or no volume of this driver).
    pub async fn remove_host(&self, volume_id: &str, host: &Nqn) -> Result<bool, Status> {
        self.take_off(volume_id, |h| h == host.as_str()).await
    }

    /// Takes the hosts that `off` picks off the allow-list of volume `volume_id` and ends every
    /// connection to the volume; false when none was on it. A disk this driver did not make is
    /// left alone: its allow-list is not ours to change.
    pub(super) async fn take_off(
        &self,
        volume_id: &str,
        off: impl Fn(&str) -> bool,
    ) -> Result<bool, Status> {
        let Some(slot) = super::volume::volume_slot(volume_id) else {
            return Ok(false);
        };
        let _volume = self.locks.try_lock(slot.as_str())?;
        let _publishing = self.publishes.lock().await;
        let Some(disk) = self
            .rds
            .find(&slot)
            .await?
            .filter(|d| metadata(d).is_some())
        else {
            return Ok(false);
        };
        let keep: Vec<String> = disk
            .allowed_hosts
            .iter()
            .filter(|h| !off(h))
            .cloned()
            .collect();
        if keep.len() == disk.allowed_hosts.len() {
            if !disk.export {
                self.export_again(&slot, &disk, &[]).await?;
            }
            return Ok(false);
        }
        self.release(&slot, &disk, &host_nqns(&slot, &keep)?)
            .await?;
        Ok(true)
    }

    /// The host NQNs volume `volume_id` is published to.
    pub async fn published_hosts(&self, volume_id: &str) -> Result<Vec<String>, Status> {
        let Some(slot) = super::volume::volume_slot(volume_id) else {
            return Ok(Vec::new());
        };
        Ok(self
            .rds
            .find(&slot)
            .await?
            .filter(|disk| metadata(disk).is_some())
            .map(|disk| disk.allowed_hosts)
            .unwrap_or_default())
    }

    /// Publishes `slot` to `keep` only (often none): its export admits no other host and every
    /// connection to it ends, so a node it was published to cannot go on writing (a node that
    /// vanished without unstaging, one that comes back after being fenced, a live migration's
    /// source once the migration is over). Whether RouterOS drops the established connection of
    /// a host taken off the allow-list is undocumented (REFERENCE.md §13 item 3), so the export
    /// is ended and made again even when a host stays: that host, still admitted, reconnects by
    /// itself (its NVMe/TCP initiator retries every `reconnectDelay` within `ctrlLossTmo`), at
    /// the cost of a pause in its I/O.
    pub(super) async fn release(
        &self,
        slot: &Slot,
        disk: &DiskRecord,
        keep: &[Nqn],
    ) -> Result<DiskRecord, Status> {
        match export_of(disk) {
            Some(export) => Ok(self.rds.fence(slot, &export, keep).await?),
            None => self.export_again(slot, disk, keep).await,
        }
    }

    /// Volumes are always exported; one found unexported lost its export to an unpublish or a
    /// fence cut off between ending the export and making it again ([`RdsClient::fence`]), and
    /// a retry finds no host to take off (an unexported disk admits none). The export comes back
    /// with the volume's NQN, admitting `hosts`. Found by rds-chaos.
    ///
    /// [`RdsClient::fence`]: crate::rds::disk::RdsClient::fence
    pub(super) async fn export_again(
        &self,
        slot: &Slot,
        disk: &DiskRecord,
        hosts: &[Nqn],
    ) -> Result<DiskRecord, Status> {
        let nqn = ids::volume_nqn(&self.settings.nqn_prefix, slot)
            .map_err(|e| Status::internal(format!("the NQN of volume {slot}: {e}")))?;
        let export = NvmeExport {
            port: disk
                .port
                .and_then(NonZeroU16::new)
                .unwrap_or(self.settings.nvme_port),
            nqn,
        };
        tracing::warn!(%slot, nqn = %export.nqn, "volume found without its export; exporting it again");
        Ok(self.rds.fence(slot, &export, hosts).await?)
    }
}

/// The export a disk has, when it is exported.
fn export_of(disk: &DiskRecord) -> Option<NvmeExport> {
    if !disk.export {
        return None;
    }
    Some(NvmeExport {
        port: std::num::NonZeroU16::new(disk.port?)?,
        nqn: Nqn::parse(disk.nqn.as_deref()?).ok()?,
    })
}

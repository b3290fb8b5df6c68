//! What the orphan reconciler ([`crate::orphans`]) needs from the controller: where its things
//! are, what the RDS holds there, and deletions that keep every rule a CSI delete keeps.

use std::time::Duration;

use tonic::Status;

use super::ControllerService;
use crate::csi::v1::{DeleteSnapshotRequest, DeleteVolumeRequest};
use crate::ids::IdKind;
use crate::orphans::{Kind, OnRds, Orphan, Place};
use crate::rds::disk::RdsError;
use crate::rds::value::RosPath;

impl ControllerService {
    /// Where this controller keeps volumes and snapshots.
    pub fn place(&self) -> Place {
        Place {
            pool: self.settings.pool.clone(),
            base_dir: self.settings.base_dir.clone(),
            nqn_prefix: self.settings.nqn_prefix.clone(),
        }
    }

    /// Every disk on the RDS and the `/file` entries under `<pool>/<baseDir>/`.
    pub async fn inventory(&self) -> Result<OnRds, RdsError> {
        let dir = self.place().dir();
        let (disks, files) = tokio::try_join!(self.rds.all(), self.rds.files_under(&dir))?;
        Ok(OnRds { disks, files })
    }

    /// Deletes `orphan` as its own kind of delete does: a disk by DeleteVolume or
    /// DeleteSnapshot (so a published volume, the source of a copy or a disk being copied into
    /// is refused as it is there), a file with its id's guard held and only while no disk has
    /// that slot, an export by ending it unless it admits a node (the disk, not provably the
    /// driver's, stays).
    pub async fn delete_orphan(&self, orphan: &Orphan) -> Result<(), Status> {
        let id = orphan.slot.to_string();
        // A copy still running into the disk makes the delete ABORTED at once: the orphan
        // waits for the next pass.
        let within = Some(Duration::ZERO);
        match (orphan.kind, orphan.id_kind) {
            (Kind::Disk, IdKind::Volume) => {
                let request = DeleteVolumeRequest {
                    volume_id: id,
                    ..Default::default()
                };
                self.delete(request, within).await.map(drop)
            }
            (Kind::Disk, IdKind::Snapshot) => {
                let request = DeleteSnapshotRequest {
                    snapshot_id: id,
                    ..Default::default()
                };
                self.delete_snapshot(request, within).await.map(drop)
            }
            (Kind::File, _) => {
                let file = RosPath::parse(orphan.file.as_deref().unwrap_or_default())
                    .map_err(|e| Status::internal(format!("orphan file {}: {e}", orphan.name())))?;
                let _guard = self.locks.try_lock(orphan.slot.as_str())?;
                if self.rds.find(&orphan.slot).await?.is_some() {
                    return Err(Status::aborted(format!(
                        "a disk {} appeared since the file {file} was found without one",
                        orphan.slot
                    )));
                }
                Ok(self.rds.remove(&orphan.slot, &file).await?)
            }
            (Kind::Export, _) => {
                let _guard = self.locks.try_lock(orphan.slot.as_str())?;
                // As DeleteVolume keeps a published volume: a node may be using it.
                let nodes = self
                    .rds
                    .find(&orphan.slot)
                    .await?
                    .map(|d| d.allowed_hosts)
                    .unwrap_or_default();
                if !nodes.is_empty() {
                    return Err(Status::failed_precondition(format!(
                        "the export of disk {} admits {}: not ended while a node may be using it",
                        orphan.slot,
                        nodes.join(", ")
                    )));
                }
                self.rds.unexport(&orphan.slot).await?;
                Ok(())
            }
        }
    }
}

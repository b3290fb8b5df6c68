//! DeleteVolume: idempotent; removes the disk and its backing file and checks both are gone.

use std::time::Duration;

use tonic::Status;

use super::ControllerService;
use super::volume::{require, volume_slot};
use crate::csi::v1::{DeleteVolumeRequest, DeleteVolumeResponse};
use crate::ids::{self, IdKind, Metadata};
use crate::rds::parse::DiskRecord;
use crate::rds::value::RosPath;

impl ControllerService {
    /// `within`: how long a copy still running into the volume may be waited for.
    pub(super) async fn delete(
        &self,
        request: DeleteVolumeRequest,
        within: Option<Duration>,
    ) -> Result<DeleteVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        // An id this driver never made names nothing to delete.
        let Some(slot) = volume_slot(&request.volume_id) else {
            return Ok(DeleteVolumeResponse {});
        };
        self.refuse_while_copied_from(&slot, "volume")?;
        self.wait_for_copy_into(&slot, "volume", within).await?;
        let _volume = self.locks.try_lock(slot.as_str())?;
        self.refuse_while_pending_from(&slot, "volume").await?;
        let subvolume_file = ids::subvolume_disk_path(&self.settings.pool, &slot);
        let files = match self.rds.find(&slot).await? {
            // The disk is gone, but an earlier delete may have stopped before removing the file
            // or, for `layout: subvolume`, the subvolume holding it. The file is where the
            // volume was made, which today's settings do not tell: search for it.
            None => match self.rds.subvolume(&slot).await? {
                Some(_) => vec![subvolume_file.clone()],
                None => self.rds.files_of(&slot).await?,
            },
            Some(disk) => {
                if let Err(why) = Metadata::of_disk(disk.comment.as_deref(), IdKind::Volume) {
                    return Err(Status::failed_precondition(format!(
                        "disk {slot} {why}; refusing to delete it"
                    )));
                }
                if !disk.allowed_hosts.is_empty() {
                    return Err(Status::failed_precondition(format!(
                        "volume {slot} is still published to node {}: \
                         ControllerUnpublishVolume it first",
                        disk.allowed_hosts.join(" and ")
                    )));
                }
                vec![recorded_file(&disk)?]
            }
        };
        for file in &files {
            self.rds.remove(&slot, file).await?;
        }
        // A volume in its own subvolume (`layout: subvolume`) takes the subvolume with it; its
        // snapshots are subvolumes of their own and stay.
        if files.contains(&subvolume_file) {
            self.rds.remove_subvolume(&slot).await?;
        }
        Ok(DeleteVolumeResponse {})
    }
}

/// The backing file the RDS records for `disk` (its `file-path`).
pub(super) fn recorded_file(disk: &DiskRecord) -> Result<RosPath, Status> {
    RosPath::parse(disk.file_path.as_deref().unwrap_or_default()).map_err(|e| {
        Status::internal(format!(
            "disk {} has a file-path rds-csi cannot use: {e}",
            disk.slot
        ))
    })
}

//! ControllerExpandVolume: grows the disk's file; a volume never shrinks.

use tonic::Status;

use super::capacity::Range;
use super::volume::{not_found, require, volume_slot};
use super::{ControllerService, capability};
use crate::csi::v1::{ControllerExpandVolumeRequest, ControllerExpandVolumeResponse};

impl ControllerService {
    pub(super) async fn expand(
        &self,
        request: ControllerExpandVolumeRequest,
    ) -> Result<ControllerExpandVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        let range =
            Range::of(Some(request.capacity_range.as_ref().ok_or_else(|| {
                Status::invalid_argument("capacity_range is required")
            })?))?;
        if range.is_empty() {
            return Err(Status::invalid_argument(
                "capacity_range needs required_bytes or limit_bytes",
            ));
        }
        if let Some(capability) = &request.volume_capability {
            capability::check(capability)?;
        }
        // A file system grows on the node; a raw block device needs nothing more.
        let node_expansion_required = !request
            .volume_capability
            .as_ref()
            .is_some_and(capability::is_block);
        let slot = volume_slot(&request.volume_id).ok_or_else(|| not_found(&request.volume_id))?;
        let _volume = self.locks.try_lock(slot.as_str())?;
        let disk = self.volume_disk(&slot, &request.volume_id).await?;
        let current = disk.size.unwrap_or(0);
        let capacity = if range.admits(current) {
            current
        } else if range.limit.is_some_and(|limit| current > limit) {
            return Err(Status::out_of_range(format!(
                "volume {slot} has {current} bytes, more than the requested {range}: volumes \
                 cannot shrink"
            )));
        } else {
            let size = range.size()?;
            self.rds.resize(&slot, size).await.map_err(|error| {
                if error.is_refusal() {
                    // Whether RouterOS grows a file disk is an open question (REFERENCE.md §13
                    // item 10): say which probe tells, rather than an internal error.
                    Status::failed_precondition(format!(
                        "the RDS refused to grow volume {slot} with `/disk set file-size=`:                          {error}; this RDS cannot expand volumes (`rds-csi doctor --all` probes                          it: REFERENCE.md §13 item 10)"
                    ))
                } else {
                    error.into()
                }
            })?;
            size.get()
        };
        Ok(ControllerExpandVolumeResponse {
            capacity_bytes: i64::try_from(capacity).unwrap_or(i64::MAX),
            node_expansion_required,
        })
    }
}

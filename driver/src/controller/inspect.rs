//! The read-only RPCs: ControllerGetVolume, ListVolumes, ValidateVolumeCapabilities and
//! GetCapacity.

use tonic::Status;

use super::capacity::BLOCK;
use super::volume::{metadata, published_nodes, require, to_volume, volume_slot};
use super::{ControllerService, Parameters, capability};
use crate::csi::v1::controller_get_volume_response as get_volume;
use crate::csi::v1::list_volumes_response::{Entry, VolumeStatus};
use crate::csi::v1::validate_volume_capabilities_response::Confirmed;
use crate::csi::v1::{
    ControllerGetVolumeRequest, ControllerGetVolumeResponse, GetCapacityRequest,
    GetCapacityResponse, ListVolumesRequest, ListVolumesResponse,
    ValidateVolumeCapabilitiesRequest, ValidateVolumeCapabilitiesResponse,
};
use crate::rds::value::ByteSize;

impl ControllerService {
    pub(super) async fn get(
        &self,
        request: ControllerGetVolumeRequest,
    ) -> Result<ControllerGetVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        let (_, disk) = self.find_volume(&request.volume_id).await?;
        Ok(ControllerGetVolumeResponse {
            volume: Some(to_volume(&disk, Default::default())),
            status: Some(get_volume::VolumeStatus {
                published_node_ids: published_nodes(&disk),
                volume_condition: Some(self.condition(&disk)),
            }),
        })
    }

    /// Pages are ordered by volume id and a token is the last id of the previous page, so a
    /// token stays valid while volumes come and go: the next page starts after it.
    pub(super) async fn list(
        &self,
        request: ListVolumesRequest,
    ) -> Result<ListVolumesResponse, Status> {
        let max_entries = usize::try_from(request.max_entries).map_err(|_| {
            Status::invalid_argument(format!("max_entries is negative ({})", request.max_entries))
        })?;
        let after = match request.starting_token.as_str() {
            "" => None,
            token => Some(volume_slot(token).ok_or_else(|| {
                Status::aborted(format!(
                    "starting_token {token:?} is not a token this driver returned; list again \
                     from the start"
                ))
            })?),
        };
        let mut disks: Vec<_> = self
            .volume_disks()
            .await?
            .into_iter()
            .filter(|disk| metadata(disk).is_some())
            .filter(|disk| {
                after
                    .as_ref()
                    .is_none_or(|after| disk.slot.as_str() > after.as_str())
            })
            .collect();
        let more = max_entries > 0 && disks.len() > max_entries;
        if more {
            disks.truncate(max_entries);
        }
        let next_token = match disks.last() {
            Some(last) if more => last.slot.clone(),
            _ => String::new(),
        };
        let entries = disks
            .iter()
            .map(|disk| Entry {
                volume: Some(to_volume(disk, Default::default())),
                status: Some(VolumeStatus {
                    published_node_ids: published_nodes(disk),
                    volume_condition: Some(self.condition(disk)),
                }),
            })
            .collect();
        Ok(ListVolumesResponse {
            entries,
            next_token,
        })
    }

    pub(super) async fn validate(
        &self,
        request: ValidateVolumeCapabilitiesRequest,
    ) -> Result<ValidateVolumeCapabilitiesResponse, Status> {
        require("volume_id", &request.volume_id)?;
        if request.volume_capabilities.is_empty() {
            return Err(Status::invalid_argument("volume_capabilities is required"));
        }
        self.find_volume(&request.volume_id).await?;
        let refused = request
            .volume_capabilities
            .iter()
            .find_map(capability::unsupported)
            .or_else(|| Parameters::parse(&request.parameters).err())
            .or_else(|| {
                (!request.mutable_parameters.is_empty())
                    .then(|| "mutable_parameters are not supported".to_owned())
            });
        Ok(match refused {
            Some(message) => ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message,
            },
            None => ValidateVolumeCapabilitiesResponse {
                confirmed: Some(Confirmed {
                    volume_context: request.volume_context,
                    volume_capabilities: request.volume_capabilities,
                    parameters: request.parameters,
                    mutable_parameters: Default::default(),
                }),
                message: String::new(),
            },
        })
    }

    pub(super) async fn capacity(
        &self,
        request: GetCapacityRequest,
    ) -> Result<GetCapacityResponse, Status> {
        Parameters::parse(&request.parameters).map_err(Status::invalid_argument)?;
        if request
            .volume_capabilities
            .iter()
            .any(|c| capability::unsupported(c).is_some())
        {
            // No volume with these capabilities can be made, in any amount.
            return Ok(GetCapacityResponse::default());
        }
        let pool = self.rds.capacity().await?;
        let available = i64::try_from(pool.free.min(ByteSize::MAX)).unwrap_or(i64::MAX);
        Ok(GetCapacityResponse {
            available_capacity: available,
            maximum_volume_size: Some(available - available % BLOCK as i64),
            minimum_volume_size: Some(BLOCK as i64),
        })
    }
}

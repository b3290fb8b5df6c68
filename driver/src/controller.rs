//! The CSI Controller service: volumes as file disks on the RDS, exported over NVMe/TCP.
//!
//! This file is the protocol edge: each RPC opens a span carrying the volume id, runs its
//! handler and logs the outcome. The handlers (one module per concern) check the request, call
//! [`RdsClient`] and shape the answer; `status` turns RDS failures into gRPC codes. The
//! controller keeps no state of its own: the RDS is the source of truth (the disk's comment
//! holds the CSI name, its allow-list the nodes it is published to).

pub use crate::contract::capability;
mod capacity;
mod copies;
mod create;
mod delete;
mod expand;
pub mod fence;
mod inspect;
pub mod migration;
pub mod notices;
mod orphans;
pub mod params;
pub mod publish;
mod snapshot;
mod source;
mod status;
pub(crate) mod volume;

use std::num::NonZeroU16;
use std::sync::Arc;

use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::csi::v1::controller_server::Controller;
use crate::csi::v1::controller_service_capability::{Rpc, rpc};
use crate::csi::v1::*;
use crate::guard::{CreateLimit, VolumeLocks};
use crate::rds::disk::RdsClient;
use crate::rds::value::{Nqn, RosPath};
use crate::rpc_trace::traced;
use crate::snapshot::Method;
use crate::snapshot::verified::Verified;

pub use params::Parameters;

/// What the controller needs from the configuration, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub pool: RosPath,
    pub base_dir: RosPath,
    pub nqn_prefix: Nqn,
    /// The NVMe/TCP address given to nodes in the publish context.
    pub nvme_address: String,
    pub nvme_port: NonZeroU16,
    pub max_volumes_per_node: u64,
    pub max_concurrent_creates: usize,
    /// The snapshot method when a VolumeSnapshotClass names none, and for clones.
    pub snapshot_method: Method,
    /// Whether the RDS's allow-list admits two hosts (a live migration's source and target).
    pub allow_list: crate::rds::allow_list::Reading,
}

impl Settings {
    /// The controller's settings from a configuration; fails with the first invalid key (run
    /// [`Config::validate`] first for the full list).
    pub fn from_config(config: &Config) -> Result<Settings, String> {
        let rds = &config.rds;
        let key = |key: &'static str| move |message: String| format!("{key}: {message}");
        Ok(Settings {
            pool: rds.pool_path().map_err(key("rds.pool"))?,
            base_dir: rds.base_dir_path().map_err(key("rds.baseDir"))?,
            nqn_prefix: rds.nqn_prefix_nqn().map_err(key("rds.nqnPrefix"))?,
            nvme_address: rds.nvme_target_address().to_owned(),
            nvme_port: NonZeroU16::new(rds.nvme_port)
                .ok_or_else(|| key("rds.nvmePort")("must be greater than 0".to_owned()))?,
            max_volumes_per_node: config.controller.max_volumes_per_node,
            max_concurrent_creates: config.controller.max_concurrent_creates,
            snapshot_method: config.controller.snapshot_method,
            allow_list: rds.allow_list,
        })
    }
}

pub struct ControllerService {
    rds: Arc<RdsClient>,
    settings: Settings,
    locks: VolumeLocks,
    creates: CreateLimit,
    /// Publishes run one at a time, so two publishes to one node cannot both pass the attach
    /// limit with the same count.
    publishes: Mutex<()>,
    /// What the probe showed about each snapshot method on this RDS.
    verified: Verified,
    /// Copies running for snapshots, restores and clones, past the calls that started them.
    copies: copies::Copies,
    /// Nodes nothing is published to, as the API server shows them.
    fences: fence::Fences,
    /// What a person must act on, for Events.
    notices: notices::Notices,
    /// Live migrations in progress, by volume, as the API server shows them.
    migrations: migration::Migrations,
}

impl ControllerService {
    pub fn new(rds: Arc<RdsClient>, settings: Settings) -> Self {
        Self {
            rds,
            creates: CreateLimit::new(settings.max_concurrent_creates),
            settings,
            locks: VolumeLocks::default(),
            publishes: Mutex::new(()),
            verified: Verified::default(),
            copies: copies::Copies::default(),
            fences: fence::Fences::default(),
            notices: notices::Notices::default(),
            migrations: migration::Migrations::default(),
        }
    }
}

impl ControllerService {
    /// What the calls noticed that a person must act on.
    pub fn notices(&self) -> &notices::Notices {
        &self.notices
    }
}

/// The RPCs and modes this controller implements: exactly what it advertises.
/// SINGLE_NODE_MULTI_WRITER holds because a one-host allow-list serves it as well as
/// SINGLE_NODE_WRITER.
const CAPABILITIES: [rpc::Type; 13] = [
    rpc::Type::CreateDeleteVolume,
    rpc::Type::PublishUnpublishVolume,
    rpc::Type::ListVolumes,
    rpc::Type::GetCapacity,
    rpc::Type::ExpandVolume,
    rpc::Type::ListVolumesPublishedNodes,
    rpc::Type::GetVolume,
    rpc::Type::VolumeCondition,
    rpc::Type::SingleNodeMultiWriter,
    rpc::Type::CreateDeleteSnapshot,
    rpc::Type::ListSnapshots,
    rpc::Type::GetSnapshot,
    rpc::Type::CloneVolume,
];

fn unimplemented<T>(what: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not supported by this driver yet; it does not advertise the capability"
    )))
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let within = copies::answer_within(request.metadata());
        let request = request.into_inner();
        let id = crate::ids::volume_id(&request.name);
        let id = if request.name.is_empty() {
            ""
        } else {
            id.as_str()
        };
        let claim = notices::named_in(&request.parameters, "pvc", "PersistentVolumeClaim");
        let answer = traced("CreateVolume", id, self.create(request, within)).await;
        self.notices.failed(claim, &answer, "ProvisioningRefused");
        answer
    }

    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let within = copies::answer_within(request.metadata());
        let request = request.into_inner();
        traced(
            "DeleteVolume",
            &request.volume_id.clone(),
            self.delete(request, within),
        )
        .await
    }

    async fn controller_publish_volume(
        &self,
        request: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        let request = request.into_inner();
        let volume = notices::About::Volume(request.volume_id.clone());
        let answer = traced(
            "ControllerPublishVolume",
            &request.volume_id.clone(),
            self.publish(request),
        )
        .await;
        self.notices.failed(Some(volume), &answer, "AttachRefused");
        answer
    }

    async fn controller_unpublish_volume(
        &self,
        request: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        let request = request.into_inner();
        traced(
            "ControllerUnpublishVolume",
            &request.volume_id.clone(),
            self.unpublish(request),
        )
        .await
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let request = request.into_inner();
        traced(
            "ValidateVolumeCapabilities",
            &request.volume_id.clone(),
            self.validate(request),
        )
        .await
    }

    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        traced("ListVolumes", "", self.list(request.into_inner())).await
    }

    async fn get_capacity(
        &self,
        request: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        traced("GetCapacity", "", self.capacity(request.into_inner())).await
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        let capabilities = CAPABILITIES
            .iter()
            .map(|&kind| ControllerServiceCapability {
                r#type: Some(controller_service_capability::Type::Rpc(Rpc {
                    r#type: kind.into(),
                })),
            })
            .collect();
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn create_snapshot(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        let within = copies::answer_within(request.metadata());
        let request = request.into_inner();
        let id = if request.name.is_empty() {
            String::new()
        } else {
            crate::ids::snapshot_id(&request.name).to_string()
        };
        let snapshot = notices::named_in(&request.parameters, "volumesnapshot", "VolumeSnapshot");
        let answer = traced("CreateSnapshot", &id, self.create_snapshot(request, within)).await;
        self.notices.failed(snapshot, &answer, "SnapshotRefused");
        answer
    }

    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        let within = copies::answer_within(request.metadata());
        let request = request.into_inner();
        traced(
            "DeleteSnapshot",
            &request.snapshot_id.clone(),
            self.delete_snapshot(request, within),
        )
        .await
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        traced(
            "ListSnapshots",
            "",
            self.list_snapshots(request.into_inner()),
        )
        .await
    }

    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        let request = request.into_inner();
        traced(
            "GetSnapshot",
            &request.snapshot_id.clone(),
            self.get_snapshot(request),
        )
        .await
    }

    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        let request = request.into_inner();
        traced(
            "ControllerExpandVolume",
            &request.volume_id.clone(),
            self.expand(request),
        )
        .await
    }

    async fn controller_get_volume(
        &self,
        request: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        let request = request.into_inner();
        traced(
            "ControllerGetVolume",
            &request.volume_id.clone(),
            self.get(request),
        )
        .await
    }

    async fn controller_modify_volume(
        &self,
        _: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        unimplemented("ControllerModifyVolume")
    }
}

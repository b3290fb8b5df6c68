//! The rig of the kernel-initiator node test and benchmark: rds-sim with its NVMe/TCP target and a
//! controller-mode rds-csi on the host, `rds-csi node` (fabric "kernel") in a guest, and clients
//! of both. Volumes are created and published through the controller as the external-provisioner
//! and external-attacher would, so the node gets the contexts a CO hands it.

use std::collections::HashMap;
use std::path::Path;

use rds_csi::config::Config;
use rds_csi::csi::v1::controller_client::ControllerClient;
use rds_csi::csi::v1::node_client::NodeClient;
use rds_csi::csi::v1::{
    DeleteVolumeRequest, NodePublishVolumeRequest, NodeStageVolumeRequest, VolumeCapability,
};
use rds_csi::service::Mode;
use tonic::Status;
use tonic::transport::Channel;

use super::HOST_ADDR;
use super::node_plugin::{NodePlugin, NodePluginConfig, NodePluginError};
use super::nvme::{SimTarget, SimTargetError};
use crate::driver_server::DriverServer;
use crate::requests;

#[derive(Debug, thiserror::Error)]
pub enum RigError {
    #[error(transparent)]
    Sim(#[from] SimTargetError),
    #[error(transparent)]
    Plugin(#[from] NodePluginError),
    #[error("the controller on the host: {0:#}")]
    Controller(anyhow::Error),
}

impl RigError {
    /// Why a test may skip rather than fail: see [`super::skip_reason`].
    pub fn skip_reason(&self) -> Option<String> {
        match self {
            RigError::Plugin(e) => e.skip_reason(),
            _ => None,
        }
    }
}

/// The RDS a rig runs against: the runtime the host's side runs on, and the `[rds]` table that
/// reaches it from the host (the controller's SSH) and from the guest (NVMe/TCP).
pub trait RigRds {
    fn runtime(&self) -> &tokio::runtime::Runtime;
    fn rds_table(&self) -> toml::Table;
    fn shutdown(self);
}

/// rds-sim in-process on the host's loopback, which the guest reaches at [`HOST_ADDR`].
impl RigRds for SimTarget {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        SimTarget::runtime(self)
    }

    fn rds_table(&self) -> toml::Table {
        self.rds_config(HOST_ADDR)
    }

    fn shutdown(self) {
        SimTarget::shutdown(self);
    }
}

pub struct KernelNodeRig<R: RigRds = SimTarget> {
    pub sim: R,
    pub plugin: NodePlugin,
    pub controller: ControllerClient<Channel>,
    pub node: NodeClient<Channel>,
    /// The controller's configuration; its `[node]` table is the guest plugin's.
    pub config: Config,
    host_nqn: String,
    /// Serves `controller` until the rig is dropped.
    _server: DriverServer,
}

/// A volume created and published to the guest's host NQN, with the contexts NodeStage needs.
pub struct PublishedVolume {
    pub id: String,
    pub context: HashMap<String, String>,
    pub publish: HashMap<String, String>,
}

impl PublishedVolume {
    /// The NodeStageVolume kubelet sends for this volume at `staging`.
    pub fn stage_request(
        &self,
        staging: &str,
        capability: VolumeCapability,
    ) -> NodeStageVolumeRequest {
        NodeStageVolumeRequest {
            volume_id: self.id.clone(),
            publish_context: self.publish.clone(),
            staging_target_path: staging.to_owned(),
            volume_capability: Some(capability),
            volume_context: self.context.clone(),
            ..Default::default()
        }
    }

    /// The NodePublishVolume kubelet sends for this volume staged at `staging`.
    pub fn publish_request(
        &self,
        staging: &str,
        target: &str,
        capability: VolumeCapability,
        readonly: bool,
    ) -> NodePublishVolumeRequest {
        NodePublishVolumeRequest {
            volume_id: self.id.clone(),
            publish_context: self.publish.clone(),
            staging_target_path: staging.to_owned(),
            target_path: target.to_owned(),
            volume_capability: Some(capability),
            volume_context: self.context.clone(),
            readonly,
            ..Default::default()
        }
    }
}

impl KernelNodeRig {
    /// Starts rds-sim under `dir`, boots the guest's node plugin with `plugin` (whose `[node]`
    /// table gains `host_nqn` and fabric "kernel") and serves a controller beside rds-sim.
    pub fn start(
        dir: &Path,
        host_nqn: &str,
        plugin: NodePluginConfig,
    ) -> Result<KernelNodeRig, RigError> {
        KernelNodeRig::start_on(SimTarget::start(dir)?, dir, host_nqn, plugin)
    }
}

impl<R: RigRds> KernelNodeRig<R> {
    /// Boots the guest's node plugin with `plugin` (whose `[node]` table gains `host_nqn` and
    /// fabric "kernel") and serves a controller on the host, both against `sim`.
    pub fn start_on(
        sim: R,
        dir: &Path,
        host_nqn: &str,
        mut plugin: NodePluginConfig,
    ) -> Result<KernelNodeRig<R>, RigError> {
        plugin.node.insert("hostNqn".into(), host_nqn.into());
        plugin.node.insert("fabric".into(), "kernel".into());
        let mut table = toml::Table::new();
        table.insert("rds".into(), sim.rds_table().into());
        table.insert("node".into(), plugin.node.clone().into());
        let config =
            Config::from_toml(&table.to_string()).map_err(|e| RigError::Controller(e.into()))?;
        let plugin = NodePlugin::boot(plugin, dir)?;
        let socket = dir.join("controller.sock");
        let (server, node) = sim
            .runtime()
            .block_on(async {
                let server = DriverServer::start(config.clone(), &socket, Mode::Controller).await?;
                anyhow::Ok((server, plugin.channel().await?))
            })
            .map_err(RigError::Controller)?;
        Ok(KernelNodeRig {
            controller: ControllerClient::new(server.channel()),
            node: NodeClient::new(node),
            sim,
            plugin,
            config,
            host_nqn: host_nqn.to_owned(),
            _server: server,
        })
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.sim.runtime().block_on(future)
    }

    /// CreateVolume of `size` bytes with StorageClass `parameters`, then ControllerPublishVolume
    /// to the guest with `capability`.
    pub fn create_and_publish(
        &self,
        name: &str,
        size: u64,
        parameters: &HashMap<String, String>,
        capability: VolumeCapability,
    ) -> Result<PublishedVolume, Status> {
        let mut controller = self.controller.clone();
        self.block_on(async {
            let volume = controller
                .create_volume(requests::create_volume(name, size, parameters))
                .await?
                .into_inner()
                .volume
                .ok_or_else(|| Status::internal("CreateVolumeResponse carries no volume"))?;
            let mut request = requests::publish(&volume.volume_id, &self.host_nqn);
            request.volume_capability = Some(capability);
            let publish = controller
                .controller_publish_volume(request)
                .await?
                .into_inner()
                .publish_context;
            Ok(PublishedVolume {
                id: volume.volume_id,
                context: volume.volume_context,
                publish,
            })
        })
    }

    /// ControllerUnpublishVolume and DeleteVolume.
    pub fn unpublish_and_delete(&self, volume: &PublishedVolume) -> Result<(), Status> {
        let mut controller = self.controller.clone();
        self.block_on(async {
            controller
                .controller_unpublish_volume(requests::unpublish(&volume.id, &self.host_nqn))
                .await?;
            controller
                .delete_volume(DeleteVolumeRequest {
                    volume_id: volume.id.clone(),
                    ..Default::default()
                })
                .await?;
            Ok(())
        })
    }

    pub fn shutdown(self) {
        RigRds::shutdown(self.sim);
    }
}

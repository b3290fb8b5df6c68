//! The CSI Node service: attach a volume's NVMe/TCP namespace, make and mount its file system,
//! publish it to pods, report its usage and health, and grow it.
//!
//! This file is the protocol edge: each RPC runs its handler on a blocking thread (host
//! operations are syscalls and child processes) in a span naming the volume, and logs how it
//! ended. The handlers (one module per RPC group) check the request before touching anything,
//! then work through the host traits in [`host`]; `status` turns host failures into gRPC codes.
//! The node keeps no state of its own: what is attached is read back from sysfs, what is mounted
//! from the mount table.

mod context;
pub mod crash;
mod expand;
pub mod host;
mod owner;
mod publish;
pub mod settings;
mod stage;
mod stats;
mod status;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use tonic::{Request, Response, Status};

use crate::csi::v1::node_server::Node;
use crate::csi::v1::node_service_capability::{Rpc, rpc};
use crate::csi::v1::*;
use crate::guard::VolumeLocks;
use crate::rpc_trace::traced;
use host::{Attached, Host};
pub use settings::{HOSTNQN_FILE, NodeSettings};

/// The RPCs this node implements: exactly what it advertises.
const CAPABILITIES: [rpc::Type; 5] = [
    rpc::Type::StageUnstageVolume,
    rpc::Type::GetVolumeStats,
    rpc::Type::ExpandVolume,
    rpc::Type::VolumeCondition,
    rpc::Type::SingleNodeMultiWriter,
];

/// The Node service.
#[derive(Clone)]
pub struct NodeService {
    core: Arc<NodeCore>,
}

/// The handlers' shared state: the host, the settings and one guard per volume.
pub(crate) struct NodeCore {
    host: Host,
    settings: NodeSettings,
    locks: VolumeLocks,
    /// The host NQN once known: it names the node to the RDS, so it must not change under a
    /// running plugin; a failed read is not kept, so writing the file later is enough.
    host_nqn: OnceLock<String>,
}

impl NodeService {
    pub fn new(host: Host, settings: NodeSettings) -> NodeService {
        NodeService {
            core: Arc::new(NodeCore {
                host,
                settings,
                locks: VolumeLocks::default(),
                host_nqn: OnceLock::new(),
            }),
        }
    }

    /// Runs `handler` on a blocking thread, traced like every RPC.
    async fn run<Q, T>(
        &self,
        rpc: &'static str,
        volume_id: &str,
        request: Q,
        handler: fn(&NodeCore, Q) -> Result<T, Status>,
    ) -> Result<Response<T>, Status>
    where
        Q: Send + 'static,
        T: Send + 'static,
    {
        let core = self.core.clone();
        traced(rpc, volume_id, async move {
            // The blocking thread does not inherit the span; carry it over.
            let span = tracing::Span::current();
            tokio::task::spawn_blocking(move || span.in_scope(|| handler(&core, request)))
                .await
                .unwrap_or_else(|e| Err(Status::internal(format!("the {rpc} handler failed: {e}"))))
        })
        .await
    }
}

impl NodeCore {
    /// A required path field, resolved and confined to `node.kubeletDir`.
    fn require_path(&self, field: &str, value: &str) -> Result<std::path::PathBuf, Status> {
        context::require_path(field, value, self.settings.kubelet_dir.as_deref())
    }

    /// The path a volume is looked up at (stats, expansion): one the node would never have
    /// mounted a volume at holds none, which the spec calls NOT_FOUND.
    fn lookup_path(
        &self,
        volume_id: &str,
        field: &str,
        value: &str,
    ) -> Result<std::path::PathBuf, Status> {
        context::require(field, value)?;
        context::resolve(
            std::path::Path::new(value),
            self.settings.kubelet_dir.as_deref(),
        )
        .map_err(|why| {
            Status::not_found(format!(
                "volume {volume_id} is not at {field} {value:?}: it {why}"
            ))
        })
    }

    /// The host NQN: configured, or read from /etc/nvme/hostnqn until a read succeeds.
    fn host_nqn(&self) -> Result<String, Status> {
        if let Some(nqn) = self.host_nqn.get() {
            return Ok(nqn.clone());
        }
        let nqn = match &self.settings.host_nqn {
            Some(nqn) => nqn.clone(),
            None => settings::read_host_nqn(&self.settings.host_nqn_file)
                .map_err(Status::failed_precondition)?,
        };
        Ok(self.host_nqn.get_or_init(|| nqn).clone())
    }

    /// The attachment of a volume that NodeGetVolumeStats or NodeExpandVolume names at `path`:
    /// both are NOT_FOUND when the volume is not attached here or the path is gone.
    fn attached_at(&self, volume_id: &str, path: &std::path::Path) -> Result<Attached, Status> {
        let attached = self.host.fabric.find(volume_id)?.ok_or_else(|| {
            Status::not_found(format!("volume {volume_id} is not attached to this node"))
        })?;
        if !context::exists(path) {
            return Err(Status::not_found(format!(
                "volume path {} does not exist",
                path.display()
            )));
        }
        Ok(attached)
    }

    fn info(&self) -> Result<NodeGetInfoResponse, Status> {
        let node_id = match &self.settings.node_id {
            Some(id) => id.clone(),
            None => self.host_nqn()?,
        };
        let topology = &self.settings.topology;
        Ok(NodeGetInfoResponse {
            node_id,
            max_volumes_per_node: i64::try_from(self.settings.max_volumes).unwrap_or(i64::MAX),
            accessible_topology: (!topology.is_empty()).then(|| Topology {
                segments: topology.clone().into_iter().collect(),
            }),
        })
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let request = request.into_inner();
        let id = request.volume_id.clone();
        self.run("NodeStageVolume", &id, request, NodeCore::stage)
            .await
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let request = request.into_inner();
        let id = request.volume_id.clone();
        self.run("NodeUnstageVolume", &id, request, NodeCore::unstage)
            .await
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let request = request.into_inner();
        let id = request.volume_id.clone();
        self.run("NodePublishVolume", &id, request, NodeCore::publish)
            .await
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let request = request.into_inner();
        let id = request.volume_id.clone();
        self.run("NodeUnpublishVolume", &id, request, NodeCore::unpublish)
            .await
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let request = request.into_inner();
        let id = request.volume_id.clone();
        self.run("NodeGetVolumeStats", &id, request, NodeCore::stats)
            .await
    }

    async fn node_expand_volume(
        &self,
        request: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        let request = request.into_inner();
        let id = request.volume_id.clone();
        self.run("NodeExpandVolume", &id, request, NodeCore::expand)
            .await
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        let capabilities = CAPABILITIES
            .iter()
            .map(|&kind| NodeServiceCapability {
                r#type: Some(node_service_capability::Type::Rpc(Rpc {
                    r#type: kind.into(),
                })),
            })
            .collect();
        Ok(Response::new(NodeGetCapabilitiesResponse { capabilities }))
    }

    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        self.run("NodeGetInfo", "", (), |core, ()| core.info())
            .await
    }
}

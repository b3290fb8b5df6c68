//! The CSI Identity service: who the plugin is, what it offers, and whether it is ready.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::csi::v1::identity_server::Identity;
use crate::csi::v1::plugin_capability::{Service, VolumeExpansion, service, volume_expansion};
use crate::csi::v1::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse, plugin_capability,
};
use crate::rds::disk::RdsClient;

/// An RDS that answered a command this recently counts as reachable without a new probe, so a
/// busy controller (every pooled session in use) is not reported unready for being busy. Any
/// failed connection clears it ([`RdsClient::answered_within`]).
const FRESH: Duration = Duration::from_secs(10);
/// A probe that takes longer than this reports not ready: the CO's own probe deadline (the
/// livenessprobe sidecar's default is one second) is short, and a slow answer is no answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub struct IdentityService {
    name: String,
    controller: bool,
    /// The RDS whose reachability makes the plugin ready; `None` where no RDS is used (the node
    /// plugin never talks to the RDS).
    rds: Option<Arc<RdsClient>>,
    /// One probe at a time; those waiting reuse its answer.
    probing: Mutex<()>,
}

impl IdentityService {
    /// `controller`: whether this process serves the Controller service.
    pub fn new(name: String, controller: bool, rds: Option<Arc<RdsClient>>) -> Self {
        Self {
            name,
            controller,
            rds,
            probing: Mutex::new(()),
        }
    }

    async fn ready(&self) -> bool {
        let Some(rds) = &self.rds else {
            return true;
        };
        if rds.answered_within(FRESH) {
            return true;
        }
        let _probing = self.probing.lock().await;
        if rds.answered_within(FRESH) {
            return true;
        }
        match tokio::time::timeout(PROBE_TIMEOUT, rds.probe()).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "probe: the RDS is not reachable");
                false
            }
            Err(_) => {
                tracing::warn!("probe: the RDS did not answer within {PROBE_TIMEOUT:?}");
                false
            }
        }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.name.clone(),
            vendor_version: env!("CARGO_PKG_VERSION").to_owned(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        let mut types = Vec::new();
        if self.controller {
            types.push(plugin_capability::Type::Service(Service {
                r#type: service::Type::ControllerService.into(),
            }));
        }
        types.push(plugin_capability::Type::VolumeExpansion(VolumeExpansion {
            r#type: volume_expansion::Type::Online.into(),
        }));
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: types
                .into_iter()
                .map(|t| PluginCapability { r#type: Some(t) })
                .collect(),
        }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse {
            ready: Some(self.ready().await),
        }))
    }
}

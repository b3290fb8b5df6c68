//! The plugin as csi-sanity expects to see it on its node endpoint when the two halves run
//! apart: the controller's Identity, and the Node service of the node plugin in the guest.
//!
//! csi-sanity asks the Identity on its node endpoint (`--csi.endpoint`) whether the plugin has a
//! Controller service, even when `--csi.controllerendpoint` names another. The driver's node-only
//! process says it serves none (by design, tested in the driver), so csi-sanity would run every
//! Node spec without ControllerPublishVolume, and NodeStageVolume without the publish context
//! this driver's node needs. Here Identity answers for the whole plugin, as the controller's does;
//! every Node call still goes to the guest.

use rds_csi::csi::v1::identity_client::IdentityClient;
use rds_csi::csi::v1::identity_server::{Identity, IdentityServer};
use rds_csi::csi::v1::node_client::NodeClient;
use rds_csi::csi::v1::node_server::{Node, NodeServer};
use rds_csi::csi::v1::*;
use rds_csi::grpc::{BoundSocket, ServeError};
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

#[derive(Clone)]
struct WholePlugin {
    identity: IdentityClient<Channel>,
    node: NodeClient<Channel>,
}

/// Implements `$service` for [`WholePlugin`] by passing each call to the client `$client`.
macro_rules! forward {
    ($service:ident to $client:ident { $($method:ident($request:ident) -> $response:ident,)* }) => {
        #[tonic::async_trait]
        impl $service for WholePlugin {
            $(
                async fn $method(
                    &self,
                    request: Request<$request>,
                ) -> Result<Response<$response>, Status> {
                    // A new request: the incoming call's HTTP/2 metadata is not the outgoing one's.
                    self.$client.clone().$method(request.into_inner()).await
                }
            )*
        }
    };
}

forward!(Identity to identity {
    get_plugin_info(GetPluginInfoRequest) -> GetPluginInfoResponse,
    get_plugin_capabilities(GetPluginCapabilitiesRequest) -> GetPluginCapabilitiesResponse,
    probe(ProbeRequest) -> ProbeResponse,
});

forward!(Node to node {
    node_stage_volume(NodeStageVolumeRequest) -> NodeStageVolumeResponse,
    node_unstage_volume(NodeUnstageVolumeRequest) -> NodeUnstageVolumeResponse,
    node_publish_volume(NodePublishVolumeRequest) -> NodePublishVolumeResponse,
    node_unpublish_volume(NodeUnpublishVolumeRequest) -> NodeUnpublishVolumeResponse,
    node_get_volume_stats(NodeGetVolumeStatsRequest) -> NodeGetVolumeStatsResponse,
    node_expand_volume(NodeExpandVolumeRequest) -> NodeExpandVolumeResponse,
    node_get_capabilities(NodeGetCapabilitiesRequest) -> NodeGetCapabilitiesResponse,
    node_get_info(NodeGetInfoRequest) -> NodeGetInfoResponse,
});

/// Serves, on `socket` (bound before csi-sanity starts, so it never dials an absent socket),
/// Identity from `identity` and Node from `node` until dropped.
pub async fn serve(
    socket: BoundSocket,
    identity: IdentityClient<Channel>,
    node: NodeClient<Channel>,
) -> Result<(), ServeError> {
    let plugin = WholePlugin { identity, node };
    let router = Server::builder()
        .add_service(IdentityServer::new(plugin.clone()))
        .add_service(NodeServer::new(plugin));
    socket.serve(router, std::future::pending()).await
}

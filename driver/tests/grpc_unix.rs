//! Serving and reaching CSI services over a UNIX socket.

use std::collections::HashMap;
use std::os::unix::net::UnixStream;

use rds_csi::csi::v1::identity_client::IdentityClient;
use rds_csi::csi::v1::identity_server::{Identity, IdentityServer};
use rds_csi::csi::v1::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, ProbeRequest, ProbeResponse,
};
use rds_csi::grpc::{BoundSocket, ConnectError, ServeError, connect_unix};
use tokio::sync::oneshot;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

/// Answers GetPluginInfo only; enough to prove the transport.
struct InfoOnly;

fn plugin_info() -> GetPluginInfoResponse {
    GetPluginInfoResponse {
        name: "test.rds.csi".to_owned(),
        vendor_version: "0.0.0-test".to_owned(),
        manifest: HashMap::from([("transport".to_owned(), "unix".to_owned())]),
    }
}

#[tonic::async_trait]
impl Identity for InfoOnly {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(plugin_info()))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Err(Status::unimplemented(
            "test identity answers GetPluginInfo only",
        ))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Err(Status::unimplemented(
            "test identity answers GetPluginInfo only",
        ))
    }
}

#[tokio::test]
async fn get_plugin_info_round_trips_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    // The parent directory does not exist yet: bind creates it.
    let path = dir.path().join("plugins/rds/csi.sock");
    let socket = BoundSocket::bind(&path).unwrap();
    assert_eq!(socket.path(), path);

    let (stop, stopped) = oneshot::channel::<()>();
    let router = Server::builder().add_service(IdentityServer::new(InfoOnly));
    let server = tokio::spawn(socket.serve(router, async {
        let _ = stopped.await;
    }));

    let mut client = IdentityClient::new(connect_unix(&path).await.unwrap());
    let info = client
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info, plugin_info());
    let probe = client.probe(ProbeRequest {}).await.unwrap_err();
    assert_eq!(probe.code(), tonic::Code::Unimplemented);
    drop(client);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!path.exists(), "the socket is removed once serving ends");
}

#[tokio::test]
async fn bind_replaces_a_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("csi.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(
        UnixStream::connect(&path).is_err(),
        "nobody listens on the stale socket"
    );

    let socket = BoundSocket::bind(&path).unwrap();
    UnixStream::connect(&path).expect("the fresh socket accepts connections");
    drop(socket);
    assert!(!path.exists(), "dropping an unserved socket removes it");
}

#[tokio::test]
async fn bind_refuses_to_replace_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("csi.sock");
    std::fs::write(&path, "not a socket").unwrap();

    let err = BoundSocket::bind(&path).unwrap_err();
    assert!(matches!(err, ServeError::NotASocket { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
}

#[tokio::test]
async fn a_socket_recreated_by_another_instance_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("csi.sock");
    let ours = BoundSocket::bind(&path).unwrap();

    std::fs::remove_file(&path).unwrap();
    let _theirs = std::os::unix::net::UnixListener::bind(&path).unwrap();

    drop(ours);
    UnixStream::connect(&path).expect("the newer instance keeps its socket");
}

#[tokio::test]
async fn connecting_to_a_missing_socket_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");

    let err = connect_unix(&path).await.unwrap_err();
    assert!(matches!(err, ConnectError::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

//! rds-csi served in-process on a UNIX socket, as kubelet and the sidecars reach it.

use std::path::{Path, PathBuf};

use rds_csi::config::Config;
use rds_csi::grpc::{BoundSocket, connect_unix};
use rds_csi::service::{Driver, Mode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::target::TargetError;

/// The driver's gRPC server; stopped by [`DriverServer::shutdown`] or with its runtime.
pub struct DriverServer {
    socket: PathBuf,
    channel: Channel,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<Result<(), rds_csi::grpc::ServeError>>,
}

impl DriverServer {
    /// Builds the driver from `config` and serves the services of `mode` on `socket`.
    pub async fn start(
        config: Config,
        socket: &Path,
        mode: Mode,
    ) -> Result<DriverServer, TargetError> {
        let driver = Driver::new(config).await.map_err(TargetError::Driver)?;
        let router = driver.router(mode);
        let bound = BoundSocket::bind(socket).map_err(TargetError::Serve)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(bound.serve(router, async {
            // A dropped sender stops the server as well.
            let _ = stopped.await;
        }));
        let channel = connect_unix(socket).await.map_err(TargetError::Connect)?;
        Ok(DriverServer {
            socket: socket.to_owned(),
            channel,
            stop,
            serving,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Stops serving and reports how the server ended.
    pub async fn shutdown(self) -> Result<(), TargetError> {
        let _ = self.stop.send(());
        match self.serving.await {
            Ok(result) => result.map_err(TargetError::Serve),
            Err(join) => Err(TargetError::ServerTask(join)),
        }
    }
}

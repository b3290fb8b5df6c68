//! The driver as a set of gRPC services: which ones a process serves, built from one
//! configuration.

use std::sync::Arc;

use anyhow::Context;
use tonic::transport::Server;
use tonic::transport::server::Router;

use crate::config::Config;
use crate::controller::{ControllerService, Settings};
use crate::csi::v1::controller_server::ControllerServer;
use crate::csi::v1::identity_server::IdentityServer;
use crate::csi::v1::node_server::NodeServer;
use crate::identity::IdentityService;
use crate::node::{NodeService, NodeSettings};
use crate::rds::disk::RdsClient;
use crate::rds::ssh::{PoolConfig, SshPool, Timeouts};

/// Which CSI services a process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Identity and Controller: the Deployment next to the provisioner, attacher and resizer.
    Controller,
    /// Identity and Node: the DaemonSet on every node. The node plugin never talks to the RDS,
    /// so its Probe does not depend on it.
    Node,
    /// Every service in one process (development, `rds-csi dev`).
    All,
}

impl Mode {
    fn serves_controller(self) -> bool {
        matches!(self, Mode::Controller | Mode::All)
    }

    fn serves_node(self) -> bool {
        matches!(self, Mode::Node | Mode::All)
    }
}

/// The services, sharing one RDS client.
pub struct Driver {
    name: String,
    rds: Arc<RdsClient>,
    /// One controller for every router, so its per-volume guards and create bound hold across
    /// them.
    controller: Arc<ControllerService>,
    node: NodeService,
}

impl Driver {
    /// Validates `config` and prepares the RDS client. Nothing connects yet: the SSH pool
    /// connects on first use, so an unreachable RDS does not stop the driver from starting (its
    /// Probe reports not ready until the RDS answers).
    pub async fn new(config: Config) -> Result<Driver, anyhow::Error> {
        config.validate()?;
        let rds = &config.rds;
        let key = russh::keys::load_secret_key(&rds.private_key_file, None).with_context(|| {
            format!(
                "cannot load the SSH private key {} (rds.privateKeyFile): it must be an \
                 unencrypted OpenSSH private key",
                rds.private_key_file.display()
            )
        })?;
        let pin = rds.host_key_pin().map_err(anyhow::Error::msg)?;
        let settings = Settings::from_config(&config).map_err(anyhow::Error::msg)?;
        let pool = SshPool::new(PoolConfig {
            timeouts: Timeouts {
                connect: std::time::Duration::from_millis(rds.connect_timeout_ms),
                command: std::time::Duration::from_millis(rds.command_timeout_ms),
            },
            size: rds.sessions,
            ..PoolConfig::new(&rds.ssh_addr(), &rds.user, Arc::new(key), pin)
        });
        let rds = Arc::new(RdsClient::new(pool, settings.pool.clone()));
        let host = crate::node::settings::host(&config.node).map_err(anyhow::Error::msg)?;
        Ok(Driver {
            node: NodeService::new(host, NodeSettings::from_config(&config.node)),
            name: config.driver_name.clone(),
            controller: Arc::new(ControllerService::new(rds.clone(), settings)),
            rds,
        })
    }

    /// The RDS client the services share (for `rds-csi doctor` and tests).
    pub fn rds(&self) -> &Arc<RdsClient> {
        &self.rds
    }

    /// The Node service (for `rds-csi dev`, which says how it attaches).
    pub fn node(&self) -> &NodeService {
        &self.node
    }

    /// A tonic router with the services of `mode`, ready to serve on the CSI socket.
    pub fn router(&self, mode: Mode) -> Router {
        let controller = mode.serves_controller();
        let identity = IdentityService::new(
            self.name.clone(),
            controller,
            controller.then(|| self.rds.clone()),
        );
        let controller = controller.then(|| ControllerServer::from_arc(self.controller.clone()));
        let node = mode
            .serves_node()
            .then(|| NodeServer::new(self.node.clone()));
        Server::builder()
            .add_service(IdentityServer::new(identity))
            .add_optional_service(controller)
            .add_optional_service(node)
    }
}

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
use crate::rds::ssh::{BreakerConfig, PoolConfig, SshPool, Timeouts};

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
    pub fn serves_controller(self) -> bool {
        matches!(self, Mode::Controller | Mode::All)
    }

    pub fn serves_node(self) -> bool {
        matches!(self, Mode::Node | Mode::All)
    }
}

/// The services, sharing one RDS client.
pub struct Driver {
    name: String,
    /// The RDS client, and one controller for every router so its per-volume guards and create
    /// bound hold across them; `None` in a node-only process.
    controller: Option<(Arc<RdsClient>, Arc<ControllerService>)>,
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
                copy: std::time::Duration::from_millis(rds.copy_timeout_ms),
            },
            size: rds.sessions,
            breaker: BreakerConfig {
                open_for: std::time::Duration::from_millis(rds.breaker_open_ms),
                ..BreakerConfig::default()
            },
            ..PoolConfig::new(&rds.ssh_addr(), &rds.user, Arc::new(key), pin)
        });
        let rds = Arc::new(RdsClient::new(pool, settings.pool.clone()));
        let controller = Arc::new(ControllerService::new(rds.clone(), settings));
        let mut driver = Driver::node_only(config)?;
        driver.controller = Some((rds, controller));
        Ok(driver)
    }

    /// The node plugin alone (`rds-csi node`): it never talks to the RDS, so it validates only
    /// `driverName` and the `node` keys and needs no SSH key, which therefore never has to be
    /// given to every node.
    pub fn node_only(config: Config) -> Result<Driver, anyhow::Error> {
        config.validate_node()?;
        let host = crate::node::settings::host(&config.node).map_err(anyhow::Error::msg)?;
        Ok(Driver {
            node: NodeService::new(host, NodeSettings::from_config(&config.node)),
            name: config.driver_name,
            controller: None,
        })
    }

    /// The controller service, when this process has one.
    pub fn controller(&self) -> Option<&Arc<ControllerService>> {
        self.controller.as_ref().map(|(_, controller)| controller)
    }

    /// The CSI driver name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The RDS client the services share, when this process has the controller.
    pub fn rds(&self) -> Option<&Arc<RdsClient>> {
        self.controller.as_ref().map(|(rds, _)| rds)
    }

    /// A tonic router with the services of `mode` this driver has, ready to serve on the CSI
    /// socket (a node-only driver serves no controller whatever `mode` says).
    pub fn router(&self, mode: Mode) -> Router {
        let controller = self
            .controller
            .as_ref()
            .filter(|_| mode.serves_controller());
        let identity = IdentityService::new(
            self.name.clone(),
            controller.is_some(),
            controller.map(|(rds, _)| rds.clone()),
        );
        let controller = controller.map(|(_, c)| ControllerServer::from_arc(c.clone()));
        let node = mode
            .serves_node()
            .then(|| NodeServer::new(self.node.clone()));
        Server::builder()
            .add_service(IdentityServer::new(identity))
            .add_optional_service(controller)
            .add_optional_service(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_node_plugin_needs_no_rds_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[node]\nhostNqn = \"nqn.2014-08.org.nvmexpress:uuid:1\"\nfabric = \"loop\"\n\
             loopRoot = {:?}\n",
            dir.path().display().to_string()
        );
        let config = Config::from_toml(&text).unwrap();
        let driver = Driver::node_only(config.clone()).unwrap();
        assert!(driver.rds().is_none());
        drop(driver.router(Mode::Node));
        let refused = Driver::new(config).await.err().unwrap().to_string();
        assert!(refused.contains("rds.address"), "{refused}");

        let mut bad = Config::from_toml("[node]\nfabric = \"loop\"\n").unwrap();
        let refused = Driver::node_only(bad.clone()).err().unwrap().to_string();
        assert!(refused.contains("node.loopRoot"), "{refused}");
        bad.node.loop_root = Some(dir.path().to_owned());
        Driver::node_only(bad).unwrap();
    }
}

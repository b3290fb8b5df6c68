//! A [`Target`]: rds-csi serving the CSI API on a UNIX socket, backed by an RDS of the configured
//! kind, plus a handle to the simulator when the RDS is simulated.

use std::path::Path;
use std::sync::Arc;

use rds_csi::config::{Config, FabricMode};
use rds_csi::csi::v1::controller_client::ControllerClient;
use rds_csi::csi::v1::identity_client::IdentityClient;
use rds_csi::csi::v1::node_client::NodeClient;
use rds_csi::service::Mode;
use rds_sim::sim::Sim;
use tonic::transport::Channel;

use crate::config::{ConfigError, Settings, TargetKind};
use crate::driver_server::DriverServer;
use crate::node_host::{NodeHost, Place};
use crate::qemu::node_plugin::{NodePlugin, NodePluginConfig, NodePluginError};
use crate::sim_rds::{SimRds, toml_count};

/// The node ID (a host NQN) the `sim` target's node carries.
pub const SIM_NODE_ID: &str =
    "nqn.2014-08.org.nvmexpress:uuid:5e2e0000-0000-4000-8000-000000000001";

/// Why a target could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Settings(#[from] ConfigError),
    #[error("cannot create a temporary directory for the target: {0}")]
    TempDir(std::io::Error),
    #[error("rds-sim did not start: {0:#}")]
    Sim(anyhow::Error),
    #[error(
        "rds-csi rejected the {kind} target's driver configuration{}: {source}",
        origin.as_ref().map(|p| format!(" ([hardware.driver] in {})", p.display())).unwrap_or_default()
    )]
    DriverConfig {
        kind: TargetKind,
        origin: Option<std::path::PathBuf>,
        source: rds_csi::config::ConfigError,
    },
    #[error("rds-csi did not start: {0:#}")]
    Driver(anyhow::Error),
    #[error(
        "RDS_E2E_TARGET={0} drives Kubernetes objects, not the CSI API: its suites are \
         `cargo nextest run -p rds-e2e --test cluster --test cluster_node_failure --test \
         cluster_orphans`; the CSI-level suites run on sim, qemu or hardware"
    )]
    KubernetesOnly(TargetKind),
    /// The target cannot run on this machine and the case is skipped, saying why.
    #[error("{0}")]
    Skipped(String),
    #[error("the qemu target's node plugin: {0}")]
    NodePlugin(NodePluginError),
    #[error("the qemu target's guest boot task ended abnormally: {0}")]
    BootTask(tokio::task::JoinError),
    #[error("{0}")]
    Serve(rds_csi::grpc::ServeError),
    #[error("{0}")]
    Connect(rds_csi::grpc::ConnectError),
    #[error("the driver's gRPC server task ended abnormally: {0}")]
    ServerTask(tokio::task::JoinError),
}

/// rds-csi on a temporary socket, against the RDS the settings name.
pub struct Target {
    kind: TargetKind,
    config: Config,
    node_id: String,
    /// The services the driver serves, to serve the same after a restart.
    mode: Mode,
    server: DriverServer,
    node_host: NodeHost,
    /// The node plugin's channel when it does not share the driver's (in a guest).
    node_channel: Option<Channel>,
    rds: Option<SimRds>,
    // Last: the socket and the simulator's files live here.
    _dir: tempfile::TempDir,
}

impl Target {
    /// Starts the target `settings` name, with the driver configuration it implies.
    pub async fn start(settings: &Settings) -> Result<Target, TargetError> {
        Target::start_with(settings, |_| {}).await
    }

    /// Like [`Target::start`], letting `adjust` change the driver configuration first (shorter
    /// timeouts for fault cases, a larger pool for benchmarks).
    pub async fn start_with(
        settings: &Settings,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Target, TargetError> {
        let dir = tempfile::Builder::new()
            .prefix("rds-e2e-")
            .tempdir()
            .map_err(TargetError::TempDir)?;
        let node_dir = dir.path().join("node");
        let (mut table, node_id, rds, place) = match settings.target {
            TargetKind::Sim => {
                let rds = SimRds::start(dir.path(), &settings.sim).await?;
                let mut table = rds.driver_config(&settings.sim, SIM_NODE_ID);
                let loop_root = dir.path().join("rds").join("files");
                loop_node(&mut table, &loop_root, settings.sim.max_volumes_per_node);
                let host = Place::Local {
                    dir: node_dir,
                    loop_root: Some(loop_root),
                };
                (table, SIM_NODE_ID.to_owned(), Some(rds), host)
            }
            TargetKind::Qemu => {
                let rds = SimRds::start(dir.path(), &settings.sim).await?;
                let mut table = rds.driver_config(&settings.sim, SIM_NODE_ID);
                rds.reach_nvme_from_guest(&mut table);
                let plugin = boot_guest_node(&table, dir.path(), settings).await?;
                (
                    table,
                    SIM_NODE_ID.to_owned(),
                    Some(rds),
                    Place::Guest(plugin),
                )
            }
            TargetKind::Hardware => {
                let hardware = settings
                    .hardware
                    .as_ref()
                    .ok_or_else(|| ConfigError::MissingHardware(settings.file.clone()))?;
                let host = Place::Local {
                    dir: node_dir,
                    loop_root: None,
                };
                (
                    hardware.driver.clone(),
                    hardware.node_id.clone(),
                    None,
                    host,
                )
            }
            kind @ (TargetKind::Cluster | TargetKind::Kind) => {
                return Err(TargetError::KubernetesOnly(kind));
            }
        };
        let config_error = |source| TargetError::DriverConfig {
            kind: settings.target,
            origin: settings.file.clone(),
            source,
        };
        // The host's driver serves the node too, except where the node is elsewhere.
        let (mode, node_channel) = match &place {
            Place::Guest(plugin) => {
                table.remove("node");
                let channel = plugin.channel().await.map_err(TargetError::NodePlugin)?;
                (Mode::Controller, Some(channel))
            }
            Place::Local { .. } => (Mode::All, None),
        };
        let mut config = Config::from_toml(&table.to_string()).map_err(config_error)?;
        adjust(&mut config);
        config.validate().map_err(config_error)?;
        // A hardware file may run the node in loop mode (a standalone rds-sim on a machine
        // without nvme_tcp): its attachments are then loop devices over that root.
        let place = match place {
            Place::Local {
                dir,
                loop_root: None,
            } if config.node.fabric == FabricMode::Loop => Place::Local {
                dir,
                loop_root: config.node.loop_root.clone(),
            },
            place => place,
        };
        let node_host = NodeHost::new(place, &config.rds.nqn_prefix);
        let socket = dir.path().join("csi.sock");
        let server = DriverServer::start(config.clone(), &socket, mode).await?;
        Ok(Target {
            kind: settings.target,
            config,
            node_id,
            mode,
            server,
            node_host,
            node_channel,
            rds,
            _dir: dir,
        })
    }

    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// The machine the node plugin acts on, and a directory there of this target's own for the
    /// node's staging and target paths.
    pub fn node_host(&self) -> &NodeHost {
        &self.node_host
    }

    /// The simulator behind the driver (its state, command log and faults), on `sim` only.
    pub fn sim(&self) -> Option<&Arc<Sim>> {
        self.rds.as_ref().map(SimRds::sim)
    }

    /// The configuration the driver runs with.
    pub fn driver_config(&self) -> &Config {
        &self.config
    }

    /// A node ID (host NQN) that publish cases may use when the node service cannot tell one.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The driver's socket, for clients that dial it themselves (csi-sanity).
    pub fn socket(&self) -> &Path {
        self.server.socket()
    }

    /// The CSI endpoint in the spec's form, `unix:///…`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// A connected gRPC channel to the driver.
    pub fn channel(&self) -> Channel {
        self.server.channel()
    }

    pub fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel())
    }

    pub fn controller(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.channel())
    }

    pub fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.node_channel.clone().unwrap_or_else(|| self.channel()))
    }

    /// Stops the driver and starts a new one with the same configuration on the same socket, as
    /// a restarted controller Pod: what the old one held in memory (its guards, the copies it
    /// ran) is gone, what it did on the RDS stays. Clients made before need making again.
    pub async fn restart_driver(self) -> Result<Target, TargetError> {
        let socket = self.server.socket().to_owned();
        self.server.shutdown().await?;
        let server = DriverServer::start(self.config.clone(), &socket, self.mode).await?;
        Ok(Target { server, ..self })
    }

    /// Stops the driver, then the simulator, and removes the temporary files.
    pub async fn shutdown(self) -> Result<(), TargetError> {
        let served = self.server.shutdown().await;
        if let Some(rds) = self.rds {
            rds.shutdown().await;
        }
        served
    }
}

/// The `sim` target's node attaches in loop mode: loop devices over the simulator's backing files
/// (`<data-dir>/files`), so the node path runs for real on kernels without nvme-tcp. It reports
/// the controller's attach limit, as a deployment's node and controller should agree.
fn loop_node(table: &mut toml::Table, loop_root: &Path, max_volumes: u64) {
    let node = table
        .entry("node")
        .or_insert_with(|| toml::Table::new().into());
    if let Some(node) = node.as_table_mut() {
        node.insert("fabric".into(), "loop".into());
        node.insert("maxVolumes".into(), toml_count(max_volumes));
        node.insert("loopRoot".into(), loop_root.display().to_string().into());
    }
}

/// Boots the `qemu` target's guest with `rds-csi node` on the kernel initiator, configured with
/// `table`'s `[node]` (its host NQN), reporting the controller's attach limit.
async fn boot_guest_node(
    table: &toml::Table,
    work: &Path,
    settings: &Settings,
) -> Result<NodePlugin, TargetError> {
    let mut node = table
        .get("node")
        .and_then(toml::Value::as_table)
        .cloned()
        .unwrap_or_default();
    node.insert("fabric".into(), "kernel".into());
    node.insert(
        "maxVolumes".into(),
        toml_count(settings.sim.max_volumes_per_node),
    );
    let config = NodePluginConfig {
        binary: None,
        node,
        extra_files: Vec::new(),
        memory_mb: GUEST_MEMORY_MB,
    };
    let work = work.to_owned();
    let booted = tokio::task::spawn_blocking(move || NodePlugin::boot(config, &work))
        .await
        .map_err(TargetError::BootTask)?;
    booted.map_err(|e| match e.skip_reason() {
        Some(reason) => TargetError::Skipped(reason),
        None => TargetError::NodePlugin(e),
    })
}

/// The `qemu` target's guest memory: the kernel, the plugin and mkfs of small volumes.
const GUEST_MEMORY_MB: u32 = 512;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_kubernetes_targets_name_their_suites() {
        for kind in [TargetKind::Kind, TargetKind::Cluster] {
            let settings = Settings {
                target: kind,
                ..Settings::sim_defaults()
            };
            let error = Target::start(&settings).await.err().unwrap();
            assert!(matches!(error, TargetError::KubernetesOnly(k) if k == kind));
            let message = error.to_string();
            assert!(
                message.contains(&format!("RDS_E2E_TARGET={kind} ")),
                "{message}"
            );
            assert!(message.contains("--test cluster "), "{message}");
        }
    }

    /// The driver connects lazily, so a hardware target starts even while its RDS is unreachable.
    #[tokio::test]
    async fn the_hardware_target_runs_the_driver_from_the_file_without_a_simulator() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("id_ed25519");
        let key = rds_sim::ssh::load_or_generate_host_key(&key_file).unwrap();
        let pin = rds_csi::rds::ssh::HostKeyPin::of_key(key.public_key());
        let port = crate::qemu::free_local_port().unwrap();
        let file = dir.path().join("hw.toml");
        std::fs::write(
            &file,
            format!(
                "[hardware]\nnode-id = \"{SIM_NODE_ID}\"\n\
                 [hardware.driver.rds]\naddress = \"127.0.0.1\"\nsshPort = {port}\n\
                 privateKeyFile = \"{}\"\nhostKey = \"{pin}\"\npool = \"storage-pool\"\n",
                key_file.display()
            ),
        )
        .unwrap();
        let settings = Settings::load(TargetKind::Hardware, Some(&file)).unwrap();
        let target = Target::start(&settings).await.unwrap();
        assert!(target.sim().is_none());
        assert_eq!(target.node_id(), SIM_NODE_ID);
        assert_eq!(target.driver_config().rds.ssh_port, port);
        let info = target
            .identity()
            .get_plugin_info(rds_csi::csi::v1::GetPluginInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.name, target.driver_config().driver_name);
        target.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_driver_configuration_the_driver_refuses_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hw.toml");
        std::fs::write(
            &file,
            "[hardware]\nnode-id = \"n\"\n[hardware.driver.rds]\naddress = \"10.0.0.5\"\n",
        )
        .unwrap();
        let settings = Settings::load(TargetKind::Hardware, Some(&file)).unwrap();
        let message = Target::start(&settings).await.err().unwrap().to_string();
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(message.contains("hostKey"), "{message}");
    }

    #[tokio::test]
    async fn the_sim_target_serves_on_a_temporary_socket_with_a_simulator_handle() {
        let target = Target::start(&Settings::sim_defaults()).await.unwrap();
        assert!(target.sim().is_some());
        assert_eq!(target.kind(), TargetKind::Sim);
        let socket = target.socket().to_owned();
        assert!(socket.exists(), "{}", socket.display());
        assert_eq!(target.endpoint(), format!("unix://{}", socket.display()));
        assert_eq!(target.driver_config().rds.address, "127.0.0.1");
        assert_eq!(target.driver_config().controller.max_volumes_per_node, 4);
        target.shutdown().await.unwrap();
        assert!(!socket.exists(), "the socket outlived the target");
    }
}

//! rds-sim and the real driver serving on a UNIX socket, and request builders.

pub use std::collections::HashMap;
pub use std::sync::Arc;

pub use rds_csi::config::{Config, ControllerConfig, RdsConfig};
pub use rds_csi::controller::ControllerService;
pub use rds_csi::csi::v1::controller_client::ControllerClient;
pub use rds_csi::csi::v1::identity_client::IdentityClient;
pub use rds_csi::csi::v1::plugin_capability::{self, service, volume_expansion};
pub use rds_csi::csi::v1::volume_capability::access_mode::Mode as Access;
pub use rds_csi::csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
pub use rds_csi::csi::v1::*;
pub use rds_csi::grpc::{BoundSocket, connect_unix};
pub use rds_csi::ids;
pub use rds_csi::rds::disk::RdsClient;
pub use rds_csi::rds::ssh::HostKeyPin;
pub use rds_csi::service::{Driver, Mode};
pub use rds_sim::engine::{EngineConfig, Event};
pub use rds_sim::faults::{CrashPoint, Fault};
pub use rds_sim::server::{Options, RunningSim};
pub use rds_sim::sim::{Sim, StateView};
pub use rds_sim::ssh::load_or_generate_host_key;
pub use rds_sim::store::{Disk, PoolFs};
pub use tempfile::TempDir;
pub use tokio::sync::oneshot;
pub use tonic::Code;
pub use tonic::transport::Channel;

pub const GIB: i64 = 1 << 30;
pub const POOL: &str = rds_sim::server::DEFAULT_POOL;
pub const NODE_A: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000000a";
pub const NODE_B: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000000b";

/// How a test wants the simulator and the driver.
pub struct Setup {
    pub pool_size: u64,
    pub routeros_version: &'static str,
    pub mode: Mode,
    pub config: fn(&mut Config),
    /// Pin a key the simulator does not have.
    pub pin_wrong_key: bool,
    pub pool_fs: PoolFs,
    /// Serve the disks over NVMe/TCP too.
    pub nvme: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            pool_size: 64 << 30,
            routeros_version: "7.24.4 (stable)",
            mode: Mode::Controller,
            config: |_| {},
            pin_wrong_key: false,
            pool_fs: PoolFs::Xfs,
            nvme: false,
        }
    }
}

/// rds-sim and the driver serving on a socket, with clients.
pub struct Plugin {
    _dir: TempDir,
    pub sim: Option<RunningSim>,
    pub controller: ControllerClient<Channel>,
    pub identity: IdentityClient<Channel>,
    /// The driver's own RDS client, for tests of the operations beneath the CSI calls.
    pub rds: Arc<RdsClient>,
    /// The controller service itself, for what the Kubernetes side calls (fencing).
    pub service: Arc<ControllerService>,
    _stop: oneshot::Sender<()>,
}

impl Plugin {
    pub async fn start() -> Self {
        Self::with(Setup::default()).await
    }

    pub async fn with(setup: Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("id_ed25519");
        let client_key = load_or_generate_host_key(&key_file).unwrap();
        let sim = RunningSim::start(Options {
            seed: 7,
            engine: EngineConfig {
                identity: rds_sim::engine::Identity {
                    version: setup.routeros_version.into(),
                    ..Default::default()
                },
                pool_fs: setup.pool_fs,
                ..EngineConfig::default()
            },
            nvme_listen: setup.nvme.then(|| "127.0.0.1:0".parse().unwrap()),
            ..Options::loopback(
                dir.path().join("rds"),
                client_key.public_key().clone(),
                setup.pool_size,
            )
        })
        .await
        .unwrap();
        let pinned = if setup.pin_wrong_key {
            load_or_generate_host_key(&dir.path().join("other_host_key"))
                .unwrap()
                .public_key()
                .clone()
        } else {
            sim.host_public_key.clone()
        };
        let mut config = Config {
            rds: RdsConfig {
                address: "127.0.0.1".into(),
                ssh_port: sim.ssh_addr.port(),
                private_key_file: key_file,
                host_key: HostKeyPin::of_key(&pinned).to_string(),
                pool: POOL.into(),
                nvme_address: "192.0.2.10".into(),
                connect_timeout_ms: 2_000,
                command_timeout_ms: 5_000,
                ..RdsConfig::default()
            },
            controller: ControllerConfig::default(),
            ..Config::default()
        };
        (setup.config)(&mut config);
        let driver = Driver::new(config).await.unwrap();
        let rds = driver
            .rds()
            .expect("the controller has an RDS client")
            .clone();
        let service = driver
            .controller()
            .expect("the driver has a controller")
            .clone();
        let socket_path = dir.path().join("csi/csi.sock");
        let socket = BoundSocket::bind(&socket_path).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(socket.serve(driver.router(setup.mode), async {
            let _ = stopped.await;
        }));
        let channel = connect_unix(&socket_path).await.unwrap();
        Self {
            _dir: dir,
            sim: Some(sim),
            controller: ControllerClient::new(channel.clone()),
            identity: IdentityClient::new(channel),
            rds,
            service,
            _stop: stop,
        }
    }

    pub fn sim(&self) -> &Arc<Sim> {
        &self.sim.as_ref().expect("the simulator runs").sim
    }

    pub fn state(&self) -> StateView {
        self.sim().state()
    }

    pub fn disk(&self, slot: &str) -> Option<Disk> {
        self.state().disks.into_iter().find(|d| d.slot == slot)
    }

    pub fn has_file(&self, name: &str) -> bool {
        self.state().files.iter().any(|f| f.name == name)
    }

    /// Runs a RouterOS line on the simulator directly, as an operator would.
    pub async fn routeros(&self, line: &str) {
        let peer = "127.0.0.1:1".parse().unwrap();
        let (session, _) = self.sim().open_session("admin", peer);
        let reply = self.sim().exec(session, line).await;
        self.sim().close_session(session);
        let rds_sim::ssh::Reply::Output { text, .. } = reply else {
            panic!("{line}: no reply")
        };
        assert!(text.trim().is_empty(), "{line}: {text}");
    }

    pub async fn stop_sim(&mut self) {
        self.sim
            .take()
            .expect("the simulator runs")
            .shutdown()
            .await;
    }

    pub async fn create(&mut self, request: CreateVolumeRequest) -> Result<Volume, tonic::Status> {
        let answer = self.controller.create_volume(request).await?.into_inner();
        Ok(answer.volume.expect("CreateVolume answers a volume"))
    }

    pub async fn publish(
        &mut self,
        volume_id: &str,
        node: &str,
    ) -> Result<HashMap<String, String>, Code> {
        self.controller
            .controller_publish_volume(publish_request(volume_id, node))
            .await
            .map(|answer| answer.into_inner().publish_context)
            .map_err(|status| status.code())
    }

    pub async fn probe(&mut self) -> bool {
        let answer = self.identity.probe(ProbeRequest {}).await.unwrap();
        answer.into_inner().ready.expect("Probe answers ready")
    }

    pub async fn capacity(&mut self) -> Result<i64, tonic::Status> {
        let answer = self
            .controller
            .get_capacity(GetCapacityRequest::default())
            .await?;
        Ok(answer.into_inner().available_capacity)
    }
}

pub fn capability(mode: Access, access: AccessType) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode.into() }),
        access_type: Some(access),
    }
}

pub fn mount() -> VolumeCapability {
    capability(
        Access::SingleNodeWriter,
        AccessType::Mount(MountVolume::default()),
    )
}

pub fn block() -> VolumeCapability {
    capability(Access::SingleNodeWriter, AccessType::Block(BlockVolume {}))
}

pub fn create_request(name: &str, required: i64, limit: i64) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        }),
        volume_capabilities: vec![mount()],
        ..CreateVolumeRequest::default()
    }
}

pub fn publish_request(volume_id: &str, node: &str) -> ControllerPublishVolumeRequest {
    ControllerPublishVolumeRequest {
        volume_id: volume_id.into(),
        node_id: node.into(),
        volume_capability: Some(mount()),
        ..ControllerPublishVolumeRequest::default()
    }
}

pub fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

pub fn volume_nqn(slot: &str) -> String {
    format!("nqn.2000-02.com.mikrotik:{slot}")
}

pub fn file_of(slot: &str) -> String {
    format!("{POOL}/csi/{slot}.img")
}

//! One rds-sim container on a bridge network of its own, at an address pinned for its life: the
//! controller (on the host) and a QEMU guest (through the host) reach it there, and after a
//! restart or a partition it comes back at the same address, as an RDS does. Its data directory
//! is a host directory, so a restart reboots it onto the same state; its SSH host key is made
//! here and pinned in the driver's configuration, as in production.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;
use rds_csi::rds::ssh::HostKeyPin;
use rds_sim::faults::Fault;
use rds_sim::ssh::load_or_generate_host_key;
use testcontainers::bollard::Docker;
use testcontainers::bollard::models::{
    EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkDisconnectRequest,
};
use testcontainers::bollard::query_parameters::KillContainerOptions;
use testcontainers::core::client::docker_client_instance;
use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ContainerError, engine, image};
use crate::sim_rds::{BASE_DIR, NQN_PREFIX, POOL};

pub const SSH_PORT: u16 = 2222;
pub const NVME_PORT: u16 = 4420;
pub const CONTROL_PORT: u16 = 8080;
/// The RouterOS user the driver logs in as.
const USER: &str = "admin";
/// How long rds-sim may take to serve after its container starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The controller's `rds.breakerOpenMs` against this RDS.
pub const BREAKER_OPEN_MS: i64 = 5_000;

/// rds-sim in its container; removed with its network when dropped.
pub struct RdsContainer {
    container: ContainerAsync<GenericImage>,
    docker: Docker,
    network: String,
    ip: Ipv4Addr,
    client_key: PathBuf,
    pin: HostKeyPin,
}

impl RdsContainer {
    /// Starts rds-sim from the image of this workspace's release binary, its data, keys and
    /// authorized_keys under `dir`.
    pub async fn start(dir: &Path) -> Result<RdsContainer, ContainerError> {
        engine::available()?;
        let image = image::ensure(&image::release_binary()?)?;
        let setup = |what: &str| {
            let what = what.to_owned();
            move |e: std::io::Error| ContainerError::Setup(format!("{what}: {e}"))
        };
        let keys = dir.join("rds-keys");
        let data = dir.join("rds-data");
        std::fs::create_dir_all(&keys).map_err(setup("creating the key directory"))?;
        std::fs::create_dir_all(&data).map_err(setup("creating the data directory"))?;
        let client_key = keys.join("id_ed25519");
        let client = load_or_generate_host_key(&client_key)
            .map_err(|e| ContainerError::Setup(format!("the client key: {e}")))?;
        let public = client
            .public_key()
            .to_openssh()
            .map_err(|e| ContainerError::Setup(format!("the client's public key: {e}")))?;
        std::fs::write(keys.join("authorized_keys"), public)
            .map_err(setup("writing authorized_keys"))?;
        let host_key = load_or_generate_host_key(&keys.join("host_key"))
            .map_err(|e| ContainerError::Setup(format!("the host key: {e}")))?;
        let pin = HostKeyPin::of_key(host_key.public_key());

        let docker = docker_client_instance()
            .await
            .map_err(engine_error("connecting"))?;
        let network = create_network(&docker).await?;
        let (name, tag) = image.split_once(':').expect("the image's tag has a colon");
        let started = GenericImage::new(name, tag)
            .with_wait_for(WaitFor::message_on_stdout("host-key"))
            .with_network(network.clone())
            .with_mount(Mount::bind_mount(data.display().to_string(), "/data"))
            .with_mount(Mount::bind_mount(keys.display().to_string(), "/keys"))
            .with_cmd([
                "--data-dir",
                "/data",
                "--ssh-listen",
                "0.0.0.0:2222",
                "--nvme-listen",
                "0.0.0.0:4420",
                "--control-listen",
                "0.0.0.0:8080",
                "--authorized-keys",
                "/keys/authorized_keys",
                "--host-key",
                "/keys/host_key",
                "--pool",
                "storage-pool:64GiB",
            ])
            .with_startup_timeout(START_TIMEOUT)
            .start()
            .await;
        let container = match started {
            Ok(container) => container,
            Err(e) => {
                remove_network(&network);
                return Err(engine_error("starting the rds-sim container")(e));
            }
        };
        let ip = match container.get_bridge_ip_address().await {
            Ok(std::net::IpAddr::V4(ip)) => ip,
            other => {
                remove_network(&network);
                return Err(ContainerError::Setup(format!(
                    "the container's address on {network}: {other:?}"
                )));
            }
        };
        let rds = RdsContainer {
            container,
            docker,
            network,
            ip,
            client_key,
            pin,
        };
        // Connected again at the address it was given, which pins it: a restart or a reconnect
        // then brings it back there (an RDS keeps its address; a kernel reconnects to one).
        rds.disconnect().await?;
        rds.reconnect().await?;
        Ok(rds)
    }

    /// The container's address on its network.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    pub fn id(&self) -> &str {
        self.container.id()
    }

    /// The `[rds]` table of an rds-csi configuration that manages this rds-sim over SSH at its
    /// address (the host key pinned) and sends nodes to its NVMe/TCP target there.
    pub fn rds_config(&self) -> toml::Table {
        let mut rds = toml::Table::new();
        let address = self.ip.to_string();
        rds.insert("address".into(), address.clone().into());
        rds.insert("sshPort".into(), i64::from(SSH_PORT).into());
        rds.insert("user".into(), USER.into());
        rds.insert(
            "privateKeyFile".into(),
            self.client_key.display().to_string().into(),
        );
        rds.insert("hostKey".into(), self.pin.to_string().into());
        rds.insert("pool".into(), POOL.into());
        rds.insert("baseDir".into(), BASE_DIR.into());
        rds.insert("nqnPrefix".into(), NQN_PREFIX.into());
        rds.insert("nvmeAddress".into(), address.into());
        rds.insert("nvmePort".into(), i64::from(NVME_PORT).into());
        // The suites stop and restart this RDS on purpose: the controller probes for it again
        // 5 s after its breaker opens, not the default 30 s.
        rds.insert("breakerOpenMs".into(), BREAKER_OPEN_MS.into());
        rds
    }

    /// Injects `fault` through the control API.
    pub async fn inject(&self, fault: &Fault) -> Result<(), ContainerError> {
        let body = serde_json::to_string(fault).expect("a fault serialises");
        let (status, answer) = self.http("POST", "/faults", &body).await?;
        if status != 204 {
            return Err(self.control_error(format!("{fault:?}: {status} {answer}")));
        }
        Ok(())
    }

    /// The slots of the disks rds-sim holds, from the control API's state.
    pub async fn slots(&self) -> Result<Vec<String>, ContainerError> {
        let (status, body) = self.http("GET", "/state", "").await?;
        let state: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| self.control_error(format!("/state {status}: {e}: {body:?}")))?;
        Ok(state["disks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|disk| disk["slot"].as_str().map(str::to_owned))
            .collect())
    }

    /// The lines of the commands of menu path `path` (`/disk/add`) rds-sim has run since it
    /// started, from the control API's command log.
    pub async fn commands(&self, path: &str) -> Result<Vec<String>, ContainerError> {
        let (status, body) = self.http("GET", "/log", "").await?;
        let log: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| self.control_error(format!("/log {status}: {e}: {body:?}")))?;
        Ok(log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|record| record["command"]["path"] == path)
            .filter_map(|record| record["line"].as_str().map(str::to_owned))
            .collect())
    }

    /// A reboot: `docker stop` (SIGTERM; rds-sim shuts down) and start; waits until it serves.
    pub async fn restart(&self) -> Result<(), ContainerError> {
        self.stop().await?;
        self.start_again().await
    }

    /// Stops the container (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(&self) -> Result<(), ContainerError> {
        self.container
            .stop_with_timeout(Some(10))
            .await
            .map_err(engine_error("stopping the rds-sim container"))
    }

    /// A crash: SIGKILL to rds-sim; the container stops with it.
    pub async fn kill(&self) -> Result<(), ContainerError> {
        self.docker
            .kill_container(
                self.id(),
                Some(KillContainerOptions {
                    signal: "KILL".into(),
                }),
            )
            .await
            .map_err(engine_error("killing the rds-sim container"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        while self
            .container
            .is_running()
            .await
            .map_err(engine_error("inspecting the rds-sim container"))?
        {
            if Instant::now() > deadline {
                return Err(ContainerError::Setup(
                    "the rds-sim container still runs after SIGKILL".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts the stopped container and waits until rds-sim serves SSH, NVMe/TCP and the control
    /// API at its address.
    pub async fn start_again(&self) -> Result<(), ContainerError> {
        self.container
            .start()
            .await
            .map_err(engine_error("starting the rds-sim container again"))?;
        self.await_serving().await
    }

    /// Cuts the container off its network: every connection to it goes silent.
    pub async fn disconnect(&self) -> Result<(), ContainerError> {
        self.docker
            .disconnect_network(
                &self.network,
                NetworkDisconnectRequest {
                    container: self.id().to_owned(),
                    force: Some(true),
                },
            )
            .await
            .map_err(engine_error("disconnecting rds-sim from its network"))
    }

    /// Connects the container to its network again, at its address.
    pub async fn reconnect(&self) -> Result<(), ContainerError> {
        self.docker
            .connect_network(
                &self.network,
                NetworkConnectRequest {
                    container: self.id().to_owned(),
                    endpoint_config: Some(EndpointSettings {
                        ipam_config: Some(EndpointIpamConfig {
                            ipv4_address: Some(self.ip.to_string()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                },
            )
            .await
            .map_err(engine_error("connecting rds-sim to its network"))
    }

    async fn await_serving(&self) -> Result<(), ContainerError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            let mut up = true;
            for port in [SSH_PORT, NVME_PORT] {
                let addr = SocketAddr::from((self.ip, port));
                if let Err(e) = tokio::net::TcpStream::connect(addr).await {
                    last = format!("{addr}: {e}");
                    up = false;
                }
            }
            if up {
                match self.slots().await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ContainerError::Setup(format!(
            "rds-sim did not serve within {START_TIMEOUT:?} of its start: {last}"
        )))
    }

    fn control_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, CONTROL_PORT))
    }

    fn control_error(&self, reason: String) -> ContainerError {
        ContainerError::Control {
            addr: self.control_addr().to_string(),
            reason,
        }
    }

    /// One HTTP/1.1 exchange with the control API: the status and the body.
    async fn http(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, String), ContainerError> {
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(self.control_addr()).await?;
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: rds-sim\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).await?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await?;
            std::io::Result::Ok(answer)
        };
        let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| self.control_error(format!("{method} {path}: no answer within 10 s")))?
            .map_err(|e| self.control_error(format!("{method} {path}: {e}")))?;
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| self.control_error(format!("{method} {path}: {answer:?}")))?;
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok((status, body.to_owned()))
    }
}

impl Drop for RdsContainer {
    fn drop(&mut self) {
        // Synchronously, container first: the network cannot go while it has an endpoint, and
        // a drop may come from a panic with no runtime to run the engine's async calls on.
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", "-v", self.container.id()])
            .output();
        remove_network(&self.network);
    }
}

fn remove_network(network: &str) {
    let _ = std::process::Command::new("docker")
        .args(["network", "rm", network])
        .output();
}

fn engine_error<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
) -> impl FnOnce(E) -> ContainerError {
    let what = what.to_owned();
    move |e| ContainerError::Engine {
        what,
        source: Box::new(e),
    }
}

/// A bridge network of its own with a /24 the engine accepts (a subnet is what lets a container
/// be connected at a chosen address). Another network may hold a candidate subnet: then the next.
async fn create_network(docker: &Docker) -> Result<String, ContainerError> {
    let name = format!(
        "rds-e2e-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut last = None;
    for _ in 0..20 {
        let third = rand::rng().random_range(0..=255u8);
        let subnet = format!("172.30.{third}.0/24");
        let created = docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(subnet),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        match created {
            Ok(_) => return Ok(name),
            Err(e) => last = Some(e),
        }
    }
    Err(engine_error("creating a network for rds-sim")(
        last.expect("at least one attempt"),
    ))
}

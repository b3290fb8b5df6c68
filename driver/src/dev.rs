//! `rds-csi dev`: the whole driver against an embedded rds-sim, so anyone can run it with one command
//! and point csi-sanity, `grpcurl` or the e2e suites at its socket.
//!
//! The node attaches with the kernel's NVMe/TCP initiator when the nvme_tcp module is loaded, and
//! otherwise with loop devices over the simulator's backing files (`<data-dir>/rds/files`), so
//! the whole node path runs on any Linux machine (as root).

use crate::config::{Config, FabricMode, NodeConfig};
use crate::grpc::{BoundSocket, parse_endpoint};
use crate::node::host::KernelFabric;
use crate::rds::ssh::HostKeyPin;
use crate::service::{Driver, Mode};
use anyhow::Context;
use rds_sim::server::{Options, RunningSim};
use rds_sim::ssh::load_or_generate_host_key;
use std::path::{Path, PathBuf};

/// The pool the embedded simulator offers.
pub const POOL: &str = rds_sim::server::DEFAULT_POOL;
/// The host NQN of `rds-csi dev`'s node (its node id).
pub const DEV_HOST_NQN: &str =
    "nqn.2014-08.org.nvmexpress:uuid:de7de7de-0000-4000-8000-000000000001";

/// A running simulator and the driver configuration that reaches it.
pub struct DevEnv {
    pub sim: RunningSim,
    pub config: Config,
    _tmp: Option<tempfile::TempDir>,
}

/// Starts rds-sim on a free loopback port with a fresh client key, and a configuration for the
/// driver pinned to the simulator's host key. State lives in `data_dir`, or a temporary directory.
pub async fn start(data_dir: Option<PathBuf>) -> anyhow::Result<DevEnv> {
    let (dir, tmp) = match data_dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::tempdir().context("creating a temporary directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    std::fs::create_dir_all(&dir)?;
    let key_file = dir.join("id_ed25519");
    let client = load_or_generate_host_key(&key_file)?;
    let sim = RunningSim::start(Options {
        control_listen: Some("127.0.0.1:0".parse().expect("literal address")),
        nvme_listen: Some("127.0.0.1:0".parse().expect("literal address")),
        ..Options::loopback(dir.join("rds"), client.public_key().clone(), 1 << 40)
    })
    .await?;
    let mut config = config_for(&sim, &key_file)?;
    config.node = node_config(&dir.join("rds"), Path::new("/sys"));
    config.validate()?;
    Ok(DevEnv {
        sim,
        config,
        _tmp: tmp,
    })
}

/// The node's configuration for a simulator whose data directory is `sim_data_dir`: the kernel
/// initiator when `<sys>/module/nvme_tcp` exists, loop devices over the simulator's files
/// otherwise.
pub fn node_config(sim_data_dir: &Path, sys: &Path) -> NodeConfig {
    let (fabric, loop_root) = if KernelFabric::available(sys) {
        (FabricMode::Kernel, None)
    } else {
        (FabricMode::Loop, Some(sim_data_dir.join("files")))
    };
    NodeConfig {
        host_nqn: Some(DEV_HOST_NQN.to_owned()),
        fabric,
        loop_root,
        ..NodeConfig::default()
    }
}

/// A driver configuration for a running simulator.
pub fn config_for(sim: &RunningSim, key_file: &Path) -> anyhow::Result<Config> {
    let pin = HostKeyPin::of_key(&sim.host_public_key);
    let text = format!(
        r#"
[rds]
address = "127.0.0.1"
sshPort = {port}
user = "admin"
privateKeyFile = {key:?}
hostKey = "{pin}"
pool = "{POOL}"
baseDir = "csi"
nqnPrefix = "nqn.2000-02.com.mikrotik"
nvmeAddress = "127.0.0.1"
nvmePort = {nvme_port}
"#,
        port = sim.ssh_addr.port(),
        nvme_port = sim.nvme_addr.map_or(4420, |a| a.port()),
        key = key_file.display().to_string(),
    );
    let config = Config::from_toml(&text)?;
    config.validate()?;
    Ok(config)
}

/// Runs `rds-csi dev` until Ctrl-C.
pub async fn run(endpoint: &str, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let env = start(data_dir).await?;
    let path = parse_endpoint(endpoint)?;
    let socket = BoundSocket::bind(&path)?;
    println!("rds-sim   ssh {}", env.sim.ssh_addr);
    if let Some(c) = env.sim.control_addr {
        println!("rds-sim   control http://{c}");
    }
    println!(
        "watch it: ssh -p {} -i {} -o StrictHostKeyChecking=no admin@127.0.0.1 '/disk print detail'",
        env.sim.ssh_addr.port(),
        env.config.rds.private_key_file.display()
    );
    let driver = Driver::new(env.config.clone()).await?;
    println!("rds-csi   {endpoint} (identity, controller, node)");
    match env.config.node.fabric {
        FabricMode::Kernel => {
            println!("node      attaches with the kernel NVMe/TCP initiator (nvme_tcp is loaded)")
        }
        FabricMode::Loop => println!(
            "node      attaches with loop devices over rds-sim's files in {} (nvme_tcp is not \
             loaded; `modprobe nvme-tcp` for the real initiator); needs root",
            env.config
                .node
                .loop_root
                .as_deref()
                .unwrap_or(Path::new("?"))
                .display()
        ),
    }
    println!("          node id {}", DEV_HOST_NQN);
    println!("Ctrl-C to stop");
    socket
        .serve(driver.router(Mode::All), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    env.sim.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_picks_the_kernel_initiator_only_when_nvme_tcp_is_loaded() {
        let sys = tempfile::tempdir().unwrap();
        let data = Path::new("/tmp/dev/rds");
        let config = node_config(data, sys.path());
        assert_eq!(config.fabric, FabricMode::Loop);
        assert_eq!(
            config.loop_root.as_deref(),
            Some(Path::new("/tmp/dev/rds/files"))
        );
        std::fs::create_dir_all(sys.path().join("module/nvme_tcp")).unwrap();
        let config = node_config(data, sys.path());
        assert_eq!(config.fabric, FabricMode::Kernel);
        assert_eq!(config.loop_root, None);
    }
}

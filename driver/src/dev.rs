//! `rds-csi dev`: the whole driver against an embedded rds-sim, so anyone can run it with one command
//! and point csi-sanity, `grpcurl` or the e2e suites at its socket.

use crate::config::Config;
use crate::grpc::{BoundSocket, parse_endpoint};
use crate::rds::ssh::HostKeyPin;
use crate::service::{Driver, Mode};
use anyhow::Context;
use rds_sim::server::{Options, RunningSim};
use rds_sim::ssh::load_or_generate_host_key;
use std::path::{Path, PathBuf};

/// The pool the embedded simulator offers.
pub const POOL: &str = rds_sim::server::DEFAULT_POOL;

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
    let config = config_for(&sim, &key_file)?;
    Ok(DevEnv {
        sim,
        config,
        _tmp: tmp,
    })
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
"#,
        port = sim.ssh_addr.port(),
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
    println!("rds-csi   {endpoint} (identity, controller)");
    println!("Ctrl-C to stop");
    let driver = Driver::new(env.config.clone()).await?;
    socket
        .serve(driver.router(Mode::All), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    env.sim.shutdown().await;
    Ok(())
}

//! `rds-sim`: run the RDS simulator.

use clap::Parser;
use rds_sim::engine::EngineConfig;
use rds_sim::server::{Options, RunningSim, parse_pool, parse_size};
use rds_sim::ssh::read_authorized_keys;
use rds_sim::store::{CopySemantics, Pool, PoolFs};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A MikroTik RDS (RouterOS rose-storage) simulator: SSH CLI, state, faults"
)]
struct Cli {
    /// Where state and backing files live.
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:2222")]
    ssh_listen: SocketAddr,
    /// The HTTP/JSON control API (faults, state, command log); off when not given.
    #[arg(long)]
    control_listen: Option<SocketAddr>,
    /// The NVMe/TCP target serving exported disks.
    #[arg(long, default_value = "127.0.0.1:4420")]
    nvme_listen: SocketAddr,
    /// OpenSSH authorized_keys file for the user.
    #[arg(long)]
    authorized_keys: Option<PathBuf>,
    /// Host key (OpenSSH format); generated into the data dir when absent.
    #[arg(long)]
    host_key: Option<PathBuf>,
    #[arg(long, default_value = "admin")]
    user: String,
    /// Also accept this password (public keys are always accepted).
    #[arg(long, env = "RDS_SIM_PASSWORD")]
    password: Option<String>,
    /// The pool disk, NAME:SIZE.
    #[arg(long, default_value = "storage-pool:1TiB", value_parser = parse_pool)]
    pool: Pool,
    /// Seed for every random choice (fault jitter), so a run can be replayed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Terminal width that `print detail` wraps at.
    #[arg(long, default_value_t = 80)]
    width: usize,
    /// What `/disk add copy-from=` does: `data` (a copy of the file) or `settings` (an empty file).
    #[arg(long, default_value = "data")]
    copy_from: CopySemantics,
    /// The pool's file system, `xfs` or `btrfs` (a Btrfs pool has `/disk btrfs` subvolumes; its
    /// label is the pool name).
    #[arg(long, default_value = "xfs")]
    pool_fs: PoolFs,
    /// Bytes per second `/disk copy` moves (e.g. 100MiB); unlimited when not given.
    #[arg(long, value_parser = parse_size)]
    copy_rate: Option<u64>,
    /// An open RouterOS question's answer, NAME=POSITION, repeatable: empty-print=nothing|legend,
    /// grow=grows|refused, remove-missing=silent|no-such-item, remove-exported=allowed|refused,
    /// duplicate-nqn=allowed|refused, slot-length=32|unlimited, default-nqn=slot|empty,
    /// error-stream=stdout|stderr, allocation=sparse|preallocated, allow-list=list|single,
    /// add-errors=known|opaque (docs/simulator.md, "Switches").
    #[arg(long = "quirk", value_name = "NAME=POSITION")]
    quirks: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Before anything is served, so that a stop at any moment after the first line printed finds
    // the handler in place.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let authorized_keys = match &cli.authorized_keys {
        Some(path) => read_authorized_keys(path)?,
        None => Vec::new(),
    };
    if authorized_keys.is_empty() && cli.password.is_none() {
        anyhow::bail!("no way to log in: give --authorized-keys FILE and/or --password");
    }
    let mut quirks = rds_sim::engine::quirks::Quirks::default();
    for pair in &cli.quirks {
        quirks.set_pair(pair).map_err(anyhow::Error::msg)?;
    }
    let running = RunningSim::start(Options {
        data_dir: cli.data_dir,
        ssh_listen: cli.ssh_listen,
        control_listen: cli.control_listen,
        nvme_listen: Some(cli.nvme_listen),
        host_key: cli.host_key,
        user: cli.user,
        authorized_keys,
        password: cli.password,
        pool: cli.pool,
        seed: cli.seed,
        engine: EngineConfig {
            width: cli.width,
            copy_from: cli.copy_from,
            copy_rate: cli.copy_rate.filter(|r| *r > 0),
            pool_fs: cli.pool_fs,
            quirks,
            ..EngineConfig::default()
        },
    })
    .await?;
    println!("ssh {}", running.ssh_addr);
    if let Some(addr) = running.control_addr {
        println!("control http://{addr}");
    }
    if let Some(addr) = running.nvme_addr {
        println!("nvme-tcp {addr}");
    }
    println!(
        "host-key {}",
        running
            .host_public_key
            .fingerprint(russh::keys::HashAlg::Sha256)
    );
    stop_requested(&mut term).await?;
    running.shutdown().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM: what `docker stop` and kubelet send. As a container's process 1 rds-sim
/// gets no default action for SIGTERM, so without this a stop waited out the engine's grace
/// period and ended in SIGKILL, an RDS crash rather than a reboot.
async fn stop_requested(term: &mut tokio::signal::unix::Signal) -> std::io::Result<()> {
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted,
        _ = term.recv() => Ok(()),
    }
}

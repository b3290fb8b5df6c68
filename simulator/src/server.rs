//! Starting a whole simulator: the SSH server and the control API around one [`Sim`]. Used by the
//! `rds-sim` binary and, in-process, by tests, the e2e framework and `rds-csi dev`.

use crate::engine::EngineConfig;
use crate::sim::{Sim, SimConfig};
use crate::ssh::{self, SshConfig, User};
use crate::store::Pool;
use anyhow::Context;
use russh::keys::PublicKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Everything needed to start a simulator.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: PathBuf,
    pub ssh_listen: SocketAddr,
    pub control_listen: Option<SocketAddr>,
    /// The NVMe/TCP target; off when `None`.
    pub nvme_listen: Option<SocketAddr>,
    /// Host key file (OpenSSH format); generated when absent. Default: `<data-dir>/ssh_host_ed25519_key`.
    pub host_key: Option<PathBuf>,
    pub user: String,
    pub authorized_keys: Vec<PublicKey>,
    pub password: Option<String>,
    pub pool: Pool,
    pub seed: u64,
    pub engine: EngineConfig,
}

/// The pool name a factory-configured RDS mounts, used by [`Options::loopback`].
pub const DEFAULT_POOL: &str = "storage-pool";

impl Options {
    /// A simulator for tests and `rds-csi dev`: SSH on a loopback port the kernel picks, user
    /// `admin` logging in with `key`, pool [`DEFAULT_POOL`] of `pool_size` bytes, seed 1, no
    /// control API and no NVMe/TCP target (set `control_listen` / `nvme_listen` to add them).
    pub fn loopback(data_dir: PathBuf, key: PublicKey, pool_size: u64) -> Options {
        Options {
            data_dir,
            ssh_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            control_listen: None,
            nvme_listen: None,
            host_key: None,
            user: "admin".into(),
            authorized_keys: vec![key],
            password: None,
            pool: Pool {
                name: DEFAULT_POOL.into(),
                size: pool_size,
            },
            seed: 1,
            engine: EngineConfig::default(),
        }
    }
}

/// A running simulator. Dropping it does not stop it; call [`RunningSim::shutdown`].
pub struct RunningSim {
    pub sim: Arc<Sim>,
    pub ssh_addr: SocketAddr,
    pub control_addr: Option<SocketAddr>,
    pub nvme_addr: Option<SocketAddr>,
    /// The host key's public half, for clients that pin it.
    pub host_public_key: PublicKey,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSim {
    pub async fn start(opts: Options) -> anyhow::Result<RunningSim> {
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("creating data dir {}", opts.data_dir.display()))?;
        let sim = Arc::new(Sim::open(SimConfig {
            data_dir: opts.data_dir.clone(),
            pool: opts.pool.clone(),
            engine: opts.engine.clone(),
            seed: opts.seed,
        })?);
        let key_path = opts
            .host_key
            .clone()
            .unwrap_or_else(|| opts.data_dir.join("ssh_host_ed25519_key"));
        let host_key = ssh::load_or_generate_host_key(&key_path)?;
        let host_public_key = host_key.public_key().clone();
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();

        let listener = TcpListener::bind(opts.ssh_listen)
            .await
            .with_context(|| format!("binding SSH on {}", opts.ssh_listen))?;
        let ssh_addr = listener.local_addr()?;
        let config = SshConfig::new(
            host_key,
            vec![User {
                name: opts.user.clone(),
                authorized_keys: opts.authorized_keys.clone(),
                password: opts.password.clone(),
            }],
        );
        let (s, t) = (sim.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = ssh::serve(s, listener, config, t).await {
                tracing::error!("SSH server stopped: {e:#}");
            }
        }));

        let control_addr = match opts.control_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the control API on {addr}"))?;
                let local = listener.local_addr()?;
                let (s, t) = (sim.clone(), shutdown.clone());
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = crate::control::serve(s, listener, t).await {
                        tracing::error!("control API stopped: {e}");
                    }
                }));
                Some(local)
            }
            None => None,
        };
        let nvme_addr = match opts.nvme_listen {
            Some(addr) => {
                let exports: Arc<dyn crate::nvme::Exports> = sim.clone();
                let target = crate::nvme::Target::start(addr, exports)
                    .await
                    .with_context(|| format!("binding the NVMe/TCP target on {addr}"))?;
                let local = target.local_addr();
                sim.attach_target(target);
                Some(local)
            }
            None => None,
        };
        Ok(RunningSim {
            sim,
            ssh_addr,
            control_addr,
            nvme_addr,
            host_public_key,
            shutdown,
            tasks,
        })
    }

    /// Stops the servers and waits for them.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.sim.drop_sessions();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Parses a size such as `1TiB`, `500GiB`, `64MiB`, `1T` or plain bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let n: u64 = text[..digits]
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1TiB, 500GiB, 1073741824)"))?;
    let shift = match &text[digits..] {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?} (use KiB, MiB, GiB or TiB)"
            ));
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses `NAME:SIZE`, e.g. `storage-pool:1TiB`.
pub fn parse_pool(text: &str) -> Result<Pool, String> {
    let (name, size) = text
        .split_once(':')
        .ok_or_else(|| format!("pool {text:?} must be NAME:SIZE, e.g. storage-pool:1TiB"))?;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "pool name {name:?} may hold only letters, digits, - and _"
        ));
    }
    Ok(Pool {
        name: name.to_string(),
        size: parse_size(size)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_pools_parse() {
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(
            parse_size("1PiB")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(
            parse_pool("storage-pool:1TiB"),
            Ok(Pool {
                name: "storage-pool".into(),
                size: 1 << 40
            })
        );
        assert!(parse_pool("a/b:1G").is_err());
        assert!(parse_pool("nosize").is_err());
    }
}

//! `rds-csi node` in a guest: the real kernel NVMe/TCP initiator under the node plugin, whose gRPC
//! the host reaches through a forwarded TCP port (the plugin's `tcp://` endpoint). rds-sim and the
//! controller stay on the host, which the guest reaches at [`super::HOST_ADDR`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tonic::transport::Channel;

use super::{Guest, GuestConfig, GuestError};

/// Where the node plugin listens in the guest.
const GUEST_CSI_PORT: u16 = 10000;
/// The plugin's configuration file and log in the guest.
const GUEST_CONFIG: &str = "/etc/rds-csi/config.toml";
const GUEST_LOG: &str = "/tmp/rds-csi.log";
/// The plugin's log filter: the default, plus the node's per-step timings (`step=… ms=…`).
const GUEST_LOG_FILTER: &str = "info,russh=warn,rds_csi::node=debug";

/// Why the node plugin is not serving in a guest.
#[derive(Debug, thiserror::Error)]
pub enum NodePluginError {
    #[error(transparent)]
    Guest(#[from] GuestError),
    #[error(transparent)]
    Binary(#[from] crate::binaries::BinaryError),
    #[error("cannot list the shared libraries of {binary} with ldd: {reason}")]
    Ldd { binary: PathBuf, reason: String },
    #[error("cannot strip the debug info of {binary} (strip, from binutils): {reason}")]
    Strip { binary: PathBuf, reason: String },
    #[error("cannot pick a free host port for the plugin's gRPC: {0}")]
    Port(std::io::Error),
    #[error("cannot write the node plugin's configuration {path}: {source}")]
    Config {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the node plugin did not start in the guest: {0}")]
    Start(GuestError),
    #[error(transparent)]
    Connect(#[from] rds_csi::grpc::ConnectError),
}

impl NodePluginError {
    /// Why a test may skip rather than fail: see [`super::skip_reason`].
    pub fn skip_reason(&self) -> Option<String> {
        match self {
            NodePluginError::Guest(e) => super::skip_reason(e),
            _ => None,
        }
    }
}

/// What to boot: the node's `[node]` configuration and any files the caller wants beside it.
pub struct NodePluginConfig {
    /// The rds-csi binary to run; `None`: the one this build made.
    pub binary: Option<PathBuf>,
    /// The `[node]` table of the plugin's configuration (its host NQN, fabric "kernel", limits).
    pub node: toml::Table,
    /// More `(host file, guest path)` copies, as in [`GuestConfig::extra_files`].
    pub extra_files: Vec<(PathBuf, String)>,
    pub memory_mb: u32,
}

/// A guest running `rds-csi node`, killed with the guest when dropped.
pub struct NodePlugin {
    guest: Guest,
    addr: SocketAddr,
    pid: u32,
}

impl NodePlugin {
    /// Boots a guest with the rds-csi binary beside this process's (and the shared libraries it
    /// loads), starts `rds-csi node` there and waits until it serves. `work` holds the generated
    /// configuration file.
    pub fn boot(config: NodePluginConfig, work: &Path) -> Result<NodePlugin, NodePluginError> {
        // First whether a guest can run here at all, so that such a machine skips.
        super::image::cached()?;
        let binary = match config.binary {
            Some(binary) => binary,
            None => plugin_binary()?,
        };
        let config_path = work.join("node-plugin.toml");
        let mut file = toml::Table::new();
        file.insert("node".into(), config.node.into());
        std::fs::write(&config_path, file.to_string()).map_err(|source| {
            NodePluginError::Config {
                path: config_path.clone(),
                source,
            }
        })?;
        let mut extra_files = shared_libraries(&binary)?;
        extra_files.extend(config.extra_files);
        extra_files.extend([
            (
                without_debug_info(&binary, work)?,
                "/usr/local/bin/rds-csi".into(),
            ),
            (config_path, GUEST_CONFIG.into()),
        ]);
        let (guest, host_port) = boot_with_forward(config.memory_mb, extra_files)?;
        let pid = start(&guest, "")?;
        Ok(NodePlugin {
            guest,
            addr: SocketAddr::from(([127, 0, 0, 1], host_port)),
            pid,
        })
    }

    /// Kills the plugin (SIGKILL, as kubelet ends a container) if it still runs, and starts it
    /// again, with `RDS_CSI_CRASH_AT=<crash_at>` when given (a build with crash points then kills
    /// itself at that step). Its gRPC clients reconnect on their next call.
    pub fn restart(&mut self, crash_at: Option<&str>) -> Result<(), NodePluginError> {
        self.guest
            .run_ok(&format!(
                "kill -9 {} 2>/dev/null; while kill -0 {} 2>/dev/null; do sleep 0.05; done; true",
                self.pid, self.pid
            ))
            .map_err(NodePluginError::Start)?;
        let env = crash_at.map_or(String::new(), |point| {
            format!("{}={point} ", rds_csi::node::crash::CRASH_AT)
        });
        self.pid = start(&self.guest, &env)?;
        Ok(())
    }

    /// Whether the plugin process has ended (killed, or dead of its own crash point).
    pub fn has_died(&self) -> bool {
        self.guest
            .run(&format!("kill -0 {} 2>/dev/null", self.pid))
            .is_ok_and(|output| output.rc != 0)
    }

    pub fn guest(&self) -> &Guest {
        &self.guest
    }

    /// A gRPC channel to the plugin, through the forwarded port.
    pub async fn channel(&self) -> Result<Channel, NodePluginError> {
        Ok(rds_csi::grpc::connect_tcp(self.addr).await?)
    }

    /// Runs `command` in the guest, failing with the end of the plugin's log beside the output.
    pub fn run_ok(&self, command: &str) -> Result<String, String> {
        self.guest
            .run_ok(command)
            .map(|output| output.stdout)
            .map_err(|e| format!("{e}\nnode plugin log:\n{}", self.log_tail()))
    }

    /// The plugin's whole log.
    pub fn log(&self) -> Result<String, String> {
        self.run_ok(&format!("cat {GUEST_LOG}"))
    }

    /// The last lines of the plugin's log.
    pub fn log_tail(&self) -> String {
        self.guest
            .run(&format!("tail -40 {GUEST_LOG}"))
            .map(|output| output.stdout)
            .unwrap_or_else(|e| format!("(cannot read {GUEST_LOG}: {e})"))
    }

    /// A `Vm*` field of the plugin's /proc status (VmRSS, VmHWM), in KiB.
    pub fn memory_kib(&self, field: &str) -> Result<u64, String> {
        let text = self.run_ok(&format!(
            "awk '$1 == \"{field}:\" {{ print $2 }}' /proc/{}/status",
            self.pid
        ))?;
        text.trim()
            .parse()
            .map_err(|e| format!("{field} of the node plugin: {text:?}: {e}"))
    }
}

/// Boots the guest with a host port forwarded to the plugin's. The port is free when picked but
/// only bound by QEMU a moment later, so another process may take it first: then QEMU cannot set
/// up the forward, and a new port is tried.
fn boot_with_forward(
    memory_mb: u32,
    extra_files: Vec<(PathBuf, String)>,
) -> Result<(Guest, u16), NodePluginError> {
    let mut attempts = 3;
    loop {
        let host_port = super::free_local_port().map_err(NodePluginError::Port)?;
        let booted = Guest::boot(GuestConfig {
            memory_mb,
            host_forwards: vec![(host_port, GUEST_CSI_PORT)],
            extra_files: extra_files.clone(),
            ..GuestConfig::default()
        });
        attempts -= 1;
        match booted {
            Ok(guest) => return Ok((guest, host_port)),
            Err(GuestError::Boot { diagnostics, .. })
                if attempts > 0 && diagnostics.contains("host forwarding rule") => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The rds-csi binary of this build: beside a bench binary (`target/<profile>/`), or two levels
/// above a test binary (`target/<profile>/deps/`).
/// Starts `rds-csi node` in `guest` with the environment assignments `env` (`NAME=value `) and
/// waits until it serves; returns its pid.
fn start(guest: &Guest, env: &str) -> Result<u32, NodePluginError> {
    let started = guest
        .run_ok(&format!(
            "modprobe nvme-tcp
             {env}RUST_LOG={GUEST_LOG_FILTER} /usr/local/bin/rds-csi node \
               --endpoint tcp://0.0.0.0:{GUEST_CSI_PORT} --config {GUEST_CONFIG} \
               >{GUEST_LOG} 2>&1 &
             pid=$!
             for i in $(seq 600); do
               grep -q 'serving CSI' {GUEST_LOG} && echo $pid && exit 0
               kill -0 $pid 2>/dev/null || break
               sleep 0.1
             done
             cat {GUEST_LOG} >&2; exit 1"
        ))
        .map_err(NodePluginError::Start)?;
    started.stdout.trim().parse().map_err(|_| {
        NodePluginError::Start(GuestError::Protocol(format!(
            "the start script printed {:?}, not the plugin's pid",
            started.stdout
        )))
    })
}

pub fn plugin_binary() -> Result<PathBuf, NodePluginError> {
    Ok(crate::binaries::built("rds-csi", "driver/src")?)
}

/// The shared libraries `binary` loads, as `(host path, guest path)`: the guest image lacks some
/// (libm), and copies of the host's own files are always the right versions.
fn shared_libraries(binary: &Path) -> Result<Vec<(PathBuf, String)>, NodePluginError> {
    let libraries = ldd_libraries(binary).map_err(|reason| NodePluginError::Ldd {
        binary: binary.to_owned(),
        reason,
    })?;
    Ok(libraries
        .into_iter()
        .map(|path| {
            let inside = path.display().to_string();
            (path, inside)
        })
        .collect())
}

/// The absolute paths `ldd` lists for `binary`: the libraries it loads and the dynamic loader.
pub(crate) fn ldd_libraries(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let output = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// A copy of `binary` under `work` without debug sections (symbols stay, for backtraces): the
/// guest unpacks its initramfs into RAM under TCG, and a release build's debug info alone would
/// not fit beside the rest in a small guest.
fn without_debug_info(binary: &Path, work: &Path) -> Result<PathBuf, NodePluginError> {
    let failed = |reason: String| NodePluginError::Strip {
        binary: binary.to_owned(),
        reason,
    };
    let stripped = work.join("rds-csi.stripped");
    let output = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&stripped)
        .arg(binary)
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(String::from_utf8_lossy(&output.stderr).into_owned()));
    }
    Ok(stripped)
}

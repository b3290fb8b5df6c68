//! The driver's one typed configuration: a TOML file, then `RDS_CSI_*` environment overrides,
//! then validation that names every problem and how to fix it.
//!
//! Every key, with its environment variable and default (an empty default means required, or
//! unset where the text says so):
//!
//! | key | environment variable | default | meaning |
//! |---|---|---|---|
//! | `driverName` | `RDS_CSI_DRIVER_NAME` | `rds.csi.mikrotik.com` | the CSI driver name (the StorageClass `provisioner`); at most 63 characters of `a-z A-Z 0-9 . - _`, starting and ending with a letter or digit |
//! | `rds.address` | `RDS_CSI_RDS_ADDRESS` | (required) | host name or IP address of the RDS's SSH service |
//! | `rds.sshPort` | `RDS_CSI_RDS_SSH_PORT` | `22` | SSH port of the RDS |
//! | `rds.user` | `RDS_CSI_RDS_USER` | `admin` | RouterOS user; needs the ssh, read, write and test policies |
//! | `rds.privateKeyFile` | `RDS_CSI_RDS_PRIVATE_KEY_FILE` | (required) | OpenSSH private key whose public half is imported for the user (`/user ssh-keys import`) |
//! | `rds.hostKey` | `RDS_CSI_RDS_HOST_KEY` | (required) | the pinned SSH host key of the RDS: a known_hosts line (`ssh-keyscan` prints them) or a `SHA256:…` fingerprint; any other key is refused |
//! | `rds.pool` | `RDS_CSI_RDS_POOL` | (required) | mount point of the pool disk that holds the volumes' files, as `/disk print detail` shows `mount-point` (e.g. `storage-pool`) |
//! | `rds.baseDir` | `RDS_CSI_RDS_BASE_DIR` | `csi` | directory under the pool for the volumes' files (`<pool>/<baseDir>/<volume id>.img`) |
//! | `rds.nqnPrefix` | `RDS_CSI_RDS_NQN_PREFIX` | `nqn.2000-02.com.mikrotik` | a volume is exported as the subsystem NQN `<nqnPrefix>:<volume id>` |
//! | `rds.nvmeAddress` | `RDS_CSI_RDS_NVME_ADDRESS` | (`rds.address`) | the NVMe/TCP address nodes connect to, when it differs from the SSH address (a storage network) |
//! | `rds.nvmePort` | `RDS_CSI_RDS_NVME_PORT` | `4420` | NVMe/TCP port of new volumes; a StorageClass may override it with `nvmePort` |
//! | `rds.connectTimeoutMs` | `RDS_CSI_RDS_CONNECT_TIMEOUT_MS` | `10000` | TCP connect, SSH handshake and login, in milliseconds |
//! | `rds.commandTimeoutMs` | `RDS_CSI_RDS_COMMAND_TIMEOUT_MS` | `30000` | one RouterOS command other than `/disk copy`, in milliseconds |
//! | `rds.copyTimeoutMs` | `RDS_CSI_RDS_COPY_TIMEOUT_MS` | `3600000` | one `/disk copy` (the `disk-copy` snapshot method's block copy, which runs as one command for the whole copy), in milliseconds; it must cover a copy of the largest volume |
//! | `rds.sessions` | `RDS_CSI_RDS_SESSIONS` | `4` | SSH connections kept to the RDS (1 to 64) |
//! | `rds.breakerOpenMs` | `RDS_CSI_RDS_BREAKER_OPEN_MS` | `30000` | how long, in milliseconds, the controller fails RDS calls fast (UNAVAILABLE) after 5 connection attempts in a row failed, before one attempt probes whether the RDS is back |
//! | `rds.allowList` | `RDS_CSI_RDS_ALLOW_LIST` | `list` | how the RDS reads `nvme-tcp-server-allow-host-name` (REFERENCE.md §13.3, undocumented): `list` (host NQNs separated by commas; a ReadWriteMany block volume may then be published to a KubeVirt live migration's target as well as its source) or `single` (one host: a second node is always refused). HARDWARE_VALIDATION.md TC-04 step 1 tells which an RDS does |
//! | `controller.maxConcurrentCreates` | `RDS_CSI_CONTROLLER_MAX_CONCURRENT_CREATES` | `8` | CreateVolume calls worked on at once; more wait their turn |
//! | `controller.maxVolumesPerNode` | `RDS_CSI_CONTROLLER_MAX_VOLUMES_PER_NODE` | `64` | volumes published to one node at once; one more is refused with RESOURCE_EXHAUSTED |
//! | `controller.snapshotMethod` | `RDS_CSI_CONTROLLER_SNAPSHOT_METHOD` | `copy-from` | how snapshots, restores and clones copy data: `copy-from` (`/disk add copy-from=`) `disk-copy` (`/disk copy`, a full block copy, run as one command: `rds.copyTimeoutMs` must cover a copy of the largest volume) or `btrfs` (Btrfs subvolume snapshots, for volumes of a StorageClass with `layout: subvolume` on a Btrfs pool); a VolumeSnapshotClass may override it with `method`. The controller probes a method on the RDS before first using it and refuses one that does not copy data (`rds-csi doctor --snapshots` shows the verdicts) |
//! | `node.nodeId` | `RDS_CSI_NODE_NODE_ID` | (unset) | the node plugin's node id; unset: its host NQN (the controller names the node in a volume's allow-list by it, so leave it unset unless the two differ on purpose) |
//! | `node.hostNqn` | `RDS_CSI_NODE_HOST_NQN` | (unset) | the node's NVMe host NQN; unset: read from `/etc/nvme/hostnqn` |
//! | `node.fabric` | `RDS_CSI_NODE_FABRIC` | `kernel` | how the node attaches volumes: `kernel` (the kernel's NVMe/TCP initiator; needs the nvme_tcp module) or `loop` (loop devices over rds-sim's backing files, for machines without nvme-tcp; development and CI only) |
//! | `node.loopRoot` | `RDS_CSI_NODE_LOOP_ROOT` | (unset) | with `fabric = "loop"`: rds-sim's `<data-dir>/files`, where a disk's `file-path` is found (required in loop mode) |
//! | `node.kubeletDir` | `RDS_CSI_NODE_KUBELET_DIR` | (unset) | the kubelet's root directory (`--root-dir`): staging and target paths must lie under it, and no symlink below it is followed (the chart sets it); unset: any absolute path without a symlink in it |
//! | `node.maxVolumes` | `RDS_CSI_NODE_MAX_VOLUMES` | `64` | volumes this node can attach, reported by NodeGetInfo for the scheduler |
//! | `node.topology` | `RDS_CSI_NODE_TOPOLOGY` | (none) | the node's topology segments, reported by NodeGetInfo; in TOML a table, in the variable `key=value,key=value` |
//! | `node.ctrlLossTmo` | `RDS_CSI_NODE_CTRL_LOSS_TMO` | `600` | seconds the kernel keeps reconnecting a lost NVMe/TCP controller before failing I/O (-1: forever); a StorageClass's `ctrlLossTmo` overrides it |
//! | `node.reconnectDelay` | `RDS_CSI_NODE_RECONNECT_DELAY` | `5` | seconds between reconnect attempts; a StorageClass's `reconnectDelay` overrides it |
//! | `node.keepAliveTmo` | `RDS_CSI_NODE_KEEP_ALIVE_TMO` | `15` | NVMe Keep Alive timeout in seconds; a StorageClass's `keepAliveTmo` overrides it |
//! | `node.nrIoQueues` | `RDS_CSI_NODE_NR_IO_QUEUES` | (unset) | NVMe/TCP I/O queues per controller; unset: one per CPU; a StorageClass's `nrIoQueues` overrides it |
//! | `metrics.listen` | `RDS_CSI_METRICS_LISTEN` | (unset) | IP address and port (`0.0.0.0:9808`) where the controller and the node plugin serve Prometheus metrics over HTTP at `/metrics` (docs/operations.md, "Metrics"); unset: no metrics endpoint |
//! | `kubernetes.enabled` | `RDS_CSI_KUBERNETES_ENABLED` | `false` | the controller watches the API server (its ServiceAccount in a pod, else `KUBECONFIG`) and runs its reconcilers, on the replica that holds the Lease ("Two controller replicas"): fencing lost nodes (docs/operations.md, "A node is lost: node failure and fencing"), KubeVirt live-migration windows ("KubeVirt live migration") and finding orphans ("Orphans"); every replica records Events ("Events"); the chart sets it |
//! | `kubernetes.namespace` | `RDS_CSI_KUBERNETES_NAMESPACE` | `kube-system` | the driver's own namespace: the controller replicas' Lease, and Events about the driver itself |
//! | `kubernetes.lostNodeGraceSeconds` | `RDS_CSI_KUBERNETES_LOST_NODE_GRACE_SECONDS` | `30` | how long a Node must have been NotReady or Unknown before the controller fences it and lets its volumes move (a Node with the `node.kubernetes.io/out-of-service` taint, or deleted, is fenced at once) |
//! | `kubernetes.resyncSeconds` | `RDS_CSI_KUBERNETES_RESYNC_SECONDS` | `10` | the reconcilers look again this often even without a change from the API server (a Node's grace running out is not an event) |
//! | `kubernetes.leaseDurationSeconds` | `RDS_CSI_KUBERNETES_LEASE_DURATION_SECONDS` | `15` | controller replicas elect one leader for the reconcilers that change things, on the Lease `<driverName, dots as dashes>-controller` in `kubernetes.namespace`: a leader that stops renewing is replaced this long after its last renewal (docs/operations.md, "Two controller replicas") |
//! | `kubernetes.renewDeadlineSeconds` | `RDS_CSI_KUBERNETES_RENEW_DEADLINE_SECONDS` | `10` | a leader that has not renewed its Lease for this long stops acting; less than `leaseDurationSeconds`, so it has stopped before another replica can take over |
//! | `kubernetes.retryPeriodSeconds` | `RDS_CSI_KUBERNETES_RETRY_PERIOD_SECONDS` | `2` | how often a replica renews the Lease or tries to take it; less than `renewDeadlineSeconds` |
//! | `kubernetes.orphanGraceSeconds` | `RDS_CSI_KUBERNETES_ORPHAN_GRACE_SECONDS` | `3600` | how old a disk, file or export on the RDS that nothing in the cluster names must be before it counts as an orphan (docs/operations.md, "Orphans"); it covers a CreateVolume whose PersistentVolume is not made yet |
//! | `kubernetes.deleteOrphans` | `RDS_CSI_KUBERNETES_DELETE_ORPHANS` | `false` | the controller deletes orphans (a disk with its file, a file, or ends an export) instead of only reporting them (metric, log, Event) |
//!
//! In the TOML file the `rds`, `controller`, `node`, `metrics` and `kubernetes` keys live in tables of those names:
//!
//! ```toml
//! driverName = "rds.csi.mikrotik.com"
//! [rds]
//! address = "10.0.0.5"
//! privateKeyFile = "/etc/rds-csi/id_ed25519"
//! hostKey = "SHA256:T7SvZ2cslqpPj6nKzitCBHHlpVF3r3MvLwmFL0fk0IE"
//! pool = "storage-pool"
//! [controller]
//! maxVolumesPerNode = 32
//! [node]
//! fabric = "kernel"
//! topology = { "topology.rds.csi.mikrotik.com/zone" = "rack-1" }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::rds::ssh::HostKeyPin;
use crate::rds::value::{Nqn, RosPath, Slot};
use crate::snapshot::Method;

mod env;

use env::KEYS;

/// The whole configuration. Build it with [`Config::load`] or [`Config::from_toml`], then
/// [`Config::apply_env`], then [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    pub driver_name: String,
    pub rds: RdsConfig,
    pub controller: ControllerConfig,
    pub node: NodeConfig,
    pub metrics: MetricsConfig,
    pub kubernetes: KubernetesConfig,
}

/// The controller's reconcilers against the API server. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct KubernetesConfig {
    pub enabled: bool,
    pub namespace: String,
    pub lost_node_grace_seconds: u64,
    pub resync_seconds: u64,
    pub lease_duration_seconds: u64,
    pub renew_deadline_seconds: u64,
    pub retry_period_seconds: u64,
    pub orphan_grace_seconds: u64,
    pub delete_orphans: bool,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            namespace: "kube-system".to_owned(),
            lost_node_grace_seconds: 30,
            resync_seconds: 10,
            lease_duration_seconds: 15,
            renew_deadline_seconds: 10,
            retry_period_seconds: 2,
            orphan_grace_seconds: 3600,
            delete_orphans: false,
        }
    }
}

/// Where the process serves `/metrics`; the controller and the node plugin read it alike.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub listen: Option<std::net::SocketAddr>,
}

/// How to reach and use the RDS. See the module documentation for each key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RdsConfig {
    pub address: String,
    pub ssh_port: u16,
    pub user: String,
    pub private_key_file: PathBuf,
    pub host_key: String,
    pub pool: String,
    pub base_dir: String,
    pub nqn_prefix: String,
    /// Empty: the same as `address` ([`RdsConfig::nvme_target_address`]).
    pub nvme_address: String,
    pub nvme_port: u16,
    pub connect_timeout_ms: u64,
    pub command_timeout_ms: u64,
    pub copy_timeout_ms: u64,
    pub sessions: usize,
    pub breaker_open_ms: u64,
    pub allow_list: crate::rds::allow_list::Reading,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ControllerConfig {
    pub max_concurrent_creates: usize,
    pub max_volumes_per_node: u64,
    pub snapshot_method: Method,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NodeConfig {
    pub node_id: Option<String>,
    pub host_nqn: Option<String>,
    pub fabric: FabricMode,
    pub loop_root: Option<PathBuf>,
    pub kubelet_dir: Option<PathBuf>,
    pub max_volumes: u64,
    pub topology: BTreeMap<String, String>,
    pub ctrl_loss_tmo: i32,
    pub reconnect_delay: u32,
    pub keep_alive_tmo: u32,
    pub nr_io_queues: Option<u32>,
}

/// How the node attaches volumes (`node.fabric`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FabricMode {
    /// The kernel's NVMe/TCP initiator.
    Kernel,
    /// Loop devices over rds-sim's backing files.
    Loop,
}

impl FromStr for FabricMode {
    type Err = String;

    fn from_str(text: &str) -> Result<FabricMode, String> {
        match text {
            "kernel" => Ok(FabricMode::Kernel),
            "loop" => Ok(FabricMode::Loop),
            other => Err(format!("{other:?} is neither kernel nor loop")),
        }
    }
}

pub const DEFAULT_DRIVER_NAME: &str = "rds.csi.mikrotik.com";
pub const DEFAULT_NQN_PREFIX: &str = "nqn.2000-02.com.mikrotik";
const MAX_SESSIONS: usize = 64;

impl Default for Config {
    fn default() -> Self {
        Self {
            driver_name: DEFAULT_DRIVER_NAME.to_owned(),
            rds: RdsConfig::default(),
            controller: ControllerConfig::default(),
            node: NodeConfig::default(),
            metrics: MetricsConfig::default(),
            kubernetes: KubernetesConfig::default(),
        }
    }
}

impl Default for RdsConfig {
    fn default() -> Self {
        Self {
            address: String::new(),
            ssh_port: 22,
            user: "admin".to_owned(),
            private_key_file: PathBuf::new(),
            host_key: String::new(),
            pool: String::new(),
            base_dir: "csi".to_owned(),
            nqn_prefix: DEFAULT_NQN_PREFIX.to_owned(),
            nvme_address: String::new(),
            nvme_port: 4420,
            connect_timeout_ms: 10_000,
            command_timeout_ms: 30_000,
            copy_timeout_ms: 3_600_000,
            sessions: 4,
            breaker_open_ms: 30_000,
            allow_list: crate::rds::allow_list::Reading::List,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        let tunables = crate::node::host::Tunables::default();
        Self {
            node_id: None,
            host_nqn: None,
            fabric: FabricMode::Kernel,
            loop_root: None,
            kubelet_dir: None,
            max_volumes: 64,
            topology: BTreeMap::new(),
            ctrl_loss_tmo: tunables.ctrl_loss_tmo,
            reconnect_delay: tunables.reconnect_delay,
            keep_alive_tmo: tunables.keep_alive_tmo,
            nr_io_queues: tunables.nr_io_queues,
        }
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            max_concurrent_creates: 8,
            max_volumes_per_node: 64,
            snapshot_method: Method::CopyFrom,
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration {origin} is not valid TOML for rds-csi: {message}")]
    Parse { origin: String, message: String },
    #[error("environment variable {var}={value:?} is not usable: {reason}")]
    Env {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("the configuration has {} problem(s):\n{}", .0.len(), Problems(.0))]
    Invalid(Vec<Problem>),
}

/// One invalid or missing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key as written in the TOML file (`rds.hostKey`).
    pub key: &'static str,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env = KEYS
            .iter()
            .find(|k| k.toml == self.key)
            .map_or("", |k| k.env);
        write!(f, "{} ({env}): {}", self.key, self.message)
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, problem) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads a TOML file; keys it leaves out take their defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        parse_toml(&text, &format!("file {}", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        parse_toml(text, "text")
    }

    /// Reads a configuration file, or the hardware validation file (e2e/hardware.example.toml),
    /// whose `[hardware.driver]` table is the driver's configuration: HARDWARE_VALIDATION.md has
    /// a person fill in that one file, and `rds-csi doctor` checks it before any case runs.
    pub fn load_driver_or_hardware(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let origin = format!("file {}", path.display());
        let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        match table.get("hardware") {
            Some(hardware) => {
                let driver = hardware.get("driver").and_then(toml::Value::as_table);
                let driver = driver.ok_or_else(|| ConfigError::Parse {
                    origin: origin.clone(),
                    message: "a hardware validation file needs a [hardware.driver] table: \
                              the driver's configuration (see e2e/hardware.example.toml)"
                        .to_owned(),
                })?;
                parse_toml(
                    &driver.to_string(),
                    &format!("[hardware.driver] of {origin}"),
                )
            }
            None => parse_toml(&text, &origin),
        }
    }

    /// Checks every key and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(true)
    }

    /// Checks what the node plugin uses: `driverName` and the `node` keys. The node never talks
    /// to the RDS, so a node-only process needs no `[rds]` table (and no SSH key).
    pub fn validate_node(&self) -> Result<(), ConfigError> {
        self.check(false)
    }

    fn check(&self, with_rds: bool) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut check = |key, result: Result<(), String>| {
            if let Err(message) = result {
                problems.push(Problem { key, message });
            }
        };
        check("driverName", check_driver_name(&self.driver_name));
        if with_rds {
            self.check_rds(&mut check);
        }
        if let Some(nqn) = &self.node.host_nqn {
            check(
                "node.hostNqn",
                Nqn::parse(nqn).map(drop).map_err(|e| e.to_string()),
            );
        }
        if let Some(id) = &self.node.node_id {
            check(
                "node.nodeId",
                required(id, "the node id, or leave it unset"),
            );
        }
        self.node.check(&mut check);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    fn check_rds(&self, check: &mut impl FnMut(&'static str, Result<(), String>)) {
        let rds = &self.rds;
        check(
            "rds.address",
            required(&rds.address, "the RDS's host name or IP address"),
        );
        check("rds.sshPort", nonzero(rds.ssh_port.into()));
        check("rds.user", required(&rds.user, "a RouterOS user name"));
        check(
            "rds.privateKeyFile",
            required(
                rds.private_key_file.to_str().unwrap_or("-"),
                "the path of the OpenSSH private key rds-csi logs in with",
            ),
        );
        check("rds.hostKey", rds.host_key_pin().map(drop));
        check("rds.pool", rds.pool_path().map(drop));
        check("rds.baseDir", rds.base_dir_path().map(drop));
        check("rds.nqnPrefix", rds.nqn_prefix_nqn().map(drop));
        check("rds.nvmePort", nonzero(rds.nvme_port.into()));
        check("rds.connectTimeoutMs", nonzero(rds.connect_timeout_ms));
        check("rds.commandTimeoutMs", nonzero(rds.command_timeout_ms));
        check("rds.copyTimeoutMs", nonzero(rds.copy_timeout_ms));
        check("rds.breakerOpenMs", nonzero(rds.breaker_open_ms));
        check(
            "rds.sessions",
            if (1..=MAX_SESSIONS).contains(&rds.sessions) {
                Ok(())
            } else {
                Err(format!(
                    "{} is not between 1 and {MAX_SESSIONS}",
                    rds.sessions
                ))
            },
        );
        check(
            "controller.maxConcurrentCreates",
            nonzero(self.controller.max_concurrent_creates as u64),
        );
        check(
            "controller.maxVolumesPerNode",
            nonzero(self.controller.max_volumes_per_node),
        );
        let kubernetes = &self.kubernetes;
        check(
            "kubernetes.namespace",
            required(&kubernetes.namespace, "the driver's namespace"),
        );
        check(
            "kubernetes.resyncSeconds",
            nonzero(kubernetes.resync_seconds),
        );
        check(
            "kubernetes.renewDeadlineSeconds",
            nonzero(kubernetes.renew_deadline_seconds).and(shorter(
                kubernetes.renew_deadline_seconds,
                (
                    kubernetes.lease_duration_seconds,
                    "kubernetes.leaseDurationSeconds",
                ),
                "a leader that stopped renewing could still act when another replica takes over",
            )),
        );
        check(
            "kubernetes.retryPeriodSeconds",
            nonzero(kubernetes.retry_period_seconds).and(shorter(
                kubernetes.retry_period_seconds,
                (
                    kubernetes.renew_deadline_seconds,
                    "kubernetes.renewDeadlineSeconds",
                ),
                "a leader would get no second try at renewing before it must stop",
            )),
        );
    }
}

impl NodeConfig {
    fn check(&self, check: &mut impl FnMut(&'static str, Result<(), String>)) {
        if let Some(dir) = &self.kubelet_dir {
            check(
                "node.kubeletDir",
                if dir.is_absolute() {
                    Ok(())
                } else {
                    Err(format!("{} is not an absolute path", dir.display()))
                },
            );
        }
        if self.fabric == FabricMode::Loop {
            check(
                "node.loopRoot",
                match &self.loop_root {
                    Some(root) if root.is_dir() => Ok(()),
                    Some(root) => Err(format!("{} is not a directory", root.display())),
                    None => Err("is required with fabric = \"loop\": set it to rds-sim's \
                                 <data-dir>/files"
                        .to_owned()),
                },
            );
        }
        check("node.maxVolumes", nonzero(self.max_volumes));
        check(
            "node.ctrlLossTmo",
            if self.ctrl_loss_tmo == -1 || self.ctrl_loss_tmo > 0 {
                Ok(())
            } else {
                Err("must be a positive number of seconds, or -1 for forever".to_owned())
            },
        );
        check("node.reconnectDelay", nonzero(self.reconnect_delay.into()));
        check("node.keepAliveTmo", nonzero(self.keep_alive_tmo.into()));
        if let Some(queues) = self.nr_io_queues {
            check("node.nrIoQueues", nonzero(queues.into()));
        }
        check(
            "node.topology",
            match self
                .topology
                .iter()
                .find(|(k, v)| k.is_empty() || v.is_empty())
            {
                Some((k, v)) => Err(format!("segment {k:?}={v:?} has an empty key or value")),
                None => Ok(()),
            },
        );
    }
}

impl RdsConfig {
    /// `host:port` for the SSH client; an IPv6 address gets its brackets.
    pub fn ssh_addr(&self) -> String {
        let host = &self.address;
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", self.ssh_port)
        } else {
            format!("{host}:{}", self.ssh_port)
        }
    }

    /// Where nodes connect for NVMe/TCP: `nvmeAddress`, or `address` when that is empty.
    pub fn nvme_target_address(&self) -> &str {
        if self.nvme_address.is_empty() {
            &self.address
        } else {
            &self.nvme_address
        }
    }

    pub fn host_key_pin(&self) -> Result<HostKeyPin, String> {
        if self.host_key.trim().is_empty() {
            return Err(
                "is required: pin the RDS's SSH host key with a known_hosts line \
                 (`ssh-keyscan -t ed25519 <rds>`) or its SHA256 fingerprint"
                    .to_owned(),
            );
        }
        HostKeyPin::from_str(&self.host_key).map_err(|e| e.to_string())
    }

    pub fn pool_path(&self) -> Result<RosPath, String> {
        if self.pool.is_empty() {
            return Err(
                "is required: the mount point of the pool disk (`/disk print detail \
                 where mount-point` on the RDS shows it, e.g. storage-pool)"
                    .to_owned(),
            );
        }
        RosPath::parse(&self.pool).map_err(|e| e.to_string())
    }

    pub fn base_dir_path(&self) -> Result<RosPath, String> {
        RosPath::parse(&self.base_dir).map_err(|e| e.to_string())
    }

    /// The prefix, checked to leave room for `:<volume id>` within an NQN's 223 bytes.
    pub fn nqn_prefix_nqn(&self) -> Result<Nqn, String> {
        let prefix = Nqn::parse(&self.nqn_prefix).map_err(|e| e.to_string())?;
        let longest_id = Slot::parse(&"a".repeat(Slot::MAX_LEN)).expect("a valid slot");
        prefix.with_suffix(&longest_id).map_err(|_| {
            format!(
                "{:?} is too long: a volume NQN is the prefix, ':' and a {}-character volume id, \
                 at most {} bytes",
                self.nqn_prefix,
                Slot::MAX_LEN,
                Nqn::MAX_LEN
            )
        })?;
        Ok(prefix)
    }
}

fn parse_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.to_owned(),
        message: e.to_string(),
    })
}

fn required(value: &str, what: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("is required: set it to {what}"))
    } else {
        Ok(())
    }
}

fn nonzero(value: u64) -> Result<(), String> {
    if value == 0 {
        Err("must be greater than 0".to_owned())
    } else {
        Ok(())
    }
}

/// `value` seconds, which must be fewer than the `limit` key's: the leader election's timings
/// nest, or `otherwise` happens.
fn shorter(value: u64, limit: (u64, &str), otherwise: &str) -> Result<(), String> {
    let (limit, key) = limit;
    if value < limit {
        Ok(())
    } else {
        Err(format!(
            "{value} must be less than {key} ({limit}), or {otherwise}"
        ))
    }
}

/// The CSI spec's rule for plugin names.
fn check_driver_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let inner_ok = bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    let ends_ok = bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if name.len() <= 63 && inner_ok && ends_ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a CSI driver name: at most 63 characters of a-z A-Z 0-9 . - _, \
             starting and ending with a letter or digit (e.g. {DEFAULT_DRIVER_NAME})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINGERPRINT: &str = "SHA256:T7SvZ2cslqpPj6nKzitCBHHlpVF3r3MvLwmFL0fk0IE";

    pub(super) fn minimal() -> String {
        format!(
            "[rds]\naddress = \"10.0.0.5\"\nprivateKeyFile = \"/etc/rds-csi/id\"\n\
             hostKey = \"{FINGERPRINT}\"\npool = \"storage-pool\"\n"
        )
    }

    #[test]
    fn doctor_reads_a_driver_file_or_a_hardware_files_driver_table() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("config.toml");
        std::fs::write(&plain, minimal()).unwrap();
        let hardware = dir.path().join("hardware.toml");
        let nested = minimal().replace("[rds]", "[hardware.driver.rds]");
        std::fs::write(&hardware, format!("[hardware]\nnode-id = \"n\"\n{nested}")).unwrap();
        for path in [&plain, &hardware] {
            let config = Config::load_driver_or_hardware(path).unwrap();
            assert_eq!(config.rds.address, "10.0.0.5", "{}", path.display());
        }
        std::fs::write(&hardware, "[hardware]\nnode-id = \"n\"\n").unwrap();
        let message = Config::load_driver_or_hardware(&hardware)
            .unwrap_err()
            .to_string();
        assert!(message.contains("[hardware.driver]"), "{message}");
    }

    fn problems(config: &Config) -> Vec<&'static str> {
        match config.validate() {
            Ok(()) => Vec::new(),
            Err(ConfigError::Invalid(problems)) => problems.iter().map(|p| p.key).collect(),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn a_minimal_file_takes_the_defaults() {
        let config = Config::from_toml(&minimal()).unwrap();
        config.validate().unwrap();
        assert_eq!(config.driver_name, DEFAULT_DRIVER_NAME);
        assert_eq!(config.rds.ssh_addr(), "10.0.0.5:22");
        assert_eq!(config.rds.nvme_target_address(), "10.0.0.5");
        assert_eq!(config.rds.base_dir, "csi");
        assert_eq!(config.rds.nvme_port, 4420);
        assert_eq!(config.rds.sessions, 4);
        assert_eq!(config.rds.command_timeout_ms, 30_000);
        assert_eq!(config.rds.copy_timeout_ms, 3_600_000);
        assert_eq!(config.controller, ControllerConfig::default());
        assert_eq!(config.node, NodeConfig::default());
        assert_eq!(config.rds.host_key_pin().unwrap().to_string(), FINGERPRINT);
    }

    #[test]
    fn every_key_round_trips_through_toml() {
        let mut config = Config::from_toml(&minimal()).unwrap();
        config.rds.nvme_address = "192.168.10.5".into();
        config.node.host_nqn = Some("nqn.2014-08.org.nvmexpress:uuid:1".into());
        let text = toml::to_string(&config).unwrap();
        assert!(text.contains("nvmeAddress = \"192.168.10.5\""), "{text}");
        assert!(text.contains("maxVolumesPerNode = 64"), "{text}");
        assert!(text.contains("snapshotMethod = \"copy-from\""), "{text}");
        assert_eq!(Config::from_toml(&text).unwrap(), config);
    }

    #[test]
    fn unknown_keys_and_bad_types_are_refused_by_name() {
        let error = Config::from_toml("[rds]\nadress = \"x\"\n").unwrap_err();
        assert!(error.to_string().contains("adress"), "{error}");
        let error = Config::from_toml("[rds]\nsshPort = \"twenty-two\"\n").unwrap_err();
        assert!(error.to_string().contains("sshPort"), "{error}");
    }

    #[test]
    fn validation_lists_every_problem_with_its_variable() {
        let config = Config::from_toml("driverName = \"-bad\"\n[rds]\nsessions = 0\n").unwrap();
        assert_eq!(
            problems(&config),
            [
                "driverName",
                "rds.address",
                "rds.privateKeyFile",
                "rds.hostKey",
                "rds.pool",
                "rds.sessions"
            ]
        );
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("rds.hostKey (RDS_CSI_RDS_HOST_KEY): is required"),
            "{message}"
        );
        assert!(message.contains("ssh-keyscan"), "{message}");
    }

    #[test]
    fn values_are_checked_against_the_rds_rules() {
        let base = Config::from_toml(&minimal()).unwrap();
        type Change = fn(&mut Config);
        let cases: [(&str, Change); 9] = [
            ("rds.hostKey", |c| c.rds.host_key = "not a key".into()),
            ("rds.pool", |c| c.rds.pool = "storage pool".into()),
            ("rds.baseDir", |c| c.rds.base_dir = "../x".into()),
            ("rds.nqnPrefix", |c| {
                c.rds.nqn_prefix = "iqn.2000-01.com.x".into()
            }),
            ("rds.nqnPrefix", |c| {
                c.rds.nqn_prefix = format!("nqn.2000-01.com.x:{}", "a".repeat(180))
            }),
            ("rds.nvmePort", |c| c.rds.nvme_port = 0),
            ("rds.commandTimeoutMs", |c| c.rds.command_timeout_ms = 0),
            ("rds.copyTimeoutMs", |c| c.rds.copy_timeout_ms = 0),
            ("node.hostNqn", |c| c.node.host_nqn = Some("host".into())),
        ];
        for (key, change) in cases {
            let mut config = base.clone();
            change(&mut config);
            assert_eq!(problems(&config), [key]);
        }
    }

    #[test]
    fn loop_mode_needs_a_root_and_tunables_are_checked() {
        let base = Config::from_toml(&minimal()).unwrap();
        let mut config = base.clone();
        config.node.fabric = FabricMode::Loop;
        assert_eq!(problems(&config), ["node.loopRoot"]);
        config.node.loop_root = Some(std::env::temp_dir());
        assert_eq!(problems(&config), Vec::<&str>::new());
        let mut config = base;
        config.node.ctrl_loss_tmo = 0;
        config.node.keep_alive_tmo = 0;
        config.node.nr_io_queues = Some(0);
        config.node.topology.insert("zone".into(), String::new());
        assert_eq!(
            problems(&config),
            [
                "node.ctrlLossTmo",
                "node.keepAliveTmo",
                "node.nrIoQueues",
                "node.topology"
            ]
        );
        let parsed = Config::from_toml(&format!(
            "{}[node]\nfabric = \"loop\"\nloopRoot = \"/tmp\"\ntopology = {{ zone = \"a\" }}\n",
            minimal()
        ))
        .unwrap();
        assert_eq!(parsed.node.fabric, FabricMode::Loop);
        assert_eq!(parsed.node.topology["zone"], "a");
        assert!(Config::from_toml("[node]\nfabric = \"nvme\"\n").is_err());
    }

    #[test]
    fn the_leader_election_timings_must_nest() {
        let base = Config::from_toml(&minimal()).unwrap();
        assert_eq!(
            (
                base.kubernetes.lease_duration_seconds,
                base.kubernetes.renew_deadline_seconds,
                base.kubernetes.retry_period_seconds
            ),
            (15, 10, 2)
        );
        let mut config = base.clone();
        config.kubernetes.renew_deadline_seconds = 15;
        assert_eq!(problems(&config), ["kubernetes.renewDeadlineSeconds"]);
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains(
                "RDS_CSI_KUBERNETES_RENEW_DEADLINE_SECONDS): 15 must be less than \
                              kubernetes.leaseDurationSeconds (15)"
            ),
            "{message}"
        );
        let mut config = base.clone();
        config.kubernetes.retry_period_seconds = 10;
        assert_eq!(problems(&config), ["kubernetes.retryPeriodSeconds"]);
        let mut config = base;
        config.kubernetes.retry_period_seconds = 0;
        config.kubernetes.renew_deadline_seconds = 0;
        assert_eq!(
            problems(&config),
            [
                "kubernetes.renewDeadlineSeconds",
                "kubernetes.retryPeriodSeconds"
            ]
        );
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rds-csi.toml");
        let error = Config::load(&path).unwrap_err();
        assert!(error.to_string().contains("rds-csi.toml"), "{error}");
        std::fs::write(&path, minimal()).unwrap();
        assert_eq!(Config::load(&path).unwrap().rds.pool, "storage-pool");
        std::fs::write(&path, "[rds\n").unwrap();
        let error = Config::load(&path).unwrap_err();
        assert!(error.to_string().contains("rds-csi.toml"), "{error}");
    }
}

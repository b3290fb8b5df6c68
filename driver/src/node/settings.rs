//! What the node service needs from the configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::host::{Fabric, Host, KernelFabric, LoopFabric, Tunables};
use crate::config::{FabricMode, NodeConfig};

/// Where the host NQN lives when the configuration does not name one (nvme-cli's file).
pub const HOSTNQN_FILE: &str = "/etc/nvme/hostnqn";

/// The node's identity and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// The node id; `None`: the host NQN.
    pub node_id: Option<String>,
    /// The host NQN; `None`: read from `host_nqn_file` when first needed.
    pub host_nqn: Option<String>,
    /// [`HOSTNQN_FILE`], except in tests.
    pub host_nqn_file: PathBuf,
    /// Where staging and target paths must lie (`node.kubeletDir`); `None`: anywhere.
    pub kubelet_dir: Option<PathBuf>,
    pub max_volumes: u64,
    pub topology: BTreeMap<String, String>,
    pub tunables: Tunables,
}

impl NodeSettings {
    pub fn from_config(config: &NodeConfig) -> NodeSettings {
        NodeSettings {
            node_id: config.node_id.clone(),
            host_nqn: config.host_nqn.clone(),
            host_nqn_file: PathBuf::from(HOSTNQN_FILE),
            kubelet_dir: config.kubelet_dir.clone(),
            max_volumes: config.max_volumes,
            topology: config.topology.clone(),
            tunables: Tunables {
                ctrl_loss_tmo: config.ctrl_loss_tmo,
                reconnect_delay: config.reconnect_delay,
                keep_alive_tmo: config.keep_alive_tmo,
                nr_io_queues: config.nr_io_queues,
            },
        }
    }
}

/// The real host with the fabric `config` names.
pub fn host(config: &NodeConfig) -> Result<Host, String> {
    let fabric: Arc<dyn Fabric> = match (config.fabric, &config.loop_root) {
        (FabricMode::Loop, Some(root)) => Arc::new(LoopFabric::new(root.clone())),
        (FabricMode::Loop, None) => {
            return Err("node.loopRoot: loop mode needs rds-sim's <data-dir>/files".to_owned());
        }
        (FabricMode::Kernel, _) => Arc::new(KernelFabric::default()),
    };
    Ok(Host::linux(fabric))
}

/// The host NQN from `file`, trimmed.
pub fn read_host_nqn(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        format!(
            "the node has no host NQN: node.hostNqn is unset and {} cannot be read ({e}); set \
             node.hostNqn or write one with `nvme gen-hostnqn > {}`",
            file.display(),
            file.display()
        )
    })?;
    Ok(text.trim().to_owned())
}

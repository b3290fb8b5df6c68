//! `RDS_CSI_*` environment variables: one per configuration key, in [`KEYS`].

use std::path::PathBuf;
use std::str::FromStr;

use super::{Config, ConfigError};

impl Config {
    /// Overrides keys from the `RDS_CSI_*` variables set in the environment.
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        self.apply_vars(|name| std::env::var(name).ok())
    }

    /// Overrides keys from `var(name)`, for each variable of the key table.
    fn apply_vars(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for key in KEYS {
            if let Some(value) = var(key.env) {
                (key.set)(self, &value).map_err(|reason| ConfigError::Env {
                    var: key.env,
                    value,
                    reason,
                })?;
            }
        }
        Ok(())
    }
}

/// A key that an environment variable can set.
pub(super) struct Key {
    pub(super) toml: &'static str,
    pub(super) env: &'static str,
    set: fn(&mut Config, &str) -> Result<(), String>,
}

fn number<T: FromStr>(value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| "is not a whole number in range".to_owned())
}

fn flag(value: &str) -> Result<bool, String> {
    value
        .trim()
        .parse()
        .map_err(|_| "is neither true nor false".to_owned())
}

/// Every key an `RDS_CSI_*` variable overrides, in the module documentation's order.
pub(super) const KEYS: &[Key] = &[
    Key {
        toml: "driverName",
        env: "RDS_CSI_DRIVER_NAME",
        set: |c, v| {
            c.driver_name = v.to_owned();
            Ok(())
        },
    },
    Key {
        toml: "rds.address",
        env: "RDS_CSI_RDS_ADDRESS",
        set: |c, v| {
            c.rds.address = v.to_owned();
            Ok(())
        },
    },
    Key {
        toml: "rds.sshPort",
        env: "RDS_CSI_RDS_SSH_PORT",
        set: |c, v| {
            c.rds.ssh_port = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "rds.user",
        env: "RDS_CSI_RDS_USER",
        set: |c, v| {
            c.rds.user = v.to_owned();
            Ok(())
        },
    },
    Key {
        toml: "rds.privateKeyFile",
        env: "RDS_CSI_RDS_PRIVATE_KEY_FILE",
        set: |c, v| {
            c.rds.private_key_file = PathBuf::from(v);
            Ok(())
        },
    },
    Key {
        toml: "rds.hostKey",
        env: "RDS_CSI_RDS_HOST_KEY",
        set: |c, v| {
            c.rds.host_key = v.to_owned();
            Ok(())
        },
    },
    Key {
        toml: "rds.pool",
        env: "RDS_CSI_RDS_POOL",
        set: |c, v| {
            c.rds.pool = v.to_owned();
            Ok(())
        },
    },
    Key {
        toml: "rds.baseDir",
        env: "RDS_CSI_RDS_BASE_DIR",
        set: |c, v| {
            c.rds.base_dir = v.to_owned();
            Ok(())
        },
    },
    Key {
        toml: "rds.nqnPrefix",
        env: "RDS_CSI_RDS_NQN_PREFIX",
        set: |c, v| {
            c.rds.nqn_prefix = v.to_owned();
            Ok(())
        },
    },
    Key {
        toml: "rds.nvmeAddress",
        env: "RDS_CSI_RDS_NVME_ADDRESS",
        set: |c, v| {
            c.rds.nvme_address = v.to_owned();
            Ok(())
        },
    },
    Key {
        toml: "rds.nvmePort",
        env: "RDS_CSI_RDS_NVME_PORT",
        set: |c, v| {
            c.rds.nvme_port = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "rds.connectTimeoutMs",
        env: "RDS_CSI_RDS_CONNECT_TIMEOUT_MS",
        set: |c, v| {
            c.rds.connect_timeout_ms = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "rds.commandTimeoutMs",
        env: "RDS_CSI_RDS_COMMAND_TIMEOUT_MS",
        set: |c, v| {
            c.rds.command_timeout_ms = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "rds.copyTimeoutMs",
        env: "RDS_CSI_RDS_COPY_TIMEOUT_MS",
        set: |c, v| {
            c.rds.copy_timeout_ms = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "rds.sessions",
        env: "RDS_CSI_RDS_SESSIONS",
        set: |c, v| {
            c.rds.sessions = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "rds.breakerOpenMs",
        env: "RDS_CSI_RDS_BREAKER_OPEN_MS",
        set: |c, v| {
            c.rds.breaker_open_ms = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "rds.allowList",
        env: "RDS_CSI_RDS_ALLOW_LIST",
        set: |c, v| {
            c.rds.allow_list = v.trim().parse()?;
            Ok(())
        },
    },
    Key {
        toml: "controller.maxConcurrentCreates",
        env: "RDS_CSI_CONTROLLER_MAX_CONCURRENT_CREATES",
        set: |c, v| {
            c.controller.max_concurrent_creates = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "controller.maxVolumesPerNode",
        env: "RDS_CSI_CONTROLLER_MAX_VOLUMES_PER_NODE",
        set: |c, v| {
            c.controller.max_volumes_per_node = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "controller.snapshotMethod",
        env: "RDS_CSI_CONTROLLER_SNAPSHOT_METHOD",
        set: |c, v| {
            c.controller.snapshot_method = v.trim().parse().map_err(|e| format!("{e}"))?;
            Ok(())
        },
    },
    Key {
        toml: "node.nodeId",
        env: "RDS_CSI_NODE_NODE_ID",
        set: |c, v| {
            c.node.node_id = Some(v.to_owned());
            Ok(())
        },
    },
    Key {
        toml: "node.hostNqn",
        env: "RDS_CSI_NODE_HOST_NQN",
        set: |c, v| {
            c.node.host_nqn = Some(v.to_owned());
            Ok(())
        },
    },
    Key {
        toml: "node.fabric",
        env: "RDS_CSI_NODE_FABRIC",
        set: |c, v| {
            c.node.fabric = v.trim().parse()?;
            Ok(())
        },
    },
    Key {
        toml: "node.loopRoot",
        env: "RDS_CSI_NODE_LOOP_ROOT",
        set: |c, v| {
            c.node.loop_root = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Key {
        toml: "node.kubeletDir",
        env: "RDS_CSI_NODE_KUBELET_DIR",
        set: |c, v| {
            c.node.kubelet_dir = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Key {
        toml: "node.maxVolumes",
        env: "RDS_CSI_NODE_MAX_VOLUMES",
        set: |c, v| {
            c.node.max_volumes = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "node.topology",
        env: "RDS_CSI_NODE_TOPOLOGY",
        set: |c, v| {
            c.node.topology = v
                .split(',')
                .filter(|pair| !pair.trim().is_empty())
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .ok_or_else(|| format!("{pair:?} is not key=value"))
                })
                .collect::<Result<_, _>>()?;
            Ok(())
        },
    },
    Key {
        toml: "node.ctrlLossTmo",
        env: "RDS_CSI_NODE_CTRL_LOSS_TMO",
        set: |c, v| {
            c.node.ctrl_loss_tmo = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "node.reconnectDelay",
        env: "RDS_CSI_NODE_RECONNECT_DELAY",
        set: |c, v| {
            c.node.reconnect_delay = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "node.keepAliveTmo",
        env: "RDS_CSI_NODE_KEEP_ALIVE_TMO",
        set: |c, v| {
            c.node.keep_alive_tmo = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "node.nrIoQueues",
        env: "RDS_CSI_NODE_NR_IO_QUEUES",
        set: |c, v| {
            c.node.nr_io_queues = Some(number(v)?);
            Ok(())
        },
    },
    Key {
        toml: "metrics.listen",
        env: "RDS_CSI_METRICS_LISTEN",
        set: |c, v| {
            c.metrics.listen =
                Some(v.trim().parse().map_err(|_| {
                    "is not an IP address and port such as 0.0.0.0:9808".to_owned()
                })?);
            Ok(())
        },
    },
    Key {
        toml: "kubernetes.enabled",
        env: "RDS_CSI_KUBERNETES_ENABLED",
        set: |c, v| {
            c.kubernetes.enabled = flag(v)?;
            Ok(())
        },
    },
    Key {
        toml: "kubernetes.namespace",
        env: "RDS_CSI_KUBERNETES_NAMESPACE",
        set: |c, v| {
            c.kubernetes.namespace = v.trim().to_owned();
            Ok(())
        },
    },
    Key {
        toml: "kubernetes.lostNodeGraceSeconds",
        env: "RDS_CSI_KUBERNETES_LOST_NODE_GRACE_SECONDS",
        set: |c, v| {
            c.kubernetes.lost_node_grace_seconds = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "kubernetes.resyncSeconds",
        env: "RDS_CSI_KUBERNETES_RESYNC_SECONDS",
        set: |c, v| {
            c.kubernetes.resync_seconds = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "kubernetes.leaseDurationSeconds",
        env: "RDS_CSI_KUBERNETES_LEASE_DURATION_SECONDS",
        set: |c, v| {
            c.kubernetes.lease_duration_seconds = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "kubernetes.renewDeadlineSeconds",
        env: "RDS_CSI_KUBERNETES_RENEW_DEADLINE_SECONDS",
        set: |c, v| {
            c.kubernetes.renew_deadline_seconds = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "kubernetes.retryPeriodSeconds",
        env: "RDS_CSI_KUBERNETES_RETRY_PERIOD_SECONDS",
        set: |c, v| {
            c.kubernetes.retry_period_seconds = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "kubernetes.orphanGraceSeconds",
        env: "RDS_CSI_KUBERNETES_ORPHAN_GRACE_SECONDS",
        set: |c, v| {
            c.kubernetes.orphan_grace_seconds = number(v)?;
            Ok(())
        },
    },
    Key {
        toml: "kubernetes.deleteOrphans",
        env: "RDS_CSI_KUBERNETES_DELETE_ORPHANS",
        set: |c, v| {
            c.kubernetes.delete_orphans = flag(v)?;
            Ok(())
        },
    },
];

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn minimal() -> Config {
        Config::from_toml(&super::super::tests::minimal()).unwrap()
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut config = minimal();
        let vars = HashMap::from([
            ("RDS_CSI_RDS_ADDRESS", "fd00::5"),
            ("RDS_CSI_RDS_SSH_PORT", "2222"),
            ("RDS_CSI_RDS_COPY_TIMEOUT_MS", "7200000"),
            ("RDS_CSI_CONTROLLER_MAX_VOLUMES_PER_NODE", "7"),
            ("RDS_CSI_CONTROLLER_SNAPSHOT_METHOD", "disk-copy"),
            ("RDS_CSI_NODE_HOST_NQN", "nqn.2014-08.org.nvmexpress:uuid:1"),
            ("RDS_CSI_NODE_TOPOLOGY", "zone=a, rack=r1"),
            ("RDS_CSI_NODE_CTRL_LOSS_TMO", "-1"),
            ("RDS_CSI_METRICS_LISTEN", "[::]:9808"),
        ]);
        config
            .apply_vars(|name| vars.get(name).map(|v| v.to_string()))
            .unwrap();
        assert_eq!(config.rds.ssh_addr(), "[fd00::5]:2222");
        assert_eq!(config.rds.copy_timeout_ms, 7_200_000);
        assert_eq!(config.rds.command_timeout_ms, 30_000);
        assert_eq!(config.controller.max_volumes_per_node, 7);
        assert_eq!(
            config.controller.snapshot_method,
            crate::snapshot::Method::DiskCopy
        );
        assert_eq!(
            config.node.host_nqn.as_deref(),
            Some("nqn.2014-08.org.nvmexpress:uuid:1")
        );
        assert_eq!(
            config.node.topology.get("rack").map(String::as_str),
            Some("r1")
        );
        assert_eq!(config.node.ctrl_loss_tmo, -1);
        assert_eq!(config.metrics.listen, Some("[::]:9808".parse().unwrap()));
        config.validate().unwrap();

        let error = config
            .apply_vars(|name| (name == "RDS_CSI_RDS_SSH_PORT").then(|| "70000".to_owned()))
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("environment variable RDS_CSI_RDS_SSH_PORT=\"70000\""),
            "{error}"
        );
    }

    #[test]
    fn the_key_table_matches_the_documentation() {
        let doc = include_str!("../config.rs");
        for key in KEYS {
            let row = format!("| `{}` | `{}` |", key.toml, key.env);
            assert!(doc.contains(&row), "undocumented: {row}");
        }
        assert_eq!(doc.matches("\n//! | `").count(), KEYS.len());
    }

    #[test]
    fn the_readme_table_is_the_module_documentation() {
        let doc = include_str!("../config.rs");
        let readme = include_str!("../../../README.md");
        for row in doc.lines().filter_map(|l| l.strip_prefix("//! | `")) {
            let row = format!("| `{row}");
            assert!(
                readme.contains(&row),
                "README.md lacks or differs in: {row}"
            );
        }
    }
}

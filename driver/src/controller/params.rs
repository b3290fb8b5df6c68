//! StorageClass parameters, validated strictly.
//!
//! | parameter | value | effect |
//! |---|---|---|
//! | `fsType` | `ext4` or `xfs` | the file system the node makes; passed to the node in the volume context. An xfs volume is at least 300 MiB (mkfs.xfs's minimum): a smaller request is raised, or refused with OUT_OF_RANGE when its limit is lower |
//! | `baseDir` | one path segment of `A-Z a-z 0-9 . _ -` | the directory under the pool for this class's volume files, instead of `rds.baseDir` |
//! | `layout` | `file` (default) or `subvolume` | `subvolume` puts each volume in its own Btrfs subvolume (`<pool>/<id>/volume.img`, ignoring `baseDir`), as the `btrfs` snapshot method needs; refused on a pool that is not Btrfs |
//! | `nvmePort` | 1 to 65535 | the NVMe/TCP port the volume is exported on, instead of `rds.nvmePort` |
//! | `ctrlLossTmo` | seconds, or -1 for forever | `nvme connect --ctrl-loss-tmo`, passed to the node |
//! | `reconnectDelay` | seconds, ≥ 1 | `nvme connect --reconnect-delay`, passed to the node |
//! | `keepAliveTmo` | seconds, ≥ 1 | `nvme connect --keep-alive-tmo`, passed to the node |
//! | `nrIoQueues` | ≥ 1 | `nvme connect --nr-io-queues`, passed to the node |
//! | `migrationTimeoutSeconds` | 1 to 86400 (default 600) | how long a KubeVirt live migration of a ReadWriteMany block volume may keep it published to a second node; read from the StorageClass itself when a migration runs (never from the volume), so it holds for volumes made before it was set |
//! | `csi.storage.k8s.io/*` | any | added by the CSI sidecars (PVC name and namespace…); accepted |
//!
//! Any other parameter is refused with INVALID_ARGUMENT naming it, so a typo never silently
//! falls back to a default.

use std::collections::HashMap;
use std::num::NonZeroU16;
use std::time::Duration;

use super::capability::FS_TYPES;
pub use crate::contract::{CTRL_LOSS_TMO, FS_TYPE, KEEP_ALIVE_TMO, NR_IO_QUEUES, RECONNECT_DELAY};
use crate::rds::value::RosPath;
use crate::snapshot::Method;

pub const BASE_DIR: &str = "baseDir";
pub const NVME_PORT: &str = "nvmePort";
pub const LAYOUT: &str = "layout";
pub const MIGRATION_TIMEOUT: &str = "migrationTimeoutSeconds";
/// `migrationTimeoutSeconds` when a StorageClass does not set it.
pub const DEFAULT_MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest `migrationTimeoutSeconds`: a day.
const MAX_MIGRATION_TIMEOUT_SECONDS: u64 = 86_400;
/// The prefix of the keys the CSI sidecars add.
pub const SIDECAR_PREFIX: &str = "csi.storage.k8s.io/";

/// The parameters of one StorageClass, each checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parameters {
    pub base_dir: Option<RosPath>,
    /// `layout: subvolume`: the volume lives in its own Btrfs subvolume.
    pub in_subvolume: bool,
    pub nvme_port: Option<NonZeroU16>,
    /// `migrationTimeoutSeconds`, when set.
    pub migration_timeout: Option<Duration>,
    /// What the node needs: `fsType` and the connect tunables, values normalised.
    pub volume_context: HashMap<String, String>,
}

impl Parameters {
    /// Checks every parameter; the error names the first bad one and says what is allowed.
    pub fn parse(parameters: &HashMap<String, String>) -> Result<Parameters, String> {
        let mut parsed = Parameters::default();
        let mut keys: Vec<&String> = parameters.keys().collect();
        keys.sort();
        for key in keys {
            let value = parameters[key].as_str();
            let bad = |rule: &str| format!("StorageClass parameter {key}={value:?}: {rule}");
            match key.as_str() {
                FS_TYPE => {
                    if !FS_TYPES.contains(&value) {
                        return Err(bad(&format!("must be {}", FS_TYPES.join(" or "))));
                    }
                    parsed.context(key, value.to_owned());
                }
                BASE_DIR => {
                    let dir = RosPath::parse(value)
                        .ok()
                        .filter(|dir| !dir.as_str().contains('/'))
                        .ok_or_else(|| {
                            bad("must be one directory name of A-Z a-z 0-9 . _ - (no '/')")
                        })?;
                    parsed.base_dir = Some(dir);
                }
                LAYOUT => {
                    parsed.in_subvolume = match value {
                        "file" => false,
                        "subvolume" => true,
                        _ => return Err(bad("must be file or subvolume")),
                    };
                }
                NVME_PORT => {
                    let port = value
                        .parse::<NonZeroU16>()
                        .map_err(|_| bad("must be a port number from 1 to 65535"))?;
                    parsed.nvme_port = Some(port);
                }
                CTRL_LOSS_TMO => {
                    let seconds = value
                        .parse::<i32>()
                        .ok()
                        .filter(|&s| s == -1 || s > 0)
                        .ok_or_else(|| bad("must be a positive number of seconds, or -1"))?;
                    parsed.context(key, seconds.to_string());
                }
                RECONNECT_DELAY | KEEP_ALIVE_TMO | NR_IO_QUEUES => {
                    let number = value
                        .parse::<u32>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| bad("must be a positive whole number"))?;
                    parsed.context(key, number.to_string());
                }
                MIGRATION_TIMEOUT => {
                    let seconds = value
                        .parse::<u64>()
                        .ok()
                        .filter(|s| (1..=MAX_MIGRATION_TIMEOUT_SECONDS).contains(s))
                        .ok_or_else(|| {
                            bad(&format!(
                                "must be a whole number of seconds from 1 to \
                                 {MAX_MIGRATION_TIMEOUT_SECONDS}"
                            ))
                        })?;
                    parsed.migration_timeout = Some(Duration::from_secs(seconds));
                }
                other if other.starts_with(SIDECAR_PREFIX) => {}
                _ => {
                    return Err(format!(
                        "unknown StorageClass parameter {key:?}: the parameters are {FS_TYPE}, \
                         {BASE_DIR}, {LAYOUT}, {NVME_PORT}, {CTRL_LOSS_TMO}, {RECONNECT_DELAY}, \
                         {KEEP_ALIVE_TMO}, {NR_IO_QUEUES} and {MIGRATION_TIMEOUT}"
                    ));
                }
            }
        }
        Ok(parsed)
    }

    fn context(&mut self, key: &str, value: String) {
        self.volume_context.insert(key.to_owned(), value);
    }
}

/// The VolumeSnapshotClass parameter that picks the snapshot method.
pub const METHOD: &str = "method";

/// The snapshot method a VolumeSnapshotClass asks for (`None`: the configured one). `method` is
/// its only parameter besides the sidecars' `csi.storage.k8s.io/*` keys.
pub fn snapshot_method(parameters: &HashMap<String, String>) -> Result<Option<Method>, String> {
    let mut method = None;
    for (key, value) in parameters {
        match key.as_str() {
            METHOD => {
                method = Some(value.parse::<Method>().map_err(|e| {
                    format!("VolumeSnapshotClass parameter {METHOD}={value:?}: {e}")
                })?);
            }
            other if other.starts_with(SIDECAR_PREFIX) => {}
            _ => {
                return Err(format!(
                    "unknown VolumeSnapshotClass parameter {key:?}: the only parameter is {METHOD}"
                ));
            }
        }
    }
    Ok(method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_classes_pick_a_method_or_none() {
        let map = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(snapshot_method(&map(&[])), Ok(None));
        assert_eq!(
            snapshot_method(&map(&[
                ("method", "disk-copy"),
                ("csi.storage.k8s.io/volumesnapshot/name", "s")
            ])),
            Ok(Some(Method::DiskCopy))
        );
        let error = snapshot_method(&map(&[("method", "rsync")])).unwrap_err();
        assert!(error.contains("method=\"rsync\""), "{error}");
        let error = snapshot_method(&map(&[("Method", "copy-from")])).unwrap_err();
        assert!(
            error.contains("unknown VolumeSnapshotClass parameter"),
            "{error}"
        );
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<Parameters, String> {
        Parameters::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn no_parameters_mean_the_defaults() {
        assert_eq!(parse(&[]).unwrap(), Parameters::default());
    }

    #[test]
    fn every_parameter_is_read() {
        let parsed = parse(&[
            ("fsType", "xfs"),
            ("baseDir", "fast"),
            ("nvmePort", "4421"),
            ("layout", "subvolume"),
            ("ctrlLossTmo", "-1"),
            ("reconnectDelay", "05"),
            ("keepAliveTmo", "30"),
            ("nrIoQueues", "4"),
            ("migrationTimeoutSeconds", "120"),
            ("csi.storage.k8s.io/pvc/name", "data"),
            ("csi.storage.k8s.io/pvc/namespace", "default"),
        ])
        .unwrap();
        assert_eq!(parsed.base_dir.unwrap().as_str(), "fast");
        assert_eq!(parsed.nvme_port.unwrap().get(), 4421);
        assert!(parsed.in_subvolume);
        assert_eq!(parsed.migration_timeout, Some(Duration::from_secs(120)));
        assert!(!parse(&[("layout", "file")]).unwrap().in_subvolume);
        let context: Vec<(&str, &str)> = {
            let mut pairs: Vec<_> = parsed
                .volume_context
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            pairs.sort();
            pairs
        };
        assert_eq!(
            context,
            [
                ("ctrlLossTmo", "-1"),
                ("fsType", "xfs"),
                ("keepAliveTmo", "30"),
                ("nrIoQueues", "4"),
                ("reconnectDelay", "5"),
            ]
        );
    }

    #[test]
    fn bad_values_and_unknown_keys_are_named() {
        for (key, value, says) in [
            ("fsType", "zfs", "must be ext4 or xfs"),
            ("baseDir", "a/b", "one directory name"),
            ("baseDir", "..", "one directory name"),
            ("baseDir", "", "one directory name"),
            ("layout", "btrfs", "file or subvolume"),
            ("nvmePort", "0", "1 to 65535"),
            ("nvmePort", "65536", "1 to 65535"),
            ("ctrlLossTmo", "0", "or -1"),
            ("ctrlLossTmo", "-2", "or -1"),
            ("reconnectDelay", "-1", "positive whole number"),
            ("nrIoQueues", "1.5", "positive whole number"),
            ("keepAliveTmo", "", "positive whole number"),
            ("migrationTimeoutSeconds", "0", "from 1 to 86400"),
            ("migrationTimeoutSeconds", "86401", "from 1 to 86400"),
            ("migrationTimeoutSeconds", "5m", "from 1 to 86400"),
            (
                "fstype",
                "ext4",
                "unknown StorageClass parameter \"fstype\"",
            ),
            ("csi.storage.k8s.io", "x", "unknown StorageClass parameter"),
        ] {
            let error = parse(&[(key, value)]).unwrap_err();
            assert!(error.contains(says), "{key}={value}: {error}");
            assert!(error.contains(key), "{error}");
        }
    }
}

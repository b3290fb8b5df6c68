//! What the suites run against, read from the environment and an optional TOML file, never from code:
//! `RDS_E2E_TARGET=sim|qemu|cluster|kind|hardware` (default `sim`),
//! `RDS_E2E_CONFIG=/path/to/file.toml` (default none), for `kind`, `KIND_CLUSTER` (default
//! `rds-csi`, as ci/kind.sh names its cluster), and for the in-process simulator
//! `RDS_E2E_SIM_QUIRKS=NAME=POSITION,…` (rds-sim's switches; default every switch's first position). The file's format is documented in `e2e/README.md` and
//! `e2e/hardware.example.toml`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rds_sim::engine::quirks::Quirks;
use rds_sim::store::PoolFs;
use serde::Deserialize;

/// Names the target.
pub const TARGET_ENV: &str = "RDS_E2E_TARGET";
/// Names the TOML file with addresses and credentials.
pub const CONFIG_ENV: &str = "RDS_E2E_CONFIG";
/// Names the kind cluster the `kind` target reaches (as `kind --name` and ci/kind.sh take it).
pub const KIND_CLUSTER_ENV: &str = "KIND_CLUSTER";
/// Sets rds-sim's switches for the open RouterOS questions: `NAME=POSITION` pairs separated by
/// commas, as `rds-sim --quirk` takes them one at a time.
pub const SIM_QUIRKS_ENV: &str = "RDS_E2E_SIM_QUIRKS";
/// ci/kind.sh's cluster when `KIND_CLUSTER` is unset.
const DEFAULT_KIND_CLUSTER: &str = "rds-csi";

const GIB: u64 = 1 << 30;

/// Where the driver's RDS lives and how the suites reach the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// rds-sim and the driver, both in-process.
    Sim,
    /// The node plugin inside a QEMU guest with a real kernel.
    Qemu,
    /// A real control plane (etcd, kube-apiserver, kube-controller-manager), the chart installed
    /// with helm, its pods as processes and a kubelet stand-in per node: the Kubernetes suites.
    Cluster,
    /// The chart in a kind cluster that ci/kind.sh made, with rds-sim as a Deployment in it:
    /// the Kubernetes suites' shared flows, reached through the kubeconfig context
    /// `kind-$KIND_CLUSTER`.
    Kind,
    /// The driver in-process against a real RDS.
    Hardware,
}

impl TargetKind {
    const ALL: [TargetKind; 5] = [
        Self::Sim,
        Self::Qemu,
        Self::Cluster,
        Self::Kind,
        Self::Hardware,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::Qemu => "qemu",
            Self::Cluster => "cluster",
            Self::Kind => "kind",
            Self::Hardware => "hardware",
        }
    }

    /// The kind named by `RDS_E2E_TARGET`, `sim` when it is unset or empty.
    pub fn from_env() -> Result<TargetKind, ConfigError> {
        match std::env::var(TARGET_ENV) {
            Ok(text) if !text.trim().is_empty() => text.parse(),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(Self::Sim),
            Err(std::env::VarError::NotUnicode(text)) => Err(ConfigError::UnknownTarget(
                text.to_string_lossy().into_owned(),
            )),
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TargetKind {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| ConfigError::UnknownTarget(text.to_owned()))
    }
}

/// Why the e2e configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{TARGET_ENV}={0:?} names no target; use one of sim, qemu, kind, hardware")]
    UnknownTarget(String),
    #[error("cannot read the e2e configuration {} (named by {CONFIG_ENV}): {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the e2e configuration {} is not valid (see e2e/README.md and e2e/hardware.example.toml): {source}",
        path.display()
    )]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{field} = {value:?} in {} is not a size; write e.g. \"1GiB\", \"100GiB\" or bytes: {reason}", path.display())]
    Size {
        path: PathBuf,
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "{TARGET_ENV}=hardware needs a [hardware] section in the file named by {CONFIG_ENV}{}; \
         copy e2e/hardware.example.toml and fill in the RDS address, user, key and pinned host key",
        .0.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_else(|| " (it is unset)".to_owned())
    )]
    MissingHardware(Option<PathBuf>),
    #[error(
        "{KIND_CLUSTER_ENV}={0:?} is not a kind cluster name: use lower-case letters, digits, '-' \
         and '.', as `kind create cluster --name` does (ci/kind.sh's default is {DEFAULT_KIND_CLUSTER})"
    )]
    KindCluster(String),
    #[error("{SIM_QUIRKS_ENV}: {0}; see docs/simulator.md, \"Switches\"")]
    Quirk(String),
}

/// The settings every target takes, from the environment and the optional file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: TargetKind,
    /// The file named by `RDS_E2E_CONFIG`, if any.
    pub file: Option<PathBuf>,
    pub sim: SimSettings,
    pub hardware: Option<HardwareSettings>,
    pub sanity: SanitySettings,
    pub kind: KindSettings,
}

impl Settings {
    /// Reads `RDS_E2E_TARGET` and the file named by `RDS_E2E_CONFIG`.
    pub fn from_env() -> Result<Settings, ConfigError> {
        let target = TargetKind::from_env()?;
        let file = std::env::var_os(CONFIG_ENV)
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        let kind = std::env::var(KIND_CLUSTER_ENV).ok();
        let mut settings = Settings {
            kind: KindSettings::named(kind.as_deref())?,
            ..Settings::load(target, file.as_deref())?
        };
        let quirks = std::env::var(SIM_QUIRKS_ENV).unwrap_or_default();
        for pair in quirks.split(',').filter(|pair| !pair.trim().is_empty()) {
            settings
                .sim
                .quirks
                .set_pair(pair)
                .map_err(ConfigError::Quirk)?;
        }
        Ok(settings)
    }

    /// Settings for `target`, from `file` when given, defaults otherwise.
    pub fn load(target: TargetKind, file: Option<&Path>) -> Result<Settings, ConfigError> {
        let parsed = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?
            }
            None => FileConfig::default(),
        };
        let origin = file.map(Path::to_owned).unwrap_or_default();
        let settings = Settings {
            target,
            file: file.map(Path::to_owned),
            sim: parsed.sim.resolve(&origin)?,
            hardware: parsed.hardware,
            sanity: parsed.sanity.resolve(&origin)?,
            kind: KindSettings::default(),
        };
        if target == TargetKind::Hardware && settings.hardware.is_none() {
            return Err(ConfigError::MissingHardware(settings.file));
        }
        Ok(settings)
    }

    /// Settings for an in-process simulator with every default, whatever the environment says.
    pub fn sim_defaults() -> Settings {
        Settings {
            target: TargetKind::Sim,
            file: None,
            sim: SimSettings::default(),
            hardware: None,
            sanity: SanitySettings::default(),
            kind: KindSettings::default(),
        }
    }

    /// [`Settings::sim_defaults`] with the pool snapshot `method` needs: Btrfs for `btrfs`.
    pub fn sim_for(method: rds_csi::snapshot::Method) -> Settings {
        let mut settings = Settings::sim_defaults();
        if method == rds_csi::snapshot::Method::Btrfs {
            settings.sim.pool_fs = PoolFs::Btrfs;
        }
        settings
    }
}

/// The in-process simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSettings {
    /// Size of the simulated pool disk, in bytes (backing files are sparse).
    pub pool_size: u64,
    /// Seed of the simulator's fault randomness, printed with failures.
    pub seed: u64,
    /// The controller's attach limit per node; small, so the attach-limit case stays quick.
    pub max_volumes_per_node: u64,
    /// The pool's file system (`sim.pool-fs`, `xfs` or `btrfs`): the `btrfs` snapshot method
    /// needs Btrfs.
    pub pool_fs: PoolFs,
    /// The answers to the open RouterOS questions (`RDS_E2E_SIM_QUIRKS`).
    pub quirks: Quirks,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            pool_size: 100 * GIB,
            seed: 1,
            max_volumes_per_node: 4,
            pool_fs: PoolFs::Xfs,
            quirks: Quirks::default(),
        }
    }
}

/// The kind cluster of the `kind` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSettings {
    /// The cluster's name (`KIND_CLUSTER`, default `rds-csi`).
    pub cluster: String,
}

impl Default for KindSettings {
    fn default() -> Self {
        Self {
            cluster: DEFAULT_KIND_CLUSTER.to_owned(),
        }
    }
}

impl KindSettings {
    /// The cluster `name` names (`KIND_CLUSTER`'s value), the default when it is unset or
    /// empty.
    pub fn named(name: Option<&str>) -> Result<KindSettings, ConfigError> {
        let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
            return Ok(KindSettings::default());
        };
        let valid = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid || name.starts_with(['-', '.']) {
            return Err(ConfigError::KindCluster(name.to_owned()));
        }
        Ok(KindSettings {
            cluster: name.to_owned(),
        })
    }

    /// The kubeconfig context kind writes for the cluster.
    pub fn context(&self) -> String {
        format!("kind-{}", self.cluster)
    }
}

/// A real RDS. The driver runs in-process with `driver` as its configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HardwareSettings {
    /// The node ID (a host NQN) that publish cases allow on their test volumes.
    pub node_id: String,
    /// rds-csi's own configuration, with the same keys as its configuration file.
    pub driver: toml::Table,
}

/// What the sanity cases ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanitySettings {
    /// Capacity of the volumes the cases create (csi-sanity's `--csi.testvolumesize`).
    pub volume_size: u64,
    /// StorageClass parameters every created volume carries (`--csi.testvolumeparameters`).
    pub volume_parameters: BTreeMap<String, String>,
    /// VolumeAttributeClass parameters for the ModifyVolume cases
    /// (`--csi.testvolumemutableparameters`).
    pub volume_mutable_parameters: BTreeMap<String, String>,
}

impl Default for SanitySettings {
    fn default() -> Self {
        Self {
            volume_size: GIB,
            volume_parameters: BTreeMap::new(),
            volume_mutable_parameters: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    sim: SimFile,
    hardware: Option<HardwareSettings>,
    #[serde(default)]
    sanity: SanityFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct SimFile {
    pool_size: Option<String>,
    seed: Option<u64>,
    max_volumes_per_node: Option<u64>,
    pool_fs: Option<PoolFs>,
}

impl SimFile {
    fn resolve(self, origin: &Path) -> Result<SimSettings, ConfigError> {
        let defaults = SimSettings::default();
        Ok(SimSettings {
            pool_size: match self.pool_size {
                Some(text) => size(origin, "sim.pool-size", &text)?,
                None => defaults.pool_size,
            },
            seed: self.seed.unwrap_or(defaults.seed),
            max_volumes_per_node: self
                .max_volumes_per_node
                .unwrap_or(defaults.max_volumes_per_node),
            pool_fs: self.pool_fs.unwrap_or(defaults.pool_fs),
            quirks: defaults.quirks,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct SanityFile {
    volume_size: Option<String>,
    #[serde(default)]
    volume_parameters: BTreeMap<String, String>,
    #[serde(default)]
    volume_mutable_parameters: BTreeMap<String, String>,
}

impl SanityFile {
    fn resolve(self, origin: &Path) -> Result<SanitySettings, ConfigError> {
        Ok(SanitySettings {
            volume_size: match self.volume_size {
                Some(text) => size(origin, "sanity.volume-size", &text)?,
                None => SanitySettings::default().volume_size,
            },
            volume_parameters: self.volume_parameters,
            volume_mutable_parameters: self.volume_mutable_parameters,
        })
    }
}

fn size(origin: &Path, field: &'static str, text: &str) -> Result<u64, ConfigError> {
    rds_sim::server::parse_size(text).map_err(|reason| ConfigError::Size {
        path: origin.to_owned(),
        field,
        value: text.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn target_names_parse_case_insensitively_and_unknown_ones_are_named() {
        assert_eq!("sim".parse::<TargetKind>().unwrap(), TargetKind::Sim);
        assert_eq!(
            " Hardware ".parse::<TargetKind>().unwrap(),
            TargetKind::Hardware
        );
        let message = "vm".parse::<TargetKind>().unwrap_err().to_string();
        assert!(message.contains("\"vm\""), "{message}");
        assert!(message.contains("sim, qemu, kind, hardware"), "{message}");
    }

    #[test]
    fn the_kind_cluster_defaults_to_ci_kind_shs_and_odd_names_are_refused() {
        let default = KindSettings::named(None).unwrap();
        assert_eq!(default.cluster, "rds-csi");
        assert_eq!(default.context(), "kind-rds-csi");
        assert_eq!(KindSettings::named(Some(" ")).unwrap(), default);
        let named = KindSettings::named(Some("ci-7.b")).unwrap();
        assert_eq!(named.context(), "kind-ci-7.b");
        for bad in ["Upper", "a b", "-x", "a/b", "a;rm"] {
            let message = KindSettings::named(Some(bad)).unwrap_err().to_string();
            assert!(message.contains("KIND_CLUSTER"), "{message}");
            assert!(message.contains(&format!("{bad:?}")), "{message}");
        }
    }

    #[test]
    fn no_file_gives_the_sim_defaults() {
        let settings = Settings::load(TargetKind::Sim, None).unwrap();
        assert_eq!(settings.sim, SimSettings::default());
        assert_eq!(settings.sanity, SanitySettings::default());
        assert!(settings.hardware.is_none());
    }

    #[test]
    fn file_overrides_sizes_and_carries_the_driver_table() {
        let file = write(
            r#"
            [sim]
            pool-size = "10GiB"
            max-volumes-per-node = 2
            pool-fs = "btrfs"
            [sanity]
            volume-size = "64MiB"
            volume-parameters = { fsType = "xfs" }
            [hardware]
            node-id = "nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"
            [hardware.driver.rds]
            address = "10.0.0.5"
            "#,
        );
        let settings = Settings::load(TargetKind::Hardware, Some(file.path())).unwrap();
        assert_eq!(settings.sim.pool_size, 10 * GIB);
        assert_eq!(settings.sim.max_volumes_per_node, 2);
        assert_eq!(settings.sim.seed, 1);
        assert_eq!(settings.sim.pool_fs, PoolFs::Btrfs);
        assert_eq!(settings.sanity.volume_size, 64 << 20);
        assert_eq!(settings.sanity.volume_parameters["fsType"], "xfs");
        let hardware = settings.hardware.unwrap();
        assert_eq!(hardware.driver["rds"]["address"].as_str(), Some("10.0.0.5"));
    }

    #[test]
    fn the_hardware_example_is_a_valid_file_and_driver_configuration() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("hardware.example.toml");
        let settings = Settings::load(TargetKind::Hardware, Some(&example)).unwrap();
        let hardware = settings.hardware.unwrap();
        let config = rds_csi::config::Config::from_toml(&hardware.driver.to_string()).unwrap();
        assert_eq!(config.rds.address, "10.0.0.5");
        assert_eq!(config.controller.max_volumes_per_node, 4);
        // The node reports the controller's attach limit, and publishes under the node ID.
        assert_eq!(config.node.max_volumes, 4);
        assert_eq!(
            config.node.host_nqn.as_deref(),
            Some(hardware.node_id.as_str())
        );
        // What `rds-csi doctor --config hardware.toml` reads and checks.
        let doctor = rds_csi::config::Config::load_driver_or_hardware(&example).unwrap();
        doctor.validate().unwrap();
        assert_eq!(doctor.rds.address, config.rds.address);
        assert_eq!(settings.sanity.volume_size, GIB);
    }

    #[test]
    fn hardware_without_its_section_says_what_to_write() {
        let file = write("[sim]\nseed = 3\n");
        let message = Settings::load(TargetKind::Hardware, Some(file.path()))
            .unwrap_err()
            .to_string();
        assert!(message.contains("[hardware]"), "{message}");
        assert!(message.contains("hardware.example.toml"), "{message}");
        let message = Settings::load(TargetKind::Hardware, None)
            .unwrap_err()
            .to_string();
        assert!(message.contains("it is unset"), "{message}");
    }

    #[test]
    fn unknown_keys_and_bad_sizes_are_rejected_with_the_file_named() {
        let file = write("[sim]\npool = \"x\"\n");
        let message = Settings::load(TargetKind::Sim, Some(file.path()))
            .unwrap_err()
            .to_string();
        assert!(message.contains("unknown field"), "{message}");
        assert!(
            message.contains(&file.path().display().to_string()),
            "{message}"
        );

        let file = write("[sanity]\nvolume-size = \"1PiB\"\n");
        let message = Settings::load(TargetKind::Sim, Some(file.path()))
            .unwrap_err()
            .to_string();
        assert!(message.contains("sanity.volume-size"), "{message}");
    }
}

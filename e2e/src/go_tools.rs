//! The upstream Kubernetes tools that `ci/go-tools.sh` builds from their Go modules (csi-sanity,
//! etcd, kube-apiserver, kube-controller-manager, the kubernetes-csi sidecars) and the snapshot
//! CRDs. The script is the one place that knows their versions; this module asks it where they
//! are (`--print`), so a test never builds anything itself and never runs a stale version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the tools are: each tool's directory, by the names `ci/go-tools.sh --print` gives.
#[derive(Debug, Clone)]
pub struct GoTools {
    dirs: BTreeMap<String, PathBuf>,
}

/// Why the tools cannot be used here.
#[derive(Debug, thiserror::Error)]
pub enum GoToolsError {
    /// Not built on this machine: outside CI a suite may skip, saying this.
    #[error("{0}")]
    Missing(String),
    #[error("running ci/go-tools.sh --print: {0}")]
    Script(#[from] std::io::Error),
    #[error("ci/go-tools.sh --print named no {0}")]
    Unknown(String),
}

impl GoToolsError {
    /// The reason a test may skip instead of failing: the tools are not built and `CI` is not
    /// `true`. In CI the test command has built them, so their absence is a failure.
    pub fn skip_reason(&self) -> Option<String> {
        match self {
            GoToolsError::Missing(why) if std::env::var("CI").as_deref() != Ok("true") => {
                Some(format!(
                    "the upstream Kubernetes tools are not built (CI=true makes this fatal; `bash ci/go-tools.sh` builds them): {why}"
                ))
            }
            _ => None,
        }
    }
}

/// The workspace root, where `ci/` lives.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

impl GoTools {
    /// Asks `ci/go-tools.sh --print` where every tool is.
    pub fn locate() -> Result<GoTools, GoToolsError> {
        let root = workspace_root();
        let output = Command::new("bash")
            .arg(root.join("ci/go-tools.sh"))
            .arg("--print")
            .current_dir(&root)
            .output()?;
        if !output.status.success() {
            return Err(GoToolsError::Missing(
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ));
        }
        let dirs = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, dir)| (name.to_owned(), PathBuf::from(dir)))
            .collect();
        Ok(GoTools { dirs })
    }

    /// The directory of `tool` (a name `ci/go-tools.sh` prints: `kubernetes`, `csi-provisioner`,
    /// `snapshot-crds` …).
    pub fn dir(&self, tool: &str) -> Result<&Path, GoToolsError> {
        self.dirs
            .get(tool)
            .map(PathBuf::as_path)
            .ok_or_else(|| GoToolsError::Unknown(tool.to_owned()))
    }

    /// The executable `binary` that `tool` built (`kubernetes` builds `kube-apiserver` and
    /// `kube-controller-manager`; most tools build one binary of their own name).
    pub fn binary(&self, tool: &str, binary: &str) -> Result<PathBuf, GoToolsError> {
        Ok(self.dir(tool)?.join(binary))
    }
}

//! The chart installed for real: `helm install|upgrade|uninstall` of `charts/rds-csi` into a
//! cluster, the chart values that reach a [`SimRds`], and `kubectl apply` of the CRDs the chart's
//! optional parts need (VolumeSnapshot, ServiceMonitor). helm and kubectl are the binaries
//! `ci/chart.sh --tools` fetches, the same ones that lint and render the chart.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Map, Value};

use crate::go_tools::workspace_root;
use crate::sim_rds::SimRds;

/// `ci/chart.sh`'s exit status when it could not fetch its tools.
const TOOLS_UNAVAILABLE: i32 = 3;
/// How long `kubectl wait` gives applied CRDs to become Established: the API server installs a
/// CRD's REST endpoint asynchronously, and a custom object applied before that is refused.
const ESTABLISHED_TIMEOUT: &str = "120s";

/// Why helm or kubectl could not be used, or what they refused.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// `ci/chart.sh --tools` could not fetch the tools (no npm, no network): outside CI a suite
    /// may skip, saying this.
    #[error("ci/chart.sh --tools could not fetch helm and kubectl: {0}")]
    Unavailable(String),
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// The command ran and failed; `stderr` says why (for helm, the API server's refusal).
    #[error("`{command}` failed ({status}):\n{stderr}{stdout}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stdout: String,
        stderr: String,
    },
    #[error("writing the chart values to {path}: {source}")]
    Values {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl HelmError {
    /// The reason a test may skip instead of failing: the tools could not be fetched and `CI` is
    /// not `true`. In CI the tools must be there, so their absence is a failure.
    pub fn skip_reason(&self) -> Option<String> {
        match self {
            HelmError::Unavailable(why) if std::env::var("CI").as_deref() != Ok("true") => Some(
                format!("helm and kubectl are unavailable here (CI=true makes this fatal): {why}"),
            ),
            _ => None,
        }
    }
}

/// The chart's values for one install: a JSON object (helm reads values files as YAML, of which
/// JSON is a subset) and the values that come from files (`--set-file`), which keeps the SSH key
/// out of the values file and the command line.
#[derive(Debug, Clone, Default)]
pub struct ChartValues {
    values: Map<String, Value>,
    files: Vec<(String, PathBuf)>,
}

impl ChartValues {
    /// The values of an install whose controller manages `sim` over SSH (its host key pinned, its
    /// client key as `sshKey.privateKey`) and whose nodes reach its NVMe/TCP target at
    /// `nvme_address`, with snapshots (sidecar and VolumeSnapshotClass) on.
    pub fn for_sim(sim: &SimRds, nvme_address: &str) -> ChartValues {
        let mut values = ChartValues::default();
        for (key, value) in sim.rds_config(nvme_address) {
            // The chart mounts the key itself and sets privateKeyFile to where it is mounted.
            if key == "privateKeyFile" {
                if let Some(file) = value.as_str() {
                    values.set_file("sshKey.privateKey", Path::new(file));
                }
                continue;
            }
            values.set(&format!("config.rds.{key}"), toml_to_json(value));
        }
        values.set("snapshots.enabled", true);
        values
    }

    /// Sets the value at the dotted path `key` (`snapshotSchedule.schedule`), making the maps on
    /// the way.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut ChartValues {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().expect("split yields at least one part");
        let mut map = &mut self.values;
        for part in parts {
            let entry = map.entry(part).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            map = entry.as_object_mut().expect("made an object above");
        }
        map.insert(last.to_owned(), value.into());
        self
    }

    /// Sets `key` to the contents of `file` (`--set-file key=file`).
    pub fn set_file(&mut self, key: &str, file: &Path) -> &mut ChartValues {
        self.files.retain(|(k, _)| k != key);
        self.files.push((key.to_owned(), file.to_path_buf()));
        self
    }

    /// The values as one JSON object (without the `--set-file` ones).
    pub fn as_json(&self) -> &Map<String, Value> {
        &self.values
    }

    /// helm's arguments for these values: the values written to `file`, then the `--set-file`s.
    fn args(&self, file: &Path) -> Result<Vec<String>, HelmError> {
        let text = serde_json::to_string_pretty(&self.values).expect("JSON values serialize");
        std::fs::write(file, text).map_err(|source| HelmError::Values {
            path: file.to_path_buf(),
            source,
        })?;
        let mut args = vec!["--values".to_owned(), file.display().to_string()];
        for (key, path) in &self.files {
            args.push("--set-file".to_owned());
            args.push(format!("{key}={}", path.display()));
        }
        Ok(args)
    }
}

fn toml_to_json(value: toml::Value) -> Value {
    serde_json::to_value(value).expect("a TOML value is JSON")
}

/// The helm and kubectl binaries, and the chart.
#[derive(Debug, Clone)]
pub struct Helm {
    helm: PathBuf,
    kubectl: PathBuf,
    chart: PathBuf,
}

impl Helm {
    /// Asks `ci/chart.sh --tools` for helm and kubectl (it fetches them on first use).
    pub fn locate() -> Result<Helm, HelmError> {
        let root = workspace_root();
        let output = Command::new("bash")
            .arg(root.join("ci/chart.sh"))
            .arg("--tools")
            .current_dir(&root)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| HelmError::Spawn {
                program: "bash ci/chart.sh --tools".into(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        let tool = |name: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .map(PathBuf::from)
        };
        match (output.status.code(), tool("helm"), tool("kubectl")) {
            (Some(0), Some(helm), Some(kubectl)) => Ok(Helm {
                helm,
                kubectl,
                chart: root.join("charts/rds-csi"),
            }),
            (Some(TOOLS_UNAVAILABLE), ..) => Err(HelmError::Unavailable(stderr)),
            _ => Err(HelmError::Failed {
                command: "bash ci/chart.sh --tools".into(),
                status: output.status,
                stdout: stdout.into_owned(),
                stderr,
            }),
        }
    }

    pub fn helm_binary(&self) -> &Path {
        &self.helm
    }

    pub fn kubectl_binary(&self) -> &Path {
        &self.kubectl
    }

    /// `helm install` of the chart as `release` into `namespace` (created when missing). The
    /// values file is written next to the kubeconfig. Returns helm's output.
    pub fn install(
        &self,
        kubeconfig: &Path,
        release: &str,
        namespace: &str,
        values: &ChartValues,
    ) -> Result<String, HelmError> {
        self.install_or_upgrade("install", kubeconfig, release, namespace, values)
    }

    /// `helm upgrade` of `release` to the chart with `values` (all of them: nothing is reused
    /// from the previous release).
    pub fn upgrade(
        &self,
        kubeconfig: &Path,
        release: &str,
        namespace: &str,
        values: &ChartValues,
    ) -> Result<String, HelmError> {
        self.install_or_upgrade("upgrade", kubeconfig, release, namespace, values)
    }

    /// `helm uninstall` of `release`, waiting until its objects are deleted, and with them what
    /// their controllers made (ReplicaSets, Pods, Jobs): the deletion cascades in the foreground,
    /// so an object is gone only after its dependents.
    pub fn uninstall(
        &self,
        kubeconfig: &Path,
        release: &str,
        namespace: &str,
    ) -> Result<String, HelmError> {
        let args = [
            "uninstall",
            release,
            "--namespace",
            namespace,
            "--cascade",
            "foreground",
            "--wait",
            "--timeout",
            "120s",
        ];
        run(&self.helm, kubeconfig, args.map(str::to_owned))
    }

    fn install_or_upgrade(
        &self,
        verb: &str,
        kubeconfig: &Path,
        release: &str,
        namespace: &str,
        values: &ChartValues,
    ) -> Result<String, HelmError> {
        let file = kubeconfig.with_file_name(format!("{release}-{verb}-values.json"));
        let mut args = vec![
            verb.to_owned(),
            release.to_owned(),
            self.chart.display().to_string(),
            "--namespace".to_owned(),
            namespace.to_owned(),
        ];
        if verb == "install" {
            args.push("--create-namespace".to_owned());
        }
        // No --wait: the cluster target has no scheduler and no kubelet, so the chart's pods
        // never run. What the test checks is that the API server accepts every object.
        args.extend(values.args(&file)?);
        run(&self.helm, kubeconfig, args)
    }

    /// The manifest helm applied for `release` (`helm get manifest`): every object of the
    /// release, as YAML documents.
    pub fn manifest(
        &self,
        kubeconfig: &Path,
        release: &str,
        namespace: &str,
    ) -> Result<String, HelmError> {
        let args = ["get", "manifest", release, "--namespace", namespace];
        run(&self.helm, kubeconfig, args.map(str::to_owned))
    }

    /// `kubectl` with `args` against the cluster of `kubeconfig`; returns its output.
    pub fn kubectl<I, S>(&self, kubeconfig: &Path, args: I) -> Result<String, HelmError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        run(&self.kubectl, kubeconfig, args.into_iter().map(Into::into))
    }

    /// Applies the CRDs in `path` (a file or a directory, e.g. `snapshot-crds` of `GoTools`)
    /// server-side and waits until the API server serves every one (Established). Returns their
    /// names (`customresourcedefinition.apiextensions.k8s.io/<name>`).
    pub fn apply_crds(&self, kubeconfig: &Path, path: &Path) -> Result<Vec<String>, HelmError> {
        let path = path.display().to_string();
        let applied = self.kubectl(
            kubeconfig,
            ["apply", "--server-side", "-f", &path, "-o", "name"],
        )?;
        let names: Vec<String> = applied.lines().map(str::to_owned).collect();
        let mut wait = vec![
            "wait".to_owned(),
            "--for=condition=Established".to_owned(),
            format!("--timeout={ESTABLISHED_TIMEOUT}"),
        ];
        wait.extend(names.iter().cloned());
        self.kubectl(kubeconfig, wait)?;
        Ok(names)
    }
}

/// Runs `program` with `--kubeconfig` and `args`; its stdout, or a [`HelmError::Failed`] that
/// carries the whole command and what it printed.
fn run(
    program: &Path,
    kubeconfig: &Path,
    args: impl IntoIterator<Item = String>,
) -> Result<String, HelmError> {
    let mut all: Vec<String> = args.into_iter().collect();
    all.push(format!("--kubeconfig={}", kubeconfig.display()));
    let output: Output = Command::new(program)
        .args(&all)
        .stdin(Stdio::null())
        // helm keeps its cache and repository config under HOME; nothing here needs them, but a
        // missing HOME must not fail the command.
        .env("HELM_CACHE_HOME", kubeconfig.with_file_name("helm-cache"))
        .env("HELM_CONFIG_HOME", kubeconfig.with_file_name("helm-config"))
        .env("HELM_DATA_HOME", kubeconfig.with_file_name("helm-data"))
        .output()
        .map_err(|source| HelmError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    Err(HelmError::Failed {
        command: format!("{} {}", program.display(), all.join(" ")),
        status: output.status,
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

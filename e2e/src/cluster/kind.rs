//! The `kind` target: the chart in a kind cluster that `ci/kind.sh` made and installed (two
//! workers, the snapshot CRDs and controller, rds-sim as a Deployment, the chart pointed at it).
//! The suites reach it as a user does: the kubeconfig context `kind-<name>` for the API, `kubectl
//! exec` in a flow's pod for its I/O, the API server's service proxy for rds-sim's control API,
//! and `docker exec` in a node's container for what the node has mounted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DynamicObject, ListParams};
use kube::config::KubeConfigOptions;
use kube::{Api, Client};
use tokio::io::AsyncWriteExt;

use super::kubelet::{PATTERN_FILE, check_pattern};
use super::mountinfo;
use super::objects::{self, DEVICE_PATH, MOUNT_PATH, NAMESPACE, POD_CONTAINER};
use super::rds_state::RdsContents;
use super::target::{NAMESPACE as CHART_NAMESPACE, RELEASE};
use crate::config::KindSettings;

/// Where kubelet keeps its volumes on a kind node.
const KUBELET_DIR: &str = "/var/lib/kubelet";
/// rds-sim's namespace and its control API through the API server's service proxy
/// (ci/kind/rds-sim.yaml: the Service `rds-sim`, port `control`).
const RDS_SIM_NAMESPACE: &str = "rds-sim";
const RDS_SIM_STATE: &str = "/api/v1/namespaces/rds-sim/services/rds-sim:control/proxy/state";
/// How long one `kubectl exec` or `docker exec` may take: a megabyte over the API server.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// What `stat -c %F` says of a block device.
const BLOCK_DEVICE: &str = "block special file";

/// A kind cluster ci/kind.sh installed, reached from this host.
pub struct KindCluster {
    context: String,
    client: Client,
    kubectl: PathBuf,
    /// Its two worker nodes, by name (`<name>-worker`, `<name>-worker2`).
    workers: [String; 2],
    /// The restart count of every container of the chart and of rds-sim when the trial began.
    restarts: BTreeMap<String, i32>,
}

impl KindCluster {
    /// Connects to the cluster `settings` names and checks that ci/kind.sh's installation is
    /// there and ready, and that no claim of an earlier run is left in the suites' namespace.
    pub async fn connect(settings: &KindSettings) -> anyhow::Result<KindCluster> {
        let context = settings.context();
        let rerun = format!(
            "make it with `KEEP=1 KIND_CLUSTER={} bash ci/kind.sh`",
            settings.cluster
        );
        let options = KubeConfigOptions {
            context: Some(context.clone()),
            ..Default::default()
        };
        let config = kube::Config::from_kubeconfig(&options)
            .await
            .with_context(|| {
                format!("no kubeconfig context {context} ($KUBECONFIG or ~/.kube/config): {rerun}")
            })?;
        let client = Client::try_from(config).context("a client for the kind cluster")?;
        let kubectl = super::helm::Helm::locate()?.kubectl_binary().to_path_buf();
        ready(&client, &rerun).await?;
        let workers = workers(&client).await?;
        let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await?;
        let left: Vec<_> = claims
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        anyhow::ensure!(
            left.is_empty(),
            "claims of an earlier run are left in namespace {NAMESPACE} of {context}: {left:?}; \
             delete them (`kubectl --context {context} delete pod,volumesnapshot,pvc --all`)"
        );
        let restarts = restarts(&client).await?;
        Ok(KindCluster {
            context,
            client,
            kubectl,
            workers,
            restarts,
        })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Its two worker nodes.
    pub fn nodes(&self) -> [&str; 2] {
        [&self.workers[0], &self.workers[1]]
    }

    /// Writes the pattern of `seed` into pod `pod`'s claim: its bytes through `kubectl exec`'s
    /// stdin into the file on the mounted volume, or onto the device, then `sync`.
    pub async fn write_pattern(
        &self,
        pod: &str,
        block: bool,
        seed: u64,
        len: usize,
    ) -> anyhow::Result<()> {
        let data = super::kubelet::pattern(seed, len);
        self.exec(pod, &write_command(block), Some(data)).await?;
        Ok(())
    }

    /// Reads `len` bytes of pod `pod`'s claim back through `kubectl exec` and fails unless they
    /// are the pattern of `seed`.
    pub async fn read_pattern(
        &self,
        pod: &str,
        block: bool,
        seed: u64,
        len: usize,
    ) -> anyhow::Result<()> {
        let data = self.exec(pod, &read_command(block, len), None).await?;
        let what = format!("{} in pod {pod}", pattern_path(block));
        anyhow::ensure!(
            data.len() == len,
            "{what}: read {} bytes, wrote {len}",
            data.len()
        );
        check_pattern(&data, seed, &what)
    }

    /// The size of the file system mounted in pod `pod`, as statfs tells it there.
    pub async fn filesystem_bytes(&self, pod: &str) -> anyhow::Result<u64> {
        let out = self.exec(pod, &statfs_command(), None).await?;
        parse_statfs(&String::from_utf8_lossy(&out))
    }

    /// Whether pod `pod`'s device is a block device.
    pub async fn is_block_device(&self, pod: &str) -> anyhow::Result<bool> {
        let command = ["stat", "-c", "%F", DEVICE_PATH].map(str::to_owned);
        let out = self.exec(pod, &command, None).await?;
        Ok(String::from_utf8_lossy(&out).trim() == BLOCK_DEVICE)
    }

    /// rds-sim's disks and files, from its control API through the API server's service proxy.
    pub async fn rds(&self) -> anyhow::Result<RdsContents> {
        let request = http::Request::get(RDS_SIM_STATE).body(Vec::new())?;
        let text = self
            .client
            .request_text(request)
            .await
            .with_context(|| format!("GET {RDS_SIM_STATE}"))?;
        RdsContents::from_json(&text)
    }

    /// What node `node` still holds of CSI volumes: mount points, device files and links under
    /// kubelet's CSI directories, read in its container.
    pub async fn left_on_node(&self, node: &str) -> anyhow::Result<Vec<String>> {
        anyhow::ensure!(
            self.workers.iter().any(|w| w == node),
            "{node} is not a worker of {}",
            self.context
        );
        let root = Path::new(KUBELET_DIR);
        let mountinfo = docker_exec(node, &["cat", "/proc/self/mountinfo"]).await?;
        let mut left = mountinfo::csi_mounts(&mountinfo, root);
        let files = docker_exec(node, &find_devices_command()).await?;
        left.extend(
            files
                .lines()
                .filter(|path| mountinfo::is_csi_path(root, path))
                .map(str::to_owned),
        );
        Ok(left)
    }

    /// Fails when a container of the chart or of rds-sim restarted or its pod went since
    /// [`KindCluster::connect`].
    pub async fn check_running(&self) -> anyhow::Result<()> {
        let now = restarts(&self.client).await?;
        let changed: Vec<String> = self
            .restarts
            .iter()
            .filter_map(|(container, before)| match now.get(container) {
                Some(after) if after == before => None,
                Some(after) => Some(format!("{container} restarted ({before} → {after})")),
                None => Some(format!("{container} is gone")),
            })
            .collect();
        anyhow::ensure!(
            changed.is_empty(),
            "in {}: {}; see `kubectl --context {} logs --previous`",
            self.context,
            changed.join(", "),
            self.context
        );
        Ok(())
    }

    /// Deletes what a trial left in the suites' namespace (pods, VolumeSnapshots, claims) and
    /// waits until their volumes are gone, so that the next trial starts clean. Returns what it
    /// had to delete: nothing after a trial that passed.
    pub async fn clean(&self) -> anyhow::Result<Vec<String>> {
        let mut deleted = Vec::new();
        let pods = Api::<Pod>::namespaced(self.client.clone(), NAMESPACE);
        let resource = objects::volume_snapshot_resource();
        let snapshots =
            Api::<DynamicObject>::namespaced_with(self.client.clone(), NAMESPACE, &resource);
        let claims = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), NAMESPACE);
        for pod in names(pods.list(&ListParams::default()).await?.items) {
            objects::delete_and_wait(pods.clone(), &pod).await?;
            deleted.push(format!("pod {pod}"));
        }
        for snapshot in names(snapshots.list(&ListParams::default()).await?.items) {
            objects::delete_and_wait(snapshots.clone(), &snapshot).await?;
            deleted.push(format!("VolumeSnapshot {snapshot}"));
        }
        let mut volumes = Vec::new();
        for claim in claims.list(&ListParams::default()).await?.items {
            volumes.extend(claim.spec.and_then(|s| s.volume_name));
            let name = claim.metadata.name.unwrap_or_default();
            objects::delete_and_wait(claims.clone(), &name).await?;
            deleted.push(format!("PVC {name}"));
        }
        for pv in volumes {
            objects::gone(Api::<PersistentVolume>::all(self.client.clone()), &pv).await?;
        }
        Ok(deleted)
    }

    /// `kubectl exec` of `command` in pod `pod`'s container, `input` on its stdin; its stdout.
    async fn exec(
        &self,
        pod: &str,
        command: &[String],
        input: Option<Vec<u8>>,
    ) -> anyhow::Result<Vec<u8>> {
        let args = exec_args(&self.context, pod, input.is_some(), command);
        let mut child = tokio::process::Command::new(&self.kubectl)
            .args(&args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {}", self.kubectl.display()))?;
        let feed = child.stdin.take().zip(input).map(|(mut stdin, data)| {
            tokio::spawn(async move {
                stdin.write_all(&data).await?;
                stdin.shutdown().await
            })
        });
        let shown = format!("kubectl {}", args.join(" "));
        let output = tokio::time::timeout(EXEC_TIMEOUT, child.wait_with_output())
            .await
            .with_context(|| format!("`{shown}` did not finish within {EXEC_TIMEOUT:?}"))??;
        if let Some(feed) = feed {
            feed.await?
                .with_context(|| format!("feeding `{shown}` its input"))?;
        }
        anyhow::ensure!(
            output.status.success(),
            "`{shown}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(output.stdout)
    }
}

/// Fails unless the chart's controller and node plugins and rds-sim are ready, saying what to run.
async fn ready(client: &Client, rerun: &str) -> anyhow::Result<()> {
    let deployments = |ns| Api::<Deployment>::namespaced(client.clone(), ns);
    for (api, name) in [
        (
            deployments(CHART_NAMESPACE),
            format!("{RELEASE}-controller"),
        ),
        (deployments(RDS_SIM_NAMESPACE), "rds-sim".to_owned()),
    ] {
        let deployment = api
            .get_opt(&name)
            .await?
            .with_context(|| format!("no Deployment {name}: {rerun}"))?;
        let status = deployment.status.unwrap_or_default();
        let wanted = deployment.spec.and_then(|s| s.replicas).unwrap_or(1);
        anyhow::ensure!(
            status.ready_replicas.unwrap_or(0) >= wanted,
            "Deployment {name} has {} of {wanted} replicas ready",
            status.ready_replicas.unwrap_or(0)
        );
    }
    let name = format!("{RELEASE}-node");
    let node = Api::<DaemonSet>::namespaced(client.clone(), CHART_NAMESPACE)
        .get_opt(&name)
        .await?
        .with_context(|| format!("no DaemonSet {name}: {rerun}"))?;
    let status = node.status.unwrap_or_default();
    anyhow::ensure!(
        status.number_ready >= status.desired_number_scheduled,
        "DaemonSet {name} has {} of {} pods ready",
        status.number_ready,
        status.desired_number_scheduled
    );
    Ok(())
}

/// The worker nodes, in name order: two, as ci/kind/cluster.yaml makes them.
async fn workers(client: &Client) -> anyhow::Result<[String; 2]> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let mut workers: Vec<String> = nodes
        .items
        .into_iter()
        .filter(|n| {
            !n.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("node-role.kubernetes.io/control-plane"))
        })
        .filter_map(|n| n.metadata.name)
        .collect();
    workers.sort();
    match workers.as_slice() {
        [a, b, ..] => Ok([a.clone(), b.clone()]),
        _ => anyhow::bail!(
            "the flows need two worker nodes and the cluster has {workers:?}: ci/kind/cluster.yaml \
             makes two"
        ),
    }
}

/// The restart count of every container of the chart's pods and of rds-sim's, by
/// `namespace/pod/container`.
async fn restarts(client: &Client) -> anyhow::Result<BTreeMap<String, i32>> {
    let chart = ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"));
    let mut counts = BTreeMap::new();
    for (namespace, params) in [
        (CHART_NAMESPACE, chart),
        (RDS_SIM_NAMESPACE, ListParams::default()),
    ] {
        let pods = Api::<Pod>::namespaced(client.clone(), namespace)
            .list(&params)
            .await?;
        for pod in pods.items {
            let name = pod.metadata.name.unwrap_or_default();
            let statuses = pod.status.and_then(|s| s.container_statuses);
            for status in statuses.unwrap_or_default() {
                let key = format!("{namespace}/{name}/{}", status.name);
                counts.insert(key, status.restart_count);
            }
        }
    }
    Ok(counts)
}

fn names<K: kube::Resource>(items: Vec<K>) -> Vec<String> {
    items.iter().filter_map(|o| o.meta().name.clone()).collect()
}

/// `docker exec` of `command` in the container of kind node `node` (a node's container has its
/// name); its stdout.
async fn docker_exec<S: AsRef<str>>(node: &str, command: &[S]) -> anyhow::Result<String> {
    let mut docker = tokio::process::Command::new("docker");
    docker
        .arg("exec")
        .arg(node)
        .args(command.iter().map(AsRef::as_ref))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(EXEC_TIMEOUT, docker.output())
        .await
        .with_context(|| format!("docker exec {node} did not finish within {EXEC_TIMEOUT:?}"))?
        .context("running docker")?;
    anyhow::ensure!(
        output.status.success(),
        "docker exec {node} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// kubectl's arguments to run `command` in the suites' pod `pod` (its container
/// [`POD_CONTAINER`]) in `context`, with stdin when `stdin`.
fn exec_args(context: &str, pod: &str, stdin: bool, command: &[String]) -> Vec<String> {
    let mut args: Vec<String> = ["--context", context, "--namespace", NAMESPACE, "exec"]
        .map(str::to_owned)
        .to_vec();
    if stdin {
        args.push("--stdin".to_owned());
    }
    args.extend([pod, "--container", POD_CONTAINER, "--"].map(str::to_owned));
    args.extend(command.iter().cloned());
    args
}

/// Where the pattern is in a pod: a file on the mounted volume, or the device from offset 0.
fn pattern_path(block: bool) -> String {
    if block {
        DEVICE_PATH.to_owned()
    } else {
        format!("{MOUNT_PATH}/{PATTERN_FILE}")
    }
}

/// Copies stdin to the pattern's place and syncs it to the volume (busybox's sh, cat and sync).
fn write_command(block: bool) -> Vec<String> {
    let script = format!("cat > {} && sync", pattern_path(block));
    ["sh", "-c", &script].map(str::to_owned).to_vec()
}

/// Prints the first `len` bytes of the pattern's place.
fn read_command(block: bool, len: usize) -> Vec<String> {
    ["head", "-c", &len.to_string(), &pattern_path(block)]
        .map(str::to_owned)
        .to_vec()
}

/// Prints the mounted file system's total blocks and fragment size (statfs's f_blocks, f_frsize).
fn statfs_command() -> Vec<String> {
    ["stat", "-f", "-c", "%b %S", MOUNT_PATH]
        .map(str::to_owned)
        .to_vec()
}

/// Lists the block devices and links under kubelet's pods and plugins directories.
fn find_devices_command() -> Vec<String> {
    let pods = format!("{KUBELET_DIR}/pods");
    let plugins = format!("{KUBELET_DIR}/plugins");
    [
        "find", &pods, &plugins, "(", "-type", "b", "-o", "-type", "l", ")", "-print",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The bytes of a file system from [`statfs_command`]'s output.
fn parse_statfs(out: &str) -> anyhow::Result<u64> {
    let numbers: Vec<u64> = out
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("`stat -f` printed {out:?}"))?;
    match numbers.as_slice() {
        [blocks, size] => blocks
            .checked_mul(*size)
            .with_context(|| format!("`stat -f` printed {out:?}")),
        _ => anyhow::bail!("`stat -f` printed {out:?}, not blocks and block size"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_runs_in_the_flows_container_with_stdin_only_for_writes() {
        let write = exec_args("kind-rds-csi", "writer", true, &write_command(false));
        assert_eq!(
            write,
            [
                "--context",
                "kind-rds-csi",
                "--namespace",
                "default",
                "exec",
                "--stdin",
                "writer",
                "--container",
                "app",
                "--",
                "sh",
                "-c",
                "cat > /data/rds-e2e-pattern && sync",
            ]
        );
        let read = exec_args("kind-x", "vm", false, &read_command(true, 1 << 20));
        assert!(!read.contains(&"--stdin".to_owned()), "{read:?}");
        assert_eq!(
            read[read.len() - 4..],
            ["head", "-c", "1048576", "/dev/data"]
        );
        assert_eq!(write_command(true)[2], "cat > /dev/data && sync");
    }

    #[test]
    fn statfs_output_is_blocks_times_block_size() {
        // busybox 1.36's `stat -f -c '%b %S' /data`.
        assert_eq!(parse_statfs("262144 4096\n").unwrap(), 1 << 30);
        for bad in ["", "12", "a 4096", "1 2 3"] {
            let message = parse_statfs(bad).unwrap_err().to_string();
            assert!(message.contains("stat -f"), "{message}");
        }
        assert_eq!(
            find_devices_command().join(" "),
            "find /var/lib/kubelet/pods /var/lib/kubelet/plugins ( -type b -o -type l ) -print"
        );
    }
}

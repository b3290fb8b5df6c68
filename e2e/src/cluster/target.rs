//! The `cluster` target: rds-sim as the RDS, a real control plane, the chart installed with
//! `helm install`, and the chart's pods run as processes — each replica of the controller
//! Deployment's rds-csi and sidecars (external-provisioner, -attacher, -resizer, csi-snapshotter,
//! with the chart's args and RBAC; each replica under its own host name, so their leader
//! elections tell them apart), the snapshot-controller beside them, and on each simulated node the DaemonSet's
//! `rds-csi node` (loop fabric: no NVMe/TCP initiator on this host) under a kubelet stand-in.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec};
use kube::{Api, Client};
use rds_csi::csi::v1::node_client::NodeClient;
use rds_sim::sim::Sim;

use super::control_plane::{ControlPlane, KUBELET_HEARTBEAT, wait_until};
use super::helm::{ChartValues, Helm};
use super::kubelet::{KubeletConfig, KubeletStandIn};
use super::pods::{Image, LocalPod, PodContext};
use super::process::Process;
use super::rds_state::RdsContents;
use crate::config::SimSettings;
use crate::go_tools::GoTools;
use crate::sim_rds::SimRds;

/// The chart's release and namespace, as the chart's README installs it.
pub const RELEASE: &str = "rds-csi";
pub const NAMESPACE: &str = "kube-system";
/// The simulated nodes: two, so a volume can move.
pub const NODES: [&str; 2] = ["node-a", "node-b"];
/// The chart's `node.kubeletDir`, kubelet's default root directory.
const KUBELET_DIR: &str = "/var/lib/kubelet";
/// The container of the driver itself in both of the chart's pods.
const DRIVER_CONTAINER: &str = "rds-csi";

/// Why the cluster target is not running.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// This machine cannot run it and `CI` is not `true`: the suite skips, saying this.
    #[error("{0}")]
    Skipped(String),
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

/// One simulated node: the chart's node pod and the kubelet stand-in.
pub struct ClusterNode {
    pub name: String,
    /// The node's NVMe host NQN, which is its CSI node id.
    pub host_nqn: String,
    pub kubelet: KubeletStandIn,
    pod: LocalPod,
}

/// One replica of the chart's controller Deployment.
pub struct ControllerReplica {
    /// Its pod name: its processes' host name, so the start of the holder identity of every
    /// Lease it holds (the sidecars' and the driver's own).
    pub name: String,
    pod: LocalPod,
    /// `<logs>/controller-<n>-`: a container's log is this and `<container>.log`.
    log_prefix: PathBuf,
    /// Where its rds-csi serves `/metrics`.
    metrics: std::net::SocketAddr,
    /// Where its SSH key is on this host.
    key_file: PathBuf,
}

impl ControllerReplica {
    /// Its rds-csi's `/metrics` as Prometheus scrapes it: the text exposition.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.metrics).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: rds-csi\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .context("no HTTP answer from /metrics")?;
        anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "/metrics answered {head}");
        Ok(body.to_owned())
    }

    /// The log of its container `container`.
    pub fn log(&self, container: &str) -> PathBuf {
        let mut path = self.log_prefix.clone().into_os_string();
        path.push(format!("{container}.log"));
        path.into()
    }
}

/// A running cluster target.
pub struct ClusterTarget {
    helm: Helm,
    rds: SimRds,
    control_plane: ControlPlane,
    snapshot_controller: Process,
    controllers: Vec<ControllerReplica>,
    replicas: ReplicaSet,
    pub nodes: Vec<ClusterNode>,
    values: ChartValues,
    dir: tempfile::TempDir,
}

impl ClusterTarget {
    /// Starts everything and waits until each node's CSINode is registered.
    pub async fn start(sim: &SimSettings) -> Result<ClusterTarget, ClusterError> {
        Self::start_configured(sim, &[]).await
    }

    /// [`ClusterTarget::start`], with chart values (`config.kubernetes.resyncSeconds`, …) set to
    /// these before `helm install`.
    pub async fn start_configured(
        sim: &SimSettings,
        values: &[(&str, serde_json::Value)],
    ) -> Result<ClusterTarget, ClusterError> {
        let tools = GoTools::locate().map_err(|e| match e.skip_reason() {
            Some(reason) => ClusterError::Skipped(reason),
            None => ClusterError::Failed(e.into()),
        })?;
        let helm = Helm::locate().map_err(|e| match e.skip_reason() {
            Some(reason) => ClusterError::Skipped(reason),
            None => ClusterError::Failed(e.into()),
        })?;
        let rds_csi = crate::qemu::node_plugin::plugin_binary().map_err(anyhow::Error::new)?;
        Ok(Self::start_with(tools, helm, &rds_csi, sim, values).await?)
    }

    async fn start_with(
        tools: GoTools,
        helm: Helm,
        rds_csi: &Path,
        sim: &SimSettings,
        overrides: &[(&str, serde_json::Value)],
    ) -> anyhow::Result<ClusterTarget> {
        let dir = tempfile::Builder::new()
            .prefix("rds-e2e-cluster-")
            .tempdir()
            .context("creating the cluster target's directory")?;
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let rds = SimRds::start(dir.path(), sim).await?;
        let control_plane = ControlPlane::start(&tools, &dir.path().join("kube")).await?;
        let admin = control_plane.admin_kubeconfig().to_path_buf();
        let client = control_plane.client();

        helm.apply_crds(&admin, tools.dir("snapshot-crds")?)?;
        let snapshot_controller = Process::spawn(
            "snapshot-controller",
            &tools.binary("external-snapshotter", "snapshot-controller")?,
            &[
                format!("--kubeconfig={}", admin.display()),
                "--leader-election=false".into(),
            ],
            &[],
            &logs,
        )?;

        let mut values = ChartValues::for_sim(&rds, "127.0.0.1");
        // xfs: growing a mounted ext4 needs CAP_SYS_RESOURCE, which the containers CI runs in
        // drop; xfs grows without it (rds-csi's node_loop test covers ext4 where it is granted).
        values.set("storageClass.fsType", "xfs");
        for (key, value) in overrides {
            values.set(key, value.clone());
        }
        helm.install(&admin, RELEASE, NAMESPACE, &values)?;

        let controller_spec = pod_spec::<Deployment>(&client, "controller").await?;
        let mut replicas = ReplicaSet {
            key_name: controller_key_name(&client).await?,
            kubeconfig: control_plane
                .service_account_kubeconfig(NAMESPACE, &service_account(&controller_spec)?)
                .await?,
            spec: controller_spec,
            client: client.clone(),
            tools,
            rds_csi: rds_csi.to_path_buf(),
            started: 0,
        };
        let mut controllers = Vec::new();
        for _ in 0..controller_replicas(&client).await? {
            controllers.push(replicas.start(dir.path()).await?);
        }
        let images = |image: &str| image_binary(&replicas.tools, rds_csi, image);

        let node_spec = pod_spec::<DaemonSet>(&client, "node").await?;
        let loop_root = dir.path().join("rds").join("files");
        let driver_name = driver_name(&client).await?;
        let mut nodes = Vec::new();
        for (index, name) in NODES.into_iter().enumerate() {
            let host_nqn = format!(
                "nqn.2014-08.org.nvmexpress:uuid:5e2e0000-0000-4000-8000-c1a5000000{index:02x}"
            );
            let node_dir = dir.path().join(name);
            let kubelet_root = node_dir.join("kubelet");
            let node_env = |container: &str| {
                if container != DRIVER_CONTAINER {
                    return Vec::new();
                }
                // Loop devices over rds-sim's files instead of the kernel's NVMe/TCP initiator,
                // and a host NQN per simulated node (they share this host's /etc/nvme).
                vec![
                    ("RDS_CSI_NODE_FABRIC".to_owned(), "loop".to_owned()),
                    (
                        "RDS_CSI_NODE_LOOP_ROOT".to_owned(),
                        loop_root.display().to_string(),
                    ),
                    ("RDS_CSI_NODE_HOST_NQN".to_owned(), host_nqn.clone()),
                    // The chart's kubeletDir is this node's directory here.
                    (
                        "RDS_CSI_NODE_KUBELET_DIR".to_owned(),
                        kubelet_root.display().to_string(),
                    ),
                ]
            };
            let mut pod = LocalPod::start(
                name,
                &node_spec,
                &PodContext {
                    client: client.clone(),
                    namespace: NAMESPACE,
                    node_name: name,
                    pod_name: None,
                    kubeconfig: None,
                    image: &images,
                    extra_env: &node_env,
                    kubelet_dir: Some((KUBELET_DIR, &kubelet_root)),
                },
                &node_dir,
                &logs,
            )
            .await?;
            let socket = pod.volume("plugin-dir")?.join("csi.sock");
            let channel = connect(&socket, &mut pod).await?;
            let kubelet = KubeletStandIn::start_with(
                client.clone(),
                kubelet_config(name, &driver_name, &kubelet_root),
                NodeClient::new(channel),
            )
            .await?;
            nodes.push(ClusterNode {
                name: name.to_owned(),
                host_nqn,
                kubelet,
                pod,
            });
        }
        Ok(ClusterTarget {
            helm,
            rds,
            control_plane,
            snapshot_controller,
            controllers,
            replicas,
            nodes,
            values,
            dir,
        })
    }

    /// A client with cluster-admin's rights, for the suites' objects.
    pub fn client(&self) -> Client {
        self.control_plane.client()
    }

    pub fn sim(&self) -> &Arc<Sim> {
        self.rds.sim()
    }

    /// rds-sim's disks and files, in the form its control API serves them.
    pub fn rds_contents(&self) -> anyhow::Result<RdsContents> {
        RdsContents::of(self.sim())
    }

    /// What node `name` still holds of CSI volumes: the mount points, device files and links
    /// under kubelet's CSI directories in its kubelet directory.
    pub fn left_on_node(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let root = self.node(name)?.kubelet.paths().root().to_path_buf();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let mut left = super::mountinfo::csi_mounts(&mountinfo, &root);
        for dir in ["pods", "plugins"] {
            devices_under(&root.join(dir), &root, &mut left);
        }
        Ok(left)
    }

    pub fn node(&self, name: &str) -> anyhow::Result<&ClusterNode> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("the cluster target has no node {name}"))
    }

    pub fn node_mut(&mut self, name: &str) -> anyhow::Result<&mut ClusterNode> {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .with_context(|| format!("the cluster target has no node {name}"))
    }

    /// Node `name` fails: its kubelet stand-in stops (no more heartbeats, so the node
    /// controller marks it Unknown) and what its kernel held for volumes (mounts, loop devices)
    /// is gone, as after a power loss. Its node plugin process stays, unreachable.
    pub async fn power_off(&mut self, name: &str) -> anyhow::Result<()> {
        let root = self.dir.path().join(name).join("kubelet");
        self.node_mut(name)?.kubelet.stop().await;
        let problems = super::leftovers::power_off(&root);
        anyhow::ensure!(problems.is_empty(), "powering {name} off: {problems:?}");
        Ok(())
    }

    /// Starts node `name`'s kubelet stand-in again after [`KubeletStandIn::stop`]: the node
    /// coming back, with its node plugin still running and nothing published as far as the new
    /// stand-in knows.
    pub async fn restart_kubelet(&mut self, name: &str) -> anyhow::Result<()> {
        let client = self.client();
        let driver = driver_name(&client).await?;
        let root = self.dir.path().join(name).join("kubelet");
        let node = self.node_mut(name)?;
        let socket = node.pod.volume("plugin-dir")?.join("csi.sock");
        let channel = connect(&socket, &mut node.pod).await?;
        node.kubelet.stop().await;
        node.kubelet = KubeletStandIn::start_with(
            client,
            kubelet_config(name, &driver, &root),
            NodeClient::new(channel),
        )
        .await?;
        Ok(())
    }

    /// Where the logs of every process are.
    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// The chart values it was installed with.
    pub fn values(&self) -> &ChartValues {
        &self.values
    }

    pub fn helm(&self) -> &Helm {
        &self.helm
    }

    pub fn admin_kubeconfig(&self) -> &Path {
        self.control_plane.admin_kubeconfig()
    }

    /// The controller replicas still running.
    pub fn controllers(&self) -> &[ControllerReplica] {
        &self.controllers
    }

    /// Kills every process of the controller replica `name` (SIGKILL: a crash, or its node lost
    /// with it), as a pod that is gone for good: it is not started again.
    pub async fn kill_controller(&mut self, name: &str) -> anyhow::Result<()> {
        let index = self
            .controllers
            .iter()
            .position(|c| c.name == name)
            .with_context(|| format!("no controller replica {name} is running"))?;
        self.controllers.remove(index).pod.stop().await;
        Ok(())
    }

    /// Deletes the controller replica `name` as kubelet deletes a pod: SIGTERM to its containers,
    /// up to 30 seconds (Kubernetes' default grace period) to exit. Fails unless its rds-csi
    /// exits successfully.
    pub async fn stop_controller(&mut self, name: &str) -> anyhow::Result<()> {
        let index = self
            .controllers
            .iter()
            .position(|c| c.name == name)
            .with_context(|| format!("no controller replica {name} is running"))?;
        let replica = self.controllers.remove(index);
        let driver_log = replica.log(DRIVER_CONTAINER);
        let statuses = replica
            .pod
            .terminate(std::time::Duration::from_secs(30))
            .await?;
        let driver = statuses
            .iter()
            .find(|(process, _)| process.ends_with(&format!("-{DRIVER_CONTAINER}")))
            .with_context(|| format!("{name} ran no {DRIVER_CONTAINER}"))?;
        anyhow::ensure!(
            driver.1.success(),
            "{name}'s rds-csi exited with {} on SIGTERM; {}",
            driver.1,
            super::process::log_tail(&driver_log)
        );
        Ok(())
    }

    /// Starts one more controller replica, as the ReplicaSet controller replaces a pod that is
    /// gone; its name is new.
    pub async fn replace_controller(&mut self) -> anyhow::Result<&ControllerReplica> {
        let replica = self.replicas.start(self.dir.path()).await?;
        self.controllers.push(replica);
        Ok(self.controllers.last().expect("just pushed"))
    }

    /// `rds-csi <args>` as an operator runs it beside the controller: with a controller pod's
    /// config.toml and SSH key, and the cluster admin's kubeconfig.
    pub fn driver_command(&self, args: &[&str]) -> anyhow::Result<tokio::process::Command> {
        let binary = crate::qemu::node_plugin::plugin_binary()?;
        let replica = self
            .controllers
            .first()
            .context("no controller replica is running")?;
        let config = replica.pod.volume("config")?.join("config.toml");
        let mut command = tokio::process::Command::new(binary);
        command
            .args(args)
            .arg("--config")
            .arg(config)
            .env("RDS_CSI_RDS_PRIVATE_KEY_FILE", &replica.key_file)
            .env("KUBECONFIG", self.admin_kubeconfig());
        Ok(command)
    }

    /// Fails, quoting the log, when one of the chart's processes has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.snapshot_controller.check_running()?;
        for controller in &mut self.controllers {
            controller.pod.check_running()?;
        }
        self.nodes
            .iter_mut()
            .try_for_each(|node| node.pod.check_running())
    }

    /// Stops everything; the directory (state and logs) goes with it.
    pub async fn shutdown(self) {
        for mut node in self.nodes {
            node.kubelet.stop().await;
            node.pod.stop().await;
        }
        for controller in self.controllers {
            controller.pod.stop().await;
        }
        self.snapshot_controller.stop().await;
        self.control_plane.shutdown().await;
        self.rds.shutdown().await;
        for problem in super::leftovers::release(self.dir.path()) {
            eprintln!("cluster target: {problem}");
        }
    }
}

/// Adds the block devices and links under `dir` that are CSI places of the kubelet directory
/// `root` to `found`, as `find -type b -o -type l` lists them on a node.
fn devices_under(dir: &Path, root: &Path, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let file_type = meta.file_type();
        if file_type.is_dir() {
            devices_under(&path, root, found);
        } else if file_type.is_symlink() || file_type.is_block_device() {
            let shown = path.display().to_string();
            if super::mountinfo::is_csi_path(root, &shown) {
                found.push(shown);
            }
        }
    }
}

/// What starts a replica of the controller Deployment: the ReplicaSet controller's part (there is
/// no kubelet to run the pods it makes). Each replica has its own directories, ports and host
/// name, as pods on different nodes would have.
struct ReplicaSet {
    spec: PodSpec,
    client: Client,
    /// A kubeconfig of the pod's ServiceAccount: the in-cluster configuration of a pod.
    kubeconfig: PathBuf,
    /// The SSH key's file name in the pod's `config` volume.
    key_name: std::ffi::OsString,
    tools: GoTools,
    rds_csi: PathBuf,
    started: usize,
}

impl ReplicaSet {
    /// Starts replica `<release>-controller-<n>` under `dir/controller-<n>`, logging into
    /// `dir/logs`.
    async fn start(&mut self, dir: &Path) -> anyhow::Result<ControllerReplica> {
        let index = self.started;
        self.started += 1;
        let name = format!("{RELEASE}-controller-{index}");
        let pod_dir_name = format!("controller-{index}");
        let replica_dir = dir.join(&pod_dir_name);
        // config.toml names the key where the pod mounts it; here it is in the volume's dir.
        let key_file = replica_dir
            .join("volumes")
            .join("config")
            .join(&self.key_name);
        let metrics: std::net::SocketAddr =
            ([127, 0, 0, 1], crate::qemu::free_local_port()?).into();
        let env = |container: &str| {
            if container != DRIVER_CONTAINER {
                return Vec::new();
            }
            vec![
                (
                    "RDS_CSI_RDS_PRIVATE_KEY_FILE".to_owned(),
                    key_file.display().to_string(),
                ),
                (
                    "KUBECONFIG".to_owned(),
                    self.kubeconfig.display().to_string(),
                ),
                // `/metrics` on a free loopback port: several clusters run at once.
                ("RDS_CSI_METRICS_LISTEN".to_owned(), metrics.to_string()),
            ]
        };
        let pod = LocalPod::start(
            &pod_dir_name,
            &self.spec,
            &PodContext {
                client: self.client.clone(),
                namespace: NAMESPACE,
                node_name: "",
                pod_name: Some(&name),
                kubeconfig: Some(&self.kubeconfig),
                image: &|image: &str| image_binary(&self.tools, &self.rds_csi, image),
                extra_env: &env,
                kubelet_dir: None,
            },
            &replica_dir,
            &dir.join("logs"),
        )
        .await?;
        Ok(ControllerReplica {
            name,
            pod,
            log_prefix: dir.join("logs").join(format!("{pod_dir_name}-")),
            metrics,
            key_file,
        })
    }
}

/// The binary for one of the chart's images; the image's tag must be the version built, so the
/// cluster runs exactly what the chart deploys.
fn image_binary(tools: &GoTools, rds_csi: &Path, image: &str) -> anyhow::Result<Image> {
    let (repository, tag) = image
        .rsplit_once(':')
        .with_context(|| format!("image {image} has no tag"))?;
    let name = repository.rsplit('/').next().unwrap_or(repository);
    let (tool, binary) = match name {
        "rds-csi" => return Ok(Image::Binary(rds_csi.to_path_buf())),
        "csi-provisioner" | "csi-attacher" | "csi-resizer" => (name, name),
        "csi-snapshotter" => ("external-snapshotter", name),
        "csi-node-driver-registrar" => {
            return Ok(Image::NotRun(
                "the Go module proxy does not serve node-driver-registrar; the kubelet stand-in \
                 registers the CSINode as it and kubelet would",
            ));
        }
        "livenessprobe" => {
            return Ok(Image::NotRun(
                "the Go module proxy does not serve livenessprobe, and nothing here runs probes",
            ));
        }
        other => anyhow::bail!("the chart runs an image the cluster target does not know: {other}"),
    };
    let dir = tools.dir(tool)?;
    let built = dir
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    anyhow::ensure!(
        built == format!("{tool}-{tag}"),
        "the chart runs {image} but ci/go-tools.sh built {built}: they must agree"
    );
    Ok(Image::Binary(dir.join(binary)))
}

/// The pod template of the chart's `<release>-<component>` workload, as the API server stored it.
async fn pod_spec<K>(client: &Client, component: &str) -> anyhow::Result<PodSpec>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug
        + HasPodTemplate,
    <K as kube::Resource>::DynamicType: Default,
{
    let name = format!("{RELEASE}-{component}");
    let object = Api::<K>::namespaced(client.clone(), NAMESPACE)
        .get(&name)
        .await
        .with_context(|| format!("reading the chart's {name}"))?;
    object
        .pod_spec()
        .with_context(|| format!("the chart's {name} has no pod template"))
}

/// Deployments and DaemonSets, for [`pod_spec`].
trait HasPodTemplate {
    fn pod_spec(&self) -> Option<PodSpec>;
}

impl HasPodTemplate for Deployment {
    fn pod_spec(&self) -> Option<PodSpec> {
        self.spec.as_ref()?.template.spec.clone()
    }
}

impl HasPodTemplate for DaemonSet {
    fn pod_spec(&self) -> Option<PodSpec> {
        self.spec.as_ref()?.template.spec.clone()
    }
}

fn service_account(spec: &PodSpec) -> anyhow::Result<String> {
    spec.service_account_name
        .clone()
        .context("the controller pod names no ServiceAccount")
}

/// The chart's `config.toml`, as its ConfigMap holds it.
async fn chart_config(client: &Client) -> anyhow::Result<toml::Table> {
    let name = format!("{RELEASE}-config");
    let map = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .get(&name)
        .await
        .with_context(|| format!("reading the chart's ConfigMap {name}"))?;
    let text = map
        .data
        .and_then(|mut d| d.remove("config.toml"))
        .with_context(|| format!("ConfigMap {name} has no config.toml"))?;
    text.parse()
        .with_context(|| format!("ConfigMap {name}'s config.toml"))
}

/// The driver name the chart configured (the StorageClass's provisioner).
async fn driver_name(client: &Client) -> anyhow::Result<String> {
    chart_config(client)
        .await?
        .get("driverName")
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .context("the chart's config.toml has no driverName")
}

/// The file name of the controller's SSH key: config.toml names it under the pod's `config`
/// volume.
async fn controller_key_name(client: &Client) -> anyhow::Result<std::ffi::OsString> {
    let config = chart_config(client).await?;
    let file = config
        .get("rds")
        .and_then(|rds| rds.get("privateKeyFile"))
        .and_then(toml::Value::as_str)
        .context("the chart's config.toml has no rds.privateKeyFile")?;
    Path::new(file)
        .file_name()
        .map(ToOwned::to_owned)
        .context("rds.privateKeyFile names no file")
}

/// The replicas of the chart's controller Deployment (Kubernetes' default: 1).
async fn controller_replicas(client: &Client) -> anyhow::Result<i32> {
    let name = format!("{RELEASE}-controller");
    let deployment = Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .get(&name)
        .await
        .with_context(|| format!("reading the chart's {name}"))?;
    Ok(deployment.spec.and_then(|s| s.replicas).unwrap_or(1))
}

/// A channel to the node plugin's socket, once it serves.
/// A stand-in for `node`, beating as the control plane expects ([`KUBELET_HEARTBEAT`]).
fn kubelet_config(node: &str, driver: &str, root: &Path) -> KubeletConfig {
    KubeletConfig {
        heartbeat: KUBELET_HEARTBEAT,
        ..KubeletConfig::new(node, driver, root)
    }
}

async fn connect(socket: &Path, pod: &mut LocalPod) -> anyhow::Result<tonic::transport::Channel> {
    wait_until(
        "the node plugin serves on its socket",
        &mut pod.processes().iter_mut().collect::<Vec<_>>(),
        async || Ok(socket.exists()),
    )
    .await?;
    rds_csi::grpc::connect_unix(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))
}

//! A stand-in for kubelet on one simulated node of the `cluster` target: what kubelet does for CSI
//! volumes, against the real API server, with the real node plugin.
//!
//! It models:
//! - the Node: registration (hostname/os/arch labels, the
//!   `volumes.kubernetes.io/controller-managed-attach-detach` annotation that makes the
//!   attach-detach controller create VolumeAttachments, capacity, addresses, conditions), the Lease
//!   in `kube-node-lease` and the Ready condition's heartbeat every [`KubeletConfig::heartbeat`]
//!   (kubelet's 10 s), and `status.volumesInUse`. [`KubeletStandIn::stop`] (or dropping it) is the node
//!   failing: the heartbeat stops and the last `volumesInUse` report stays, so Kubernetes waits
//!   before detaching from it;
//! - the driver's registration, as node-driver-registrar and kubelet's `nodeinfomanager`:
//!   NodeGetInfo, the CSINode's driver entry (node ID, topology keys, attach limit), the node's
//!   topology labels and its `csi.volume.kubernetes.io/nodeid` annotation;
//! - the volume manager for the Pods bound to the node (`spec.nodeName`; there is no scheduler):
//!   for each claim bound to a CSI PV of the driver (also generic ephemeral volumes' claims), it
//!   reports the volume in use, waits for its VolumeAttachment (named as kubelet names it) to be
//!   attached, then NodeStageVolume (when the plugin has STAGE_UNSTAGE_VOLUME) and
//!   NodePublishVolume at kubelet's paths, with the PV's attributes, access mode, fsType, mount
//!   options, read-only flag and secrets; then the Pod is Running and Ready. A deleted Pod's
//!   volumes are unpublished, unstaged when no other pod on the node uses them, dropped from
//!   `volumesInUse`, and the Pod is finally deleted with grace period 0. A claim with
//!   FileSystemResizePending gets NodeExpandVolume and then the PV's capacity in its status;
//! - failures: retried with kubelet's exponential backoff (500 ms doubling to 2 min 2 s) and
//!   recorded on the Pod as Warning Events (FailedMount, FailedMapVolume, FailedAttachVolume,
//!   VolumeResizeFailed).
//!
//! It does not model: containers, images, cgroups, probes, a container runtime, restart policies
//! or pod phases past Running (a pod is Running once its volumes are set up); volumes other
//! than claims of this driver (they are ignored: such a pod runs without them); inline CSI
//! ephemeral volumes; `node.status.volumesAttached` (kubelet checks it before mounting; this
//! stand-in goes by the VolumeAttachment, which the attach-detach controller reads too);
//! fsGroup, SELinux and VOLUME_MOUNT_GROUP; node-side stats (NodeGetVolumeStats); the pod's
//! devices (a block volume is a device file and a link in the pod's directory); reconstruction
//! after a restart (a new stand-in starts with nothing published); node credentials and the
//! NodeRestriction admission (it acts with the client it is given). Operations run one at a
//! time, not in parallel as kubelet's operation executor runs them.

mod backoff;
mod csinode;
mod expand;
mod node;
mod operations;
mod paths;
mod pattern;
mod pods;
mod volume;
mod volume_manager;

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use rds_csi::csi::v1::node_client::NodeClient;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

pub use node::CONTROLLER_MANAGED;
pub use paths::{KubeletPaths, attachment_name, unique_volume_name};
pub use pattern::{PATTERN_FILE, check_pattern, pattern, read_pattern, write_pattern};
pub use volume::CsiVolume;
pub use volume_manager::Mounted;

use operations::{Capabilities, Operations};
use volume_manager::{MountedVolumes, Stores, VolumeManager};

/// How long the watches may take to list what exists.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// kubelet's node status and lease renewal interval.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// What the stand-in is: its node, the driver it serves, its root directory.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The Node's name.
    pub node: String,
    /// The CSI driver's name, as its PVs and CSINode entry carry it.
    pub driver: String,
    /// kubelet's `--root-dir`: staging and publish paths go under it.
    pub root: PathBuf,
    /// How often the Lease and the Ready heartbeat are renewed.
    pub heartbeat: Duration,
}

impl KubeletConfig {
    pub fn new(node: &str, driver: &str, root: &Path) -> KubeletConfig {
        KubeletConfig {
            node: node.to_owned(),
            driver: driver.to_owned(),
            root: root.to_path_buf(),
            heartbeat: HEARTBEAT,
        }
    }
}

/// A running stand-in; its heartbeat and volume manager run until [`KubeletStandIn::stop`] or drop.
pub struct KubeletStandIn {
    config: KubeletConfig,
    node_id: String,
    paths: KubeletPaths,
    mounted: MountedVolumes,
    tasks: Vec<JoinHandle<()>>,
}

impl KubeletStandIn {
    /// Registers Node `node` and `driver` (its node plugin is `csi`), with kubelet's root
    /// directory at `root` and kubelet's heartbeat: see [`KubeletStandIn::start_with`].
    pub async fn start(
        client: Client,
        node: &str,
        driver: &str,
        csi: NodeClient<Channel>,
        root: &Path,
    ) -> anyhow::Result<KubeletStandIn> {
        KubeletStandIn::start_with(client, KubeletConfig::new(node, driver, root), csi).await
    }

    /// Registers the node and the driver (its node plugin is `csi`), starts the heartbeat and
    /// the volume manager, and returns once the watches have listed what exists.
    pub async fn start_with(
        client: Client,
        config: KubeletConfig,
        mut csi: NodeClient<Channel>,
    ) -> anyhow::Result<KubeletStandIn> {
        let node = config.node.clone();
        let reporter = Arc::new(node::NodeReporter::register(&client, &node).await?);
        let node_id = csinode::register_driver(&client, &node, &config.driver, &mut csi).await?;
        let capabilities = Capabilities::of(&mut csi).await?;
        let paths = KubeletPaths::new(&config.root);
        let mut tasks = vec![tokio::spawn(heartbeat(reporter.clone(), config.heartbeat))];

        let changed = Arc::new(Notify::new());
        let on_node = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let (pods, task) = reflect(Api::<Pod>::all(client.clone()), on_node, &changed);
        tasks.push(task);
        let (attachments, task) = reflect(
            Api::<VolumeAttachment>::all(client.clone()),
            watcher::Config::default(),
            &changed,
        );
        tasks.push(task);
        let (claims, task) = reflect(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
            &changed,
        );
        tasks.push(task);
        let listed = async {
            let ended = |kind: &str| format!("the kubelet stand-in's watch of {kind} ended");
            pods.wait_until_ready().await.context(ended("Pods"))?;
            attachments
                .wait_until_ready()
                .await
                .context(ended("VolumeAttachments"))?;
            claims
                .wait_until_ready()
                .await
                .context(ended("PersistentVolumeClaims"))
        };
        // A watch that cannot list (no permission, no API) retries for ever: bound the wait so
        // that the failure says so.
        tokio::time::timeout(LIST_TIMEOUT, listed)
            .await
            .with_context(|| {
                format!("the kubelet stand-in's watches did not list in {LIST_TIMEOUT:?}")
            })??;

        let mounted = MountedVolumes::default();
        let manager = VolumeManager {
            node: node.clone(),
            client: client.clone(),
            ops: Operations {
                csi,
                client: client.clone(),
                paths: paths.clone(),
                driver: config.driver.clone(),
                capabilities,
            },
            reporter,
            stores: Stores {
                pods,
                attachments,
                claims,
            },
            mounted: mounted.clone(),
            events: pods::Events::new(client, &node),
            staged: Default::default(),
            backoff: Default::default(),
            attach_errors: Default::default(),
        };
        // The first pass looks at what the lists found.
        changed.notify_one();
        tasks.push(tokio::spawn(manager.run(changed)));
        Ok(KubeletStandIn {
            config,
            node_id,
            paths,
            mounted,
            tasks,
        })
    }

    pub fn node_name(&self) -> &str {
        &self.config.node
    }

    /// The node ID the node plugin reported, as the CSINode carries it.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn paths(&self) -> &KubeletPaths {
        &self.paths
    }

    /// Where pod `namespace`/`pod` finds its volume `volume`: the mounted directory, or the link
    /// to the block device file. Fails unless the volume is published to that pod now.
    pub fn published_path(
        &self,
        namespace: &str,
        pod: &str,
        volume: &str,
    ) -> anyhow::Result<PathBuf> {
        self.published(namespace, pod, volume)
            .map(|m| m.path)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "volume {volume} of pod {namespace}/{pod} is not published on node {}",
                    self.config.node
                )
            })
    }

    /// The published volume `volume` of pod `namespace`/`pod`, if it is published now.
    pub fn published(&self, namespace: &str, pod: &str, volume: &str) -> Option<Mounted> {
        let mounted = self.mounted.lock().expect("mounted");
        mounted
            .iter()
            .find(|((_, name), m)| name == volume && m.namespace == namespace && m.pod == pod)
            .map(|(_, m)| m.clone())
    }

    /// The staging path of a published volume of the driver, as kubelet passes it.
    pub fn staging_path(&self, volume: &CsiVolume) -> PathBuf {
        if volume.block {
            self.paths.block_staging(&volume.pv)
        } else {
            self.paths.staging(&self.config.driver, &volume.handle)
        }
    }

    /// Stops the node: no more heartbeats, no more volume operations; what it reported stays.
    pub async fn stop(&mut self) {
        for task in std::mem::take(&mut self.tasks) {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for KubeletStandIn {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Renews the Lease and the Ready heartbeat every `interval` (the first beat was registration's).
async fn heartbeat(reporter: Arc<node::NodeReporter>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if let Err(e) = reporter.heartbeat().await {
            eprintln!("kubelet stand-in: heartbeat: {e:#}");
        }
    }
}

/// A store of the objects `api` lists with `config`, kept by a watch that notifies `changed` on
/// every event, and the task that runs it.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: &Arc<Notify>,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let changed = changed.clone();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                eprintln!("kubelet stand-in: watch of {}: {e}", K::kind(&()));
            }
            changed.notify_one();
        }
    });
    (store, task)
}

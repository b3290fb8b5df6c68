//! kubelet's volume manager for the node's pods: a reconciler between the volumes the pods want
//! (desired) and what is staged and published (actual), run again on every change the watches
//! see and when a failed operation's backoff ends. One pass: report `volumesInUse`, tear down
//! what no pod wants, report again, finish terminating pods, set up what pods want, mark pods
//! with all their volumes Running, expand volumes whose claim waits for it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::node::NodeReporter;
use super::operations::Operations;
use super::paths::{attachment_name, unique_volume_name};
use super::pods::{self, Events};
use super::volume::CsiVolume;

/// A pod's volume, by pod UID and the volume's name in the pod.
pub type PodVolume = (String, String);

/// A volume published to a pod.
#[derive(Debug, Clone)]
pub struct Mounted {
    pub namespace: String,
    pub pod: String,
    pub volume: CsiVolume,
    /// Where the pod finds it.
    pub path: PathBuf,
}

/// The published volumes, shared with the tests' view of the node.
pub type MountedVolumes = Arc<Mutex<BTreeMap<PodVolume, Mounted>>>;

/// The watched objects the reconciler reads.
pub struct Stores {
    pub pods: Store<Pod>,
    pub attachments: Store<VolumeAttachment>,
    pub claims: Store<PersistentVolumeClaim>,
}

pub struct VolumeManager {
    pub node: String,
    pub client: Client,
    pub ops: Operations,
    pub reporter: Arc<NodeReporter>,
    pub stores: Stores,
    pub mounted: MountedVolumes,
    pub events: Events,
    /// Staged volumes by handle.
    pub staged: BTreeMap<String, CsiVolume>,
    pub backoff: Backoff,
    /// The last attach error reported per VolumeAttachment, so each is reported once.
    pub attach_errors: HashMap<String, String>,
}

/// A volume a pod wants.
struct Wanted {
    pod: Arc<Pod>,
    volume: CsiVolume,
}

impl VolumeManager {
    /// Reconciles whenever `changed` is notified or a backoff ends; runs until aborted.
    pub async fn run(mut self, changed: Arc<Notify>) {
        loop {
            let retry = self.backoff.next_retry(Instant::now());
            tokio::select! {
                () = changed.notified() => {}
                () = sleep_until(retry) => {}
            }
            self.reconcile().await;
        }
    }

    async fn reconcile(&mut self) {
        let (wanted, unready) = self.desired().await;
        self.report_in_use(&wanted).await;
        self.tear_down(&wanted).await;
        self.report_in_use(&wanted).await;
        self.finish_terminating().await;
        self.set_up(&wanted).await;
        self.mark_running(&wanted, &unready).await;
        self.expand().await;
    }

    /// The volumes of our driver that the node's live pods use, and the pods that wait for a
    /// claim to be bound (or whose claim could not be read).
    async fn desired(&mut self) -> (BTreeMap<PodVolume, Wanted>, BTreeSet<String>) {
        let mut wanted = BTreeMap::new();
        let mut unready = BTreeSet::new();
        let mut pvs: HashMap<String, Option<PersistentVolume>> = HashMap::new();
        for pod in self.stores.pods.state() {
            if pods::terminating(&pod) {
                continue;
            }
            let uid = pod.uid().unwrap_or_default();
            let namespace = pod.namespace().unwrap_or_default();
            let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone());
            for v in volumes.unwrap_or_default() {
                let (claim, read_only) = match (&v.persistent_volume_claim, &v.ephemeral) {
                    (Some(c), _) => (c.claim_name.clone(), c.read_only.unwrap_or(false)),
                    // A generic ephemeral volume's claim is named after the pod and the volume.
                    (None, Some(_)) => (format!("{}-{}", pod.name_any(), v.name), false),
                    (None, None) => continue,
                };
                let Some(pv_name) = self.bound_pv(&namespace, &claim) else {
                    unready.insert(uid.clone());
                    continue;
                };
                if !pvs.contains_key(&pv_name) {
                    let api = Api::<PersistentVolume>::all(self.client.clone());
                    let pv = api.get_opt(&pv_name).await.unwrap_or_else(|e| {
                        eprintln!("kubelet stand-in {}: reading PV {pv_name}: {e}", self.node);
                        None
                    });
                    pvs.insert(pv_name.clone(), pv);
                }
                let Some(pv) = &pvs[&pv_name] else {
                    unready.insert(uid.clone());
                    continue;
                };
                let claim = (namespace.clone(), claim);
                if let Some(volume) = CsiVolume::of(&self.ops.driver, claim, read_only, pv) {
                    let pod = pod.clone();
                    wanted.insert((uid.clone(), v.name.clone()), Wanted { pod, volume });
                }
            }
        }
        (wanted, unready)
    }

    /// The PV a claim is bound to, once the PV controller has bound it.
    fn bound_pv(&self, namespace: &str, claim: &str) -> Option<String> {
        let pvc = self
            .stores
            .claims
            .get(&ObjectRef::new(claim).within(namespace))?;
        let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        pvc.spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|_| bound)
    }

    /// `volumesInUse`: what pods want and what is still published or staged, as kubelet reports
    /// volumes from its desired and its actual state of the world.
    async fn report_in_use(&self, wanted: &BTreeMap<PodVolume, Wanted>) {
        let driver = &self.ops.driver;
        let mounted = self.mounted.lock().expect("mounted").clone();
        let in_use: BTreeSet<String> = wanted
            .values()
            .map(|w| &w.volume.handle)
            .chain(mounted.values().map(|m| &m.volume.handle))
            .chain(self.staged.keys())
            .map(|handle| unique_volume_name(driver, handle))
            .collect();
        if let Err(e) = self.reporter.set_volumes_in_use(in_use).await {
            eprintln!("kubelet stand-in {}: {e:#}", self.node);
        }
    }

    /// Unpublishes what no live pod wants, then unstages what nothing uses or wants.
    async fn tear_down(&mut self, wanted: &BTreeMap<PodVolume, Wanted>) {
        let mounted = self.mounted.lock().expect("mounted").clone();
        for (key, m) in mounted.iter().filter(|(key, _)| !wanted.contains_key(*key)) {
            let operation = format!("unpublish/{}/{}", key.0, key.1);
            if !self.backoff.may_run(&operation, Instant::now()) {
                continue;
            }
            match self.ops.unpublish(&key.0, &m.volume).await {
                Ok(()) => {
                    self.backoff.succeeded(&operation);
                    self.mounted.lock().expect("mounted").remove(key);
                }
                Err(e) => self.failed(&operation, None, "FailedUnmount", &e).await,
            }
        }
        let mounted = self.mounted.lock().expect("mounted").clone();
        let used: BTreeSet<&String> = wanted
            .values()
            .map(|w| &w.volume.handle)
            .chain(mounted.values().map(|m| &m.volume.handle))
            .collect();
        let unused: Vec<CsiVolume> = self
            .staged
            .iter()
            .filter(|(handle, _)| !used.contains(handle))
            .map(|(_, v)| v.clone())
            .collect();
        for volume in unused {
            let operation = format!("unstage/{}", volume.handle);
            if !self.backoff.may_run(&operation, Instant::now()) {
                continue;
            }
            match self.ops.unstage(&volume).await {
                Ok(()) => {
                    self.backoff.succeeded(&operation);
                    self.staged.remove(&volume.handle);
                }
                Err(e) => self.failed(&operation, None, "FailedUnmount", &e).await,
            }
        }
    }

    /// The final delete of pods being deleted once nothing of theirs is published.
    async fn finish_terminating(&mut self) {
        let mounted = self.mounted.lock().expect("mounted").clone();
        for pod in self.stores.pods.state() {
            let uid = pod.uid().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_none() || mounted.keys().any(|k| k.0 == uid) {
                continue;
            }
            let operation = format!("delete/{uid}");
            if !self.backoff.may_run(&operation, Instant::now()) {
                continue;
            }
            match pods::final_delete(&self.client, &pod).await {
                Ok(()) => self.backoff.succeeded(&operation),
                Err(e) => self.failed(&operation, None, "", &e.into()).await,
            }
        }
    }

    /// Stages and publishes what pods want once its VolumeAttachment is attached.
    async fn set_up(&mut self, wanted: &BTreeMap<PodVolume, Wanted>) {
        for (key, w) in wanted {
            if self.mounted.lock().expect("mounted").contains_key(key) {
                continue;
            }
            let operation = format!("publish/{}/{}", key.0, key.1);
            if !self.backoff.may_run(&operation, Instant::now()) {
                continue;
            }
            let Some(publish_context) = self.attached(w).await else {
                continue;
            };
            let reason = if w.volume.block {
                "FailedMapVolume"
            } else {
                "FailedMount"
            };
            if !self.staged.contains_key(&w.volume.handle) {
                if let Err(e) = self.ops.stage(&w.volume, &publish_context).await {
                    let e = e.context(format!("NodeStageVolume of {}", w.volume.handle));
                    self.failed(&operation, Some(&w.pod), reason, &e).await;
                    continue;
                }
                self.staged
                    .insert(w.volume.handle.clone(), w.volume.clone());
            }
            if let Err(e) = self.ops.publish(&key.0, &w.volume, &publish_context).await {
                let e = e.context(format!("NodePublishVolume of {}", w.volume.handle));
                self.failed(&operation, Some(&w.pod), reason, &e).await;
                continue;
            }
            self.backoff.succeeded(&operation);
            let mounted = Mounted {
                namespace: w.pod.namespace().unwrap_or_default(),
                pod: w.pod.name_any(),
                volume: w.volume.clone(),
                path: self.ops.pod_path(&key.0, &w.volume),
            };
            self.mounted
                .lock()
                .expect("mounted")
                .insert(key.clone(), mounted);
        }
    }

    /// The publish context of the volume's attachment to this node once it is attached; an
    /// attach error is reported on the pod once.
    async fn attached(&mut self, w: &Wanted) -> Option<HashMap<String, String>> {
        let name = attachment_name(&w.volume.handle, &self.ops.driver, &self.node);
        let attachment = self.stores.attachments.get(&ObjectRef::new(&name))?;
        let status = attachment.status.as_ref()?;
        if status.attached {
            return Some(
                status
                    .attachment_metadata
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            );
        }
        let message = status.attach_error.as_ref()?.message.clone()?;
        if self.attach_errors.get(&name) != Some(&message) {
            let text = format!(
                "AttachVolume.Attach failed for volume {:?}: {message}",
                w.volume.pv
            );
            self.events.warn(&w.pod, "FailedAttachVolume", &text).await;
            self.attach_errors.insert(name, message);
        }
        None
    }

    /// Pods whose wanted volumes are all published become Running.
    async fn mark_running(
        &mut self,
        wanted: &BTreeMap<PodVolume, Wanted>,
        unready: &BTreeSet<String>,
    ) {
        let mounted = self.mounted.lock().expect("mounted").clone();
        for pod in self.stores.pods.state() {
            let uid = pod.uid().unwrap_or_default();
            let waiting = wanted
                .keys()
                .any(|k| k.0 == uid && !mounted.contains_key(k));
            if pods::terminating(&pod) || pods::running(&pod) || waiting || unready.contains(&uid) {
                continue;
            }
            let operation = format!("status/{uid}");
            if !self.backoff.may_run(&operation, Instant::now()) {
                continue;
            }
            match pods::mark_running(&self.client, &pod).await {
                Ok(()) => self.backoff.succeeded(&operation),
                Err(e) => self.failed(&operation, None, "", &e.into()).await,
            }
        }
    }

    /// Backs `operation` off, logs why and, with a pod and a reason, records it on the pod.
    pub(super) async fn failed(
        &mut self,
        operation: &str,
        pod: Option<&Arc<Pod>>,
        reason: &str,
        error: &anyhow::Error,
    ) {
        let delay = self.backoff.failed(operation, Instant::now());
        let message = format!("{error:#}");
        eprintln!(
            "kubelet stand-in {}: {operation} failed (retry in {delay:?}): {message}",
            self.node
        );
        if let Some(pod) = pod.filter(|_| !reason.is_empty()) {
            self.events.warn(pod, reason, &message).await;
        }
    }
}

/// Sleeps until `at`, or forever without it.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

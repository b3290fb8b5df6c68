//! The kubelet stand-in against a real control plane (etcd, kube-apiserver, kube-controller-manager)
//! and the real driver (the `sim` target: rds-sim, rds-csi serving controller and node in loop
//! mode): the Node and its Lease, the CSINode from NodeGetInfo, and a Pod's file system and block
//! volumes from the attach-detach controller's VolumeAttachments to the final delete. The test acts
//! as external-attacher (ControllerPublishVolume, then the VolumeAttachment's status) until the
//! cluster target wires in the real one.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSINode, VolumeAttachment};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use rds_csi::csi::v1::volume_capability::access_mode::Mode;
use rds_csi::csi::v1::{
    CapacityRange, ControllerExpandVolumeRequest, ControllerPublishVolumeRequest,
    DeleteVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, VolumeCapability,
};
use rds_e2e::cluster::control_plane::ControlPlane;
use rds_e2e::cluster::kubelet::{
    CONTROLLER_MANAGED, KubeletConfig, KubeletPaths, KubeletStandIn, attachment_name, read_pattern,
    unique_volume_name, write_pattern,
};
use rds_e2e::config::Settings;
use rds_e2e::go_tools::GoTools;
use rds_e2e::requests;
use rds_e2e::target::{SIM_NODE_ID, Target};
use serde_json::json;
use tokio_stream::StreamExt;

const NODE: &str = "standin-node-1";
const NAMESPACE: &str = "default";
/// How long any one step may take: the controller manager's loops run every 100 ms to a few
/// seconds, but two loaded cores slow everything.
const STEP: Duration = Duration::from_secs(120);
/// The heartbeat the test asks for, so a renewal is seen in seconds rather than kubelet's 10.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The file system of the file system volumes: XFS, because growing a mounted ext4 needs
/// CAP_SYS_RESOURCE, which containers (this test's CI among them) often lack, while xfs_growfs
/// needs only CAP_SYS_ADMIN, which mounting needs anyway.
const FS_TYPE: &str = "xfs";
/// How much of each volume the test writes and reads back.
const PATTERN_LEN: usize = 1 << 20;

#[test]
fn the_kubelet_stand_in_runs_a_pods_volumes_on_a_real_control_plane() {
    let tools = match GoTools::locate() {
        Ok(tools) => tools,
        Err(e) => match e.skip_reason() {
            Some(reason) => {
                eprintln!("SKIPPED kubelet_standin: {reason}");
                return;
            }
            None => panic!("{e}"),
        },
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(tools))
        .unwrap();
}

async fn run(tools: GoTools) -> anyhow::Result<()> {
    let target = Target::start(&Settings::sim_defaults()).await?;
    if let Err(skip) = target.node_host().can_attach() {
        anyhow::ensure!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the node cannot attach here: {skip:?}"
        );
        eprintln!("SKIPPED kubelet_standin: {skip:?}");
        return Ok(());
    }
    let dir = tempfile::Builder::new()
        .prefix("rds-e2e-kubelet-")
        .tempdir()?;
    let plane = ControlPlane::start(&tools, dir.path()).await?;
    let client = plane.client();
    let driver = target.driver_config().driver_name.clone();
    let config = KubeletConfig {
        heartbeat: HEARTBEAT,
        ..KubeletConfig::new(NODE, &driver, &target.node_host().dir().join("kubelet"))
    };
    let mut kubelet = KubeletStandIn::start_with(client.clone(), config, target.node()).await?;

    let mut made = Made::default();
    let checked = async {
        node_is_registered(&client, &kubelet).await?;
        pod_volumes(&client, &target, &kubelet, &driver, &mut made).await?;
        failed_mount(&client, &target, &driver, &mut made).await
    }
    .await;

    let paths = kubelet.paths().clone();
    kubelet.stop().await;
    made.undo(&target, &paths, &driver).await;
    plane.shutdown().await;
    target.shutdown().await?;
    checked
}

/// The Node is Ready with the attach-detach annotation and the driver's node ID, its Lease is
/// renewed, and the CSINode carries what NodeGetInfo reported.
async fn node_is_registered(client: &Client, kubelet: &KubeletStandIn) -> anyhow::Result<()> {
    same(kubelet.node_id(), SIM_NODE_ID)?;
    let node = Api::<Node>::all(client.clone()).get(NODE).await?;
    let annotations = node.annotations();
    same(
        annotations.get(CONTROLLER_MANAGED).map(String::as_str),
        Some("true"),
    )?;
    let ids: serde_json::Value = serde_json::from_str(
        annotations
            .get("csi.volume.kubernetes.io/nodeid")
            .context("the Node has no node ID annotation")?,
    )?;
    same(ids, json!({"rds.csi.mikrotik.com": SIM_NODE_ID}))?;
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .context("the Node has no Ready condition")?;
    anyhow::ensure!(ready.status == "True", "the Node is not Ready: {ready:?}");

    let csi_node = Api::<CSINode>::all(client.clone()).get(NODE).await?;
    let [entry] = csi_node.spec.drivers.as_slice() else {
        anyhow::bail!("CSINode {NODE} has drivers {:?}", csi_node.spec.drivers);
    };
    same(entry.name.as_str(), "rds.csi.mikrotik.com")?;
    same(entry.node_id.as_str(), SIM_NODE_ID)?;
    same(entry.allocatable.as_ref().and_then(|a| a.count), Some(4))?;

    let leases = Api::<Lease>::namespaced(client.clone(), "kube-node-lease");
    let renewed = leases
        .get(NODE)
        .await?
        .spec
        .and_then(|s| s.renew_time)
        .context("the Lease has no renewTime")?;
    wait(
        "the Lease is renewed",
        leases,
        NODE,
        move |l: Option<&Lease>| {
            l.and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
                .is_some_and(|t| *t > renewed)
        },
    )
    .await?;
    Ok(())
}

/// A Pod with a file system and a block volume: attached by the attach-detach controller's
/// VolumeAttachments, staged and published, data written and read back through both; deleted:
/// unpublished, unstaged, out of volumesInUse, the Pod gone and the attachments deleted.
async fn pod_volumes(
    client: &Client,
    target: &Target,
    kubelet: &KubeletStandIn,
    driver: &str,
    made: &mut Made,
) -> anyhow::Result<()> {
    let mut fs = Volume::create(client, target, "fs", false, &[]).await?;
    made.volumes.push(fs.made());
    let mut raw = Volume::create(client, target, "raw", true, &[]).await?;
    made.volumes.push(raw.made());
    let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "standin-pod"},
        "spec": {
            "nodeName": NODE,
            "containers": [{
                "name": "app",
                "image": "none",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "volumeDevices": [{"name": "raw", "devicePath": "/dev/raw"}],
            }],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": fs.claim}},
                {"name": "raw", "persistentVolumeClaim": {"claimName": raw.claim}},
            ],
        },
    }))?;
    let pod = pods.create(&PostParams::default(), &pod).await?;
    made.pod_uids.extend(pod.uid());
    for volume in [&mut fs, &mut raw] {
        volume.attach(client, target, driver).await?;
    }
    wait(
        "the Pod runs",
        pods.clone(),
        "standin-pod",
        conditions::is_pod_running(),
    )
    .await?;

    let mut in_use: Vec<String> = [&fs, &raw]
        .iter()
        .map(|v| unique_volume_name(driver, &v.id))
        .collect();
    in_use.sort();
    same(volumes_in_use(client).await?, in_use)?;
    let state = target.node_host().state()?;
    let published = kubelet
        .published(NAMESPACE, "standin-pod", "data")
        .context("the file system volume is not published")?;
    let staging = kubelet.staging_path(&published.volume);
    for path in [&staging, &published.path] {
        let path = path.display().to_string();
        anyhow::ensure!(state.mounts.contains(&path), "{path} not in {state:?}");
    }
    anyhow::ensure!(
        state.attachments.len() == 2,
        "not two attachments: {state:?}"
    );
    for (volume, seed) in [("data", 1), ("raw", 2)] {
        let path = kubelet.published_path(NAMESPACE, "standin-pod", volume)?;
        write_pattern(&path, seed, PATTERN_LEN)?;
        read_pattern(&path, seed, PATTERN_LEN)?;
    }
    expansion(client, target, kubelet, &fs).await?;

    // A second pod on the node reads the file system volume through a read-only claim: published
    // to it read-only, staged once for both.
    let reader: Pod = serde_json::from_value(json!({
        "metadata": {"name": "reader-pod"},
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": "app", "image": "none"}],
            "volumes": [{
                "name": "data",
                "persistentVolumeClaim": {"claimName": fs.claim, "readOnly": true},
            }],
        },
    }))?;
    let reader = pods.create(&PostParams::default(), &reader).await?;
    made.pod_uids.extend(reader.uid());
    wait(
        "the reader Pod runs",
        pods.clone(),
        "reader-pod",
        conditions::is_pod_running(),
    )
    .await?;
    let reader_path = kubelet.published_path(NAMESPACE, "reader-pod", "data")?;
    read_pattern(&reader_path, 1, PATTERN_LEN)?;
    anyhow::ensure!(
        write_pattern(&reader_path, 3, PATTERN_LEN).is_err(),
        "{} is published read-only, yet took a write",
        reader_path.display()
    );

    delete_pod(&pods, &pod).await?;
    anyhow::ensure!(
        kubelet
            .published(NAMESPACE, "standin-pod", "data")
            .is_none(),
        "the stand-in still has the volume published to the deleted Pod"
    );
    // The reader still uses the file system volume: it stays staged; the block volume is gone.
    let state = target.node_host().state()?;
    let mut expected = vec![
        staging.display().to_string(),
        reader_path.display().to_string(),
    ];
    expected.sort();
    let mut mounts = state.mounts.clone();
    mounts.sort();
    same(mounts, expected)?;
    anyhow::ensure!(
        state.attachments.len() == 1,
        "not one attachment: {state:?}"
    );
    same(
        volumes_in_use(client).await?,
        vec![unique_volume_name(driver, &fs.id)],
    )?;
    read_pattern(&reader_path, 1, PATTERN_LEN)?;

    delete_pod(&pods, &reader).await?;
    let state = target.node_host().state()?;
    anyhow::ensure!(
        state.mounts.is_empty() && state.attachments.is_empty(),
        "left on the node: {state:?}"
    );
    same(volumes_in_use(client).await?, Vec::<String>::new())?;
    for volume in [&fs, &raw] {
        // Detached by the attach-detach controller only because the volume left volumesInUse.
        let attachments = Api::<VolumeAttachment>::all(client.clone());
        let uid = volume.attachment_uid.clone();
        wait(
            "the VolumeAttachment is deleted",
            attachments,
            &volume.attachment,
            conditions::is_deleted(&uid),
        )
        .await?;
    }
    Ok(())
}

/// Fails unless `actual` is `expected`: an error, not a panic, so the test still cleans up.
fn same<T: PartialEq + std::fmt::Debug>(actual: T, expected: T) -> anyhow::Result<()> {
    anyhow::ensure!(
        actual == expected,
        "expected {expected:?}, found {actual:?}"
    );
    Ok(())
}

/// Expansion as external-resizer leaves it to the node: the controller has grown the volume, the
/// PV has the new capacity and the claim FileSystemResizePending. The stand-in grows the file
/// system through the publish target and finishes the claim's status.
async fn expansion(
    client: &Client,
    target: &Target,
    kubelet: &KubeletStandIn,
    volume: &Volume,
) -> anyhow::Result<()> {
    const GROWN: i64 = 2 << 30;
    target
        .controller()
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: volume.id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: GROWN,
                limit_bytes: 0,
            }),
            volume_capability: Some(capability(volume.block)),
            ..Default::default()
        })
        .await?;
    let grown = json!({"spec": {"capacity": {"storage": "2Gi"}}});
    Api::<PersistentVolume>::all(client.clone())
        .patch(&volume.pv, &PatchParams::default(), &Patch::Merge(&grown))
        .await?;
    let pending = json!({"status": {"conditions": [{
        "type": "FileSystemResizePending",
        "status": "True",
        "message": "Waiting for user to (re-)start a pod to finish file system resize of volume on node.",
    }]}});
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NAMESPACE);
    claims
        .patch_status(
            &volume.claim,
            &PatchParams::default(),
            &Patch::Merge(&pending),
        )
        .await?;
    wait(
        "the claim's resize is finished",
        claims,
        &volume.claim,
        |c: Option<&PersistentVolumeClaim>| {
            let Some(status) = c.and_then(|c| c.status.as_ref()) else {
                return false;
            };
            let pending = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "FileSystemResizePending");
            let capacity = status.capacity.as_ref().and_then(|c| c.get("storage"));
            !pending && capacity.is_some_and(|q| q.0 == "2Gi")
        },
    )
    .await?;
    let path = kubelet.published_path(NAMESPACE, "standin-pod", "data")?;
    let fs = rustix::fs::statvfs(&path)?;
    let size = fs.f_blocks * fs.f_frsize;
    anyhow::ensure!(
        size > (3 << 30) / 2,
        "the file system at {} has {size} bytes after growing to {GROWN}",
        path.display()
    );
    read_pattern(&path, 1, PATTERN_LEN)
}

/// A volume the node plugin refuses to stage (a volume attribute it rejects): the stand-in
/// records FailedMount on the Pod and keeps retrying; the Pod, deleted, goes at once.
async fn failed_mount(
    client: &Client,
    target: &Target,
    driver: &str,
    made: &mut Made,
) -> anyhow::Result<()> {
    let mut volume =
        Volume::create(client, target, "broken", false, &[("ctrlLossTmo", "soon")]).await?;
    made.volumes.push(volume.made());
    let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "broken-pod"},
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": "app", "image": "none"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": volume.claim}}],
        },
    }))?;
    let pod = pods.create(&PostParams::default(), &pod).await?;
    volume.attach(client, target, driver).await?;
    let events = Api::<Event>::namespaced(client.clone(), NAMESPACE);
    let selector = watcher::Config::default().fields("involvedObject.name=broken-pod");
    let failures = watcher(events, selector)
        .applied_objects()
        .filter_map(|event| event.ok())
        .filter(|event| event.reason.as_deref() == Some("FailedMount"));
    let mut failures = std::pin::pin!(failures);
    let failed = failures.next();
    let event = tokio::time::timeout(STEP, failed)
        .await
        .context("waited in vain for FailedMount on broken-pod")?
        .context("the watch of events ended")?;
    let message = event.message.unwrap_or_default();
    anyhow::ensure!(
        message.contains("ctrlLossTmo") && message.contains(&volume.id),
        "FailedMount does not say why: {message}"
    );
    anyhow::ensure!(
        pods.get("broken-pod").await?.status.and_then(|s| s.phase) != Some("Running".into()),
        "a Pod whose volume failed to mount runs"
    );
    delete_pod(&pods, &pod).await?;
    Ok(())
}

/// Deletes `pod` as a user does (gracefully) and awaits the stand-in's final delete.
async fn delete_pod(pods: &Api<Pod>, pod: &Pod) -> anyhow::Result<()> {
    let name = pod.name_any();
    pods.delete(&name, &DeleteParams::default()).await?;
    let uid = pod.uid().unwrap_or_default();
    wait(
        "the Pod is finally deleted",
        pods.clone(),
        &name,
        conditions::is_deleted(&uid),
    )
    .await?;
    Ok(())
}

async fn volumes_in_use(client: &Client) -> anyhow::Result<Vec<String>> {
    let node = Api::<Node>::all(client.clone()).get(NODE).await?;
    Ok(node
        .status
        .and_then(|s| s.volumes_in_use)
        .unwrap_or_default())
}

/// A volume made with CreateVolume, and the PV and claim bound to it by hand.
struct Volume {
    id: String,
    pv: String,
    claim: String,
    block: bool,
    attachment: String,
    attachment_uid: String,
}

impl Volume {
    async fn create(
        client: &Client,
        target: &Target,
        name: &str,
        block: bool,
        attributes: &[(&str, &str)],
    ) -> anyhow::Result<Volume> {
        let mut request =
            requests::create_volume(&requests::unique_name(name), 1 << 30, &Default::default());
        request.volume_capabilities = vec![capability(block)];
        let created = target
            .controller()
            .create_volume(request)
            .await?
            .into_inner()
            .volume
            .context("CreateVolume returned no volume")?;
        let (pv, claim) = (format!("standin-{name}"), format!("standin-{name}-claim"));
        let mut context = created.volume_context.clone();
        context.extend(
            attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let mode = if block { "Block" } else { "Filesystem" };
        let volume: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": mode,
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "claimRef": {"namespace": NAMESPACE, "name": claim},
                "csi": {
                    "driver": target.driver_config().driver_name,
                    "volumeHandle": created.volume_id,
                    "fsType": FS_TYPE,
                    "volumeAttributes": context,
                },
            },
        }))?;
        Api::<PersistentVolume>::all(client.clone())
            .create(&PostParams::default(), &volume)
            .await?;
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": mode,
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }))?;
        let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NAMESPACE);
        claims.create(&PostParams::default(), &pvc).await?;
        wait(
            "the claim is bound",
            claims,
            &claim,
            |c: Option<&PersistentVolumeClaim>| {
                c.and_then(|c| c.status.as_ref()?.phase.as_deref()) == Some("Bound")
            },
        )
        .await?;
        Ok(Volume {
            id: created.volume_id,
            pv,
            claim,
            block,
            attachment: String::new(),
            attachment_uid: String::new(),
        })
    }

    /// Does what external-attacher does once the attach-detach controller has made the
    /// VolumeAttachment under kubelet's name for it: ControllerPublishVolume, then the status.
    async fn attach(
        &mut self,
        client: &Client,
        target: &Target,
        driver: &str,
    ) -> anyhow::Result<()> {
        self.attachment = attachment_name(&self.id, driver, NODE);
        let attachments = Api::<VolumeAttachment>::all(client.clone());
        let made = wait(
            "the attach-detach controller makes the VolumeAttachment",
            attachments.clone(),
            &self.attachment,
            conditions::is_created(),
        )
        .await?;
        self.attachment_uid = made.and_then(|va| va.uid()).unwrap_or_default();
        let published = target
            .controller()
            .controller_publish_volume(ControllerPublishVolumeRequest {
                volume_id: self.id.clone(),
                node_id: SIM_NODE_ID.to_owned(),
                volume_capability: Some(capability(self.block)),
                ..Default::default()
            })
            .await?
            .into_inner();
        let status = json!({"status": {
            "attached": true,
            "attachmentMetadata": published.publish_context,
        }});
        attachments
            .patch_status(
                &self.attachment,
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await?;
        Ok(())
    }

    fn made(&self) -> MadeVolume {
        MadeVolume {
            id: self.id.clone(),
            pv: self.pv.clone(),
            block: self.block,
        }
    }
}

/// What the test made on the node and the RDS, undone whether it passed or failed, so a failed
/// run leaves no mounts or loop devices on the host.
#[derive(Default)]
struct Made {
    pod_uids: Vec<String>,
    volumes: Vec<MadeVolume>,
}

struct MadeVolume {
    id: String,
    pv: String,
    block: bool,
}

impl Made {
    /// Unpublishes, unstages, unpublishes from the node and deletes every volume: what the
    /// stand-in and the attach-detach controller did already is a success again (the CSI calls
    /// are idempotent).
    async fn undo(&self, target: &Target, paths: &KubeletPaths, driver: &str) {
        let (mut node, mut controller) = (target.node(), target.controller());
        for volume in &self.volumes {
            let staging = match volume.block {
                true => paths.block_staging(&volume.pv),
                false => paths.staging(driver, &volume.id),
            };
            for uid in &self.pod_uids {
                let path = match volume.block {
                    true => paths.block_publish(uid, &volume.pv),
                    false => paths.mount_target(uid, &volume.pv),
                };
                let request = NodeUnpublishVolumeRequest {
                    volume_id: volume.id.clone(),
                    target_path: path.display().to_string(),
                };
                if let Err(error) = node.node_unpublish_volume(request).await {
                    eprintln!("cleaning up volume {}: {error}", volume.id);
                }
            }
            let results = [
                node.node_unstage_volume(NodeUnstageVolumeRequest {
                    volume_id: volume.id.clone(),
                    staging_target_path: staging.display().to_string(),
                })
                .await
                .err(),
                controller
                    .controller_unpublish_volume(requests::unpublish(&volume.id, SIM_NODE_ID))
                    .await
                    .err(),
                controller
                    .delete_volume(DeleteVolumeRequest {
                        volume_id: volume.id.clone(),
                        ..Default::default()
                    })
                    .await
                    .err(),
            ];
            for error in results.into_iter().flatten() {
                eprintln!("cleaning up volume {}: {error}", volume.id);
            }
        }
    }
}

fn capability(block: bool) -> VolumeCapability {
    if block {
        requests::block_capability(Mode::SingleNodeWriter)
    } else {
        requests::fs_capability(FS_TYPE)
    }
}

/// Awaits `condition` on the object `name` from a watch, failing after [`STEP`]; the object
/// when it exists (a condition of deletion holds on none).
async fn wait<K>(
    what: &str,
    api: Api<K>,
    name: &str,
    condition: impl Condition<K>,
) -> anyhow::Result<Option<K>>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let found = tokio::time::timeout(STEP, await_condition(api, name, condition))
        .await
        .with_context(|| format!("waited {STEP:?} in vain until {what} ({name})"))??;
    Ok(found)
}

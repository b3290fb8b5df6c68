//! Access modes and KubeVirt live migration (docs/operations.md, "KubeVirt live migration"). The
//! suites act as virt-controller: they make the VirtualMachineInstance and its
//! VirtualMachineInstanceMigration (CRDs from e2e/kubevirt/crds.yaml) and write their status; the
//! "virt-launcher" pods are plain pods bound to a node, which the kubelet stand-in runs.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::storage::v1::{CSINode, StorageClass, VolumeAttachment};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client};
use rds_csi::kubernetes::migration::{instance_resource, migration_resource};
use rds_csi::rds::allow_list;
use rds_e2e::cluster::objects::{self, NAMESPACE, Source, WAIT};
use rds_e2e::cluster::target::{ClusterTarget, NODES};
use serde_json::json;

use rds_e2e::cluster::reach::Cluster;

use super::{CaseFuture, STORAGE_CLASS, delete_claims, volume_handle};

/// Why the migration trials run on the process cluster only.
pub const NOT_ON_KIND: &str = "it shortens the StorageClass's migration window to seconds, \
    registers a third Node with no kubelet and applies the KubeVirt CRDs with the process \
    cluster's admin kubeconfig, and reads allow lists from the in-process rds-sim";

/// A node with no kubelet: only its Node and CSINode, enough for the attach-detach controller
/// and external-attacher to try attaching to it.
const THIRD_NODE: &str = "node-c";
const THIRD_HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:5e2e0000-0000-4000-8000-c1a5000000cc";
/// The StorageClass with a short migrationTimeoutSeconds.
const BRIEF_CLASS: &str = "rds-nvme-brief";
/// Long enough for the target to attach within the window on a busy machine.
const BRIEF_TIMEOUT_SECONDS: u64 = 20;

/// Start, attach to the target, a third node refused, complete: the source fenced out.
pub fn migration_window(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(async move {
        let client = cluster.client();
        install_kubevirt(cluster)?;
        let (a, b) = (host(cluster, NODES[0])?, host(cluster, NODES[1])?);
        let (volume, handle) = shared_block_claim(&client, "disk", STORAGE_CLASS).await?;
        create_vmi(&client, "vm", "disk", NODES[0]).await?;
        launcher(&client, "launcher-a", NODES[0], "disk").await?;
        objects::running_pod(&client, "launcher-a").await?;
        allow_list_becomes(cluster, &handle, &[&a]).await?;

        start_migration(&client, "migrate", "vm", NODES[0], NODES[1]).await?;
        event(&client, "disk", "MigrationStarted").await?;
        launcher(&client, "launcher-b", NODES[1], "disk").await?;
        objects::running_pod(&client, "launcher-b").await?;
        allow_list_becomes(cluster, &handle, &[&a, &b]).await?;

        let driver = volume_driver(&volume)?;
        add_third_node(&client, &driver).await?;
        launcher(&client, "launcher-c", THIRD_NODE, "disk").await?;
        attach_refused(&client, &volume, THIRD_NODE, &[&a, &b, "no third node"]).await?;

        finish_migration(&client, "migrate", "vm", true).await?;
        allow_list_becomes(cluster, &handle, &[&b]).await?;
        event(&client, "disk", "MigrationCompleted").await?;

        // The source's pod goes, as KubeVirt's does: its detach leaves the target alone.
        let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
        force_delete(&pods, "launcher-c").await?;
        objects::delete_and_wait(pods.clone(), "launcher-a").await?;
        no_attachment(&client, &volume, NODES[0]).await?;
        allow_list_becomes(cluster, &handle, &[&b]).await?;
        objects::delete_and_wait(pods, "launcher-b").await?;
        remove_third_node(&client).await?;
        remove_kubevirt_objects(&client, "migrate", "vm").await?;
        delete_claims(Cluster::Processes(cluster), &["disk"]).await
    })
}

/// A migration that outlives its StorageClass's migrationTimeoutSeconds: the target, attached
/// within the window, is taken off the allow-list when it ends (MigrationFailed), a new attachment
/// to it is refused, and the source keeps the volume throughout.
pub fn migration_timeout(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(async move {
        let client = cluster.client();
        install_kubevirt(cluster)?;
        let (a, b) = (host(cluster, NODES[0])?, host(cluster, NODES[1])?);
        brief_class(&client).await?;
        let (volume, handle) = shared_block_claim(&client, "disk", BRIEF_CLASS).await?;
        create_vmi(&client, "vm", "disk", NODES[0]).await?;
        launcher(&client, "launcher-a", NODES[0], "disk").await?;
        objects::running_pod(&client, "launcher-a").await?;

        start_migration(&client, "migrate", "vm", NODES[0], NODES[1]).await?;
        event(&client, "disk", "MigrationStarted").await?;
        launcher(&client, "launcher-b", NODES[1], "disk").await?;
        objects::running_pod(&client, "launcher-b").await?;
        allow_list_becomes(cluster, &handle, &[&a, &b]).await?;
        // The window ends with the migration still running: the target goes, the source stays.
        allow_list_becomes(cluster, &handle, &[&a]).await?;
        let failed = event(&client, "disk", "MigrationFailed").await?;
        let note = failed.note.unwrap_or_default();
        anyhow::ensure!(
            note.contains(&format!(
                "migrationTimeoutSeconds ({BRIEF_TIMEOUT_SECONDS}s)"
            )) && note.contains(&a),
            "the MigrationFailed Event says {note:?}"
        );

        let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
        objects::delete_and_wait(pods.clone(), "launcher-b").await?;
        no_attachment(&client, &volume, NODES[1]).await?;
        launcher(&client, "launcher-b2", NODES[1], "disk").await?;
        let says = format!("migrationTimeoutSeconds ({BRIEF_TIMEOUT_SECONDS}s)");
        attach_refused(&client, &volume, NODES[1], &[&a, &says]).await?;
        allow_list_becomes(cluster, &handle, &[&a]).await?;

        finish_migration(&client, "migrate", "vm", false).await?;
        force_delete(&pods, "launcher-b2").await?;
        no_attachment(&client, &volume, NODES[1]).await?;
        objects::delete_and_wait(pods, "launcher-a").await?;
        remove_kubevirt_objects(&client, "migrate", "vm").await?;
        delete_claims(Cluster::Processes(cluster), &["disk"]).await?;
        Api::<StorageClass>::all(client)
            .delete(BRIEF_CLASS, &DeleteParams::default())
            .await?;
        Ok(())
    })
}

/// A ReadWriteOnce claim in use on one node: an attachment to the other is refused, and the
/// VolumeAttachment says which node holds it. The attach-detach controller never asks for that
/// (it reports Multi-Attach on the pod instead), so the suite makes the VolumeAttachment itself,
/// as anything else that attaches volumes might; external-attacher calls ControllerPublishVolume.
pub fn rwo_second_node_refused(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(async move {
        let client = cluster.client();
        let a = host(cluster, NODES[0])?;
        let claim = objects::pvc("single", STORAGE_CLASS, "64Mi", true, Source::None);
        objects::create(&client, &claim).await?;
        let volume = objects::bound_volume(&client, "single").await?;
        let handle = volume_handle(&volume).context("the PV has no volume handle")?;
        objects::create(&client, &objects::pod("first", NODES[0], "single", true)).await?;
        objects::running_pod(&client, "first").await?;
        let attachments = Api::<VolumeAttachment>::all(client.clone());
        let manual: VolumeAttachment = serde_json::from_value(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
            "metadata": {"name": "second-node"},
            "spec": {
                "attacher": volume_driver(&volume)?,
                "nodeName": NODES[1],
                "source": {"persistentVolumeName": volume.metadata.name},
            },
        }))?;
        attachments.create(&PostParams::default(), &manual).await?;
        attach_refused(&client, &volume, NODES[1], &[&a, "one node at a time"]).await?;
        allow_list_becomes(cluster, &handle, &[&a]).await?;

        objects::delete_and_wait(attachments, "second-node").await?;
        let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
        objects::delete_and_wait(pods, "first").await?;
        delete_claims(Cluster::Processes(cluster), &["single"]).await
    })
}

fn install_kubevirt(cluster: &ClusterTarget) -> anyhow::Result<()> {
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("kubevirt/crds.yaml");
    cluster
        .helm()
        .apply_crds(cluster.admin_kubeconfig(), &crds)
        .context("installing the KubeVirt CRDs")?;
    Ok(())
}

fn host(cluster: &ClusterTarget, node: &str) -> anyhow::Result<String> {
    Ok(cluster.node(node)?.host_nqn.clone())
}

fn volume_driver(volume: &PersistentVolume) -> anyhow::Result<String> {
    Ok(volume
        .spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .context("the PV is not a CSI volume")?
        .driver
        .clone())
}

/// A ReadWriteMany raw block claim, as KubeVirt's live-migratable VMs use; its PV and handle.
async fn shared_block_claim(
    client: &Client,
    name: &str,
    class: &str,
) -> anyhow::Result<(PersistentVolume, String)> {
    let mut claim: PersistentVolumeClaim = objects::pvc(name, class, "64Mi", true, Source::None);
    if let Some(spec) = claim.spec.as_mut() {
        spec.access_modes = Some(vec!["ReadWriteMany".to_owned()]);
    }
    objects::create(client, &claim).await?;
    let volume = objects::bound_volume(client, name).await?;
    let handle = volume_handle(&volume).context("the PV has no volume handle")?;
    Ok((volume, handle))
}

/// A copy of the chart's StorageClass with a short migrationTimeoutSeconds.
async fn brief_class(client: &Client) -> anyhow::Result<()> {
    let classes = Api::<StorageClass>::all(client.clone());
    let mut class = classes.get(STORAGE_CLASS).await?;
    class.metadata = kube::api::ObjectMeta {
        name: Some(BRIEF_CLASS.to_owned()),
        ..Default::default()
    };
    class.parameters.get_or_insert_default().insert(
        "migrationTimeoutSeconds".to_owned(),
        BRIEF_TIMEOUT_SECONDS.to_string(),
    );
    classes.create(&PostParams::default(), &class).await?;
    Ok(())
}

fn kubevirt_api(client: &Client, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), NAMESPACE, resource)
}

/// A VMI whose disk is the claim `claim`, running on `node`.
async fn create_vmi(client: &Client, name: &str, claim: &str, node: &str) -> anyhow::Result<()> {
    let resource = instance_resource();
    let api = kubevirt_api(client, &resource);
    let vmi = DynamicObject::new(name, &resource)
        .within(NAMESPACE)
        .data(json!({
            "spec": {
                "domain": {"devices": {"disks": [{"name": "disk", "disk": {"bus": "virtio"}}]}},
                "volumes": [{"name": "disk", "persistentVolumeClaim": {"claimName": claim}}],
            }
        }));
    api.create(&PostParams::default(), &vmi)
        .await
        .with_context(|| format!("creating VMI {name}"))?;
    let status = json!({"status": {"phase": "Running", "nodeName": node}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    Ok(())
}

/// The VMI's virt-launcher pod on `node`: it uses the claim as a block device.
async fn launcher(client: &Client, name: &str, node: &str, claim: &str) -> anyhow::Result<()> {
    objects::create(client, &objects::pod(name, node, claim, true)).await?;
    Ok(())
}

/// A migration of `vmi` from `source` to `target`, Running, as virt-controller records it.
async fn start_migration(
    client: &Client,
    name: &str,
    vmi: &str,
    source: &str,
    target: &str,
) -> anyhow::Result<()> {
    let resource = migration_resource();
    let api = kubevirt_api(client, &resource);
    let migration = DynamicObject::new(name, &resource)
        .within(NAMESPACE)
        .data(json!({"spec": {"vmiName": vmi}}));
    let made = api
        .create(&PostParams::default(), &migration)
        .await
        .with_context(|| format!("creating VirtualMachineInstanceMigration {name}"))?;
    let uid = made.metadata.uid.context("the migration has no uid")?;
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await?;
    let state = json!({"status": {"migrationState": {
        "migrationUid": uid, "sourceNode": source, "targetNode": target,
    }}});
    kubevirt_api(client, &instance_resource())
        .patch_status(vmi, &PatchParams::default(), &Patch::Merge(state))
        .await?;
    Ok(())
}

/// The migration ends: Succeeded (the VMI runs on the target) or Failed.
async fn finish_migration(
    client: &Client,
    name: &str,
    vmi: &str,
    succeeded: bool,
) -> anyhow::Result<()> {
    let phase = if succeeded { "Succeeded" } else { "Failed" };
    kubevirt_api(client, &migration_resource())
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": phase}})),
        )
        .await?;
    let instances = kubevirt_api(client, &instance_resource());
    let current = instances.get(vmi).await?;
    let state = current.data.pointer("/status/migrationState");
    let node = state
        .and_then(|s| {
            s.get(if succeeded {
                "targetNode"
            } else {
                "sourceNode"
            })
        })
        .cloned()
        .context("the VMI has no migration state")?;
    let status = json!({"status": {"nodeName": node, "migrationState": {
        "completed": succeeded, "failed": !succeeded,
    }}});
    instances
        .patch_status(vmi, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    Ok(())
}

async fn remove_kubevirt_objects(
    client: &Client,
    migration: &str,
    vmi: &str,
) -> anyhow::Result<()> {
    objects::delete_and_wait(kubevirt_api(client, &migration_resource()), migration).await?;
    objects::delete_and_wait(kubevirt_api(client, &instance_resource()), vmi).await
}

/// The Node and CSINode a kubelet would register for [`THIRD_NODE`], with its host NQN as the
/// driver's node id; no Ready condition, so fencing leaves it alone.
async fn add_third_node(client: &Client, driver: &str) -> anyhow::Result<()> {
    let ids = json!({ driver: THIRD_HOST }).to_string();
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": THIRD_NODE, "annotations": {
            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            "csi.volume.kubernetes.io/nodeid": ids,
        }},
    }))?;
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await?;
    let csi_node: CSINode = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
        "metadata": {"name": THIRD_NODE},
        "spec": {"drivers": [{"name": driver, "nodeID": THIRD_HOST, "topologyKeys": []}]},
    }))?;
    Api::<CSINode>::all(client.clone())
        .create(&PostParams::default(), &csi_node)
        .await?;
    Ok(())
}

async fn remove_third_node(client: &Client) -> anyhow::Result<()> {
    objects::delete_and_wait(Api::<CSINode>::all(client.clone()), THIRD_NODE).await?;
    objects::delete_and_wait(Api::<Node>::all(client.clone()), THIRD_NODE).await
}

/// Deletes a pod whose volumes never attached at once (its node may have no kubelet).
async fn force_delete(pods: &Api<Pod>, name: &str) -> anyhow::Result<()> {
    pods.delete(name, &DeleteParams::default().grace_period(0))
        .await
        .with_context(|| format!("deleting pod {name}"))?;
    objects::gone(pods.clone(), name).await
}

/// Polls `check` every half second until it answers `Some`, for at most [`WAIT`].
async fn poll<T>(
    what: &str,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "waited {WAIT:?} until {what}, in vain"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the disk's allow-list on rds-sim admits exactly `hosts`, in that order.
async fn allow_list_becomes(
    cluster: &ClusterTarget,
    handle: &str,
    hosts: &[&str],
) -> anyhow::Result<()> {
    let mut last = None;
    let waited =
        poll("the allow-list changes", async || {
            let disk = cluster.sim().disks().into_iter().find(|d| d.slot == handle);
            let value = disk.map(|d| d.nvme_tcp_server_allow_host_name);
            let found = value.as_deref().map(allow_list::parse);
            last = value;
            Ok((found.as_deref()
                == Some(&hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()[..]))
            .then_some(()))
        })
        .await;
    waited.with_context(|| {
        format!("disk {handle}: nvme-tcp-server-allow-host-name is {last:?}, expected {hosts:?}")
    })
}

/// Waits for an Event `reason` about the claim `claim`.
async fn event(client: &Client, claim: &str, reason: &str) -> anyhow::Result<Event> {
    let events = Api::<Event>::namespaced(client.clone(), NAMESPACE);
    poll(
        &format!("an Event {reason} about claim {claim}"),
        async || {
            let list = events.list(&ListParams::default()).await?;
            Ok(list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(claim)
            }))
        },
    )
    .await
}

/// The VolumeAttachment of the PV to `node`, once its attach error says all of `says`.
async fn attach_refused(
    client: &Client,
    volume: &PersistentVolume,
    node: &str,
    says: &[&str],
) -> anyhow::Result<VolumeAttachment> {
    let mut last = None;
    let found = poll(
        &format!("the attachment to {node} is refused"),
        async || {
            let attachment = objects::find_attachment(client, volume, node).await?;
            let error = attachment
                .as_ref()
                .and_then(|va| va.status.as_ref()?.attach_error.as_ref()?.message.clone());
            let refused = error
                .as_deref()
                .is_some_and(|e| says.iter().all(|word| e.contains(word)));
            last = error;
            anyhow::ensure!(
                !attachment
                    .as_ref()
                    .is_some_and(|va| va.status.as_ref().is_some_and(|s| s.attached)),
                "the volume was attached to {node}"
            );
            Ok(attachment.filter(|_| refused))
        },
    )
    .await;
    found.with_context(|| format!("the last attach error: {last:?}; expected it to say {says:?}"))
}

async fn no_attachment(
    client: &Client,
    volume: &PersistentVolume,
    node: &str,
) -> anyhow::Result<()> {
    poll(
        &format!("no VolumeAttachment to {node} is left"),
        async || {
            Ok(objects::find_attachment(client, volume, node)
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await
}

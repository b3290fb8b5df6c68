//! The Kubernetes objects the cluster suites make, as a user writes them, and waits for what the
//! real controllers do with them. Every wait is on the API server's watch events, with a deadline.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

/// How long a suite waits for the controllers (provisioning, attaching, snapshotting) to act.
pub const WAIT: Duration = Duration::from_secs(120);

/// The namespace the suites' objects live in.
pub const NAMESPACE: &str = "default";

/// A PVC's source, as `spec.dataSource` names it.
pub enum Source<'a> {
    None,
    Snapshot(&'a str),
    Pvc(&'a str),
}

/// A PVC of `size` (`64Mi`) in `storage_class`, `Filesystem` or `Block`.
pub fn pvc(
    name: &str,
    storage_class: &str,
    size: &str,
    block: bool,
    source: Source<'_>,
) -> PersistentVolumeClaim {
    let data_source = match source {
        Source::None => serde_json::Value::Null,
        Source::Snapshot(snapshot) => json!({
            "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snapshot
        }),
        Source::Pvc(pvc) => json!({"kind": "PersistentVolumeClaim", "name": pvc}),
    };
    from_json(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "volumeMode": if block { "Block" } else { "Filesystem" },
            "resources": {"requests": {"storage": size}},
            "dataSource": data_source,
        }
    }))
}

/// The image of the suites' pods: kind's nodes pull it (ci/kind.sh's smoke test uses it too); the
/// kubelet stand-in runs no containers.
pub const POD_IMAGE: &str = "busybox:1.36";
/// Where a pod's container finds its claim `data`: a file system's mount point, a block volume's
/// device.
pub const MOUNT_PATH: &str = "/data";
pub const DEVICE_PATH: &str = "/dev/data";
/// The container's command: it waits for I/O to be run in it (`kubectl exec`) and exits at once
/// on SIGTERM, so a deleted pod does not wait out its grace period.
const WAIT_FOR_EXEC: &str = "trap 'exit 0' TERM; while sleep 1; do :; done";

/// A Pod bound to `node` (no scheduler here) that uses the PVC `claim` as the volume `data`,
/// mounted at [`MOUNT_PATH`] or, for a block PVC, as the device [`DEVICE_PATH`].
pub fn pod(name: &str, node: &str, claim: &str, block: bool) -> Pod {
    let mut container = json!({
        "name": POD_CONTAINER,
        "image": POD_IMAGE,
        "command": ["sh", "-c", WAIT_FOR_EXEC],
    });
    let (key, volume) = if block {
        (
            "volumeDevices",
            json!({"name": "data", "devicePath": DEVICE_PATH}),
        )
    } else {
        (
            "volumeMounts",
            json!({"name": "data", "mountPath": MOUNT_PATH}),
        )
    };
    container[key] = json!([volume]);
    from_json(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "nodeName": node,
            "containers": [container],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        }
    }))
}

/// The container of [`pod`].
pub const POD_CONTAINER: &str = "app";

/// The VolumeSnapshot kind (snapshot.storage.k8s.io/v1), from the CRDs the target applied.
pub fn volume_snapshot_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "snapshot.storage.k8s.io",
        "v1",
        "VolumeSnapshot",
    ))
}

/// Creates a VolumeSnapshot of the PVC `source` in `class`.
pub async fn create_volume_snapshot(
    client: &Client,
    name: &str,
    class: &str,
    source: &str,
) -> anyhow::Result<DynamicObject> {
    let resource = volume_snapshot_resource();
    let snapshot = DynamicObject::new(name, &resource)
        .within(NAMESPACE)
        .data(json!({
            "spec": {
                "volumeSnapshotClassName": class,
                "source": {"persistentVolumeClaimName": source},
            }
        }));
    Api::<DynamicObject>::namespaced_with(client.clone(), NAMESPACE, &resource)
        .create(&PostParams::default(), &snapshot)
        .await
        .with_context(|| format!("creating VolumeSnapshot {name}"))
}

fn from_json<K: DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).expect("the suites' objects are valid")
}

/// Creates `object` in the suites' namespace.
pub async fn create<K>(client: &Client, object: &K) -> anyhow::Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = object.meta().name.clone().unwrap_or_default();
    Api::<K>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), object)
        .await
        .with_context(|| format!("creating {} {name}", K::kind(&K::DynamicType::default())))
}

/// Waits until `condition` holds for the object `name` of `api`, and returns it.
pub async fn wait_for<K>(
    api: Api<K>,
    name: &str,
    what: &str,
    condition: impl Condition<K>,
) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    wait_within(WAIT, api, name, what, condition).await
}

/// [`wait_for`] with the deadline `within`: for what has a documented bound.
pub async fn wait_within<K>(
    within: Duration,
    api: Api<K>,
    name: &str,
    what: &str,
    condition: impl Condition<K>,
) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    match tokio::time::timeout(within, await_condition(api, name, condition)).await {
        Ok(Ok(Some(object))) => Ok(object),
        Ok(Ok(None)) => anyhow::bail!("{name} was deleted while waiting until {what}"),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("watching {name} until {what}"))),
        Err(_) => anyhow::bail!("{name}: waited {within:?} until {what}, in vain"),
    }
}

/// Waits until the PVC `name` is Bound, and returns its PV.
pub async fn bound_volume(client: &Client, name: &str) -> anyhow::Result<PersistentVolume> {
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NAMESPACE);
    let claim = wait_for(
        claims,
        name,
        "it is Bound",
        |pvc: Option<&PersistentVolumeClaim>| {
            pvc.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Bound")
        },
    )
    .await?;
    let volume = claim
        .spec
        .and_then(|s| s.volume_name)
        .with_context(|| format!("PVC {name} is Bound to no volume"))?;
    Api::<PersistentVolume>::all(client.clone())
        .get(&volume)
        .await
        .with_context(|| format!("reading PV {volume}"))
}

/// Waits until the Pod `name` runs (the kubelet stand-in has staged and published its volumes).
pub async fn running_pod(client: &Client, name: &str) -> anyhow::Result<Pod> {
    let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
    wait_for(
        pods,
        name,
        "it is Running",
        kube::runtime::conditions::is_pod_running(),
    )
    .await
}

/// Waits until the VolumeSnapshot `name` is readyToUse.
pub async fn ready_snapshot(client: &Client, name: &str) -> anyhow::Result<DynamicObject> {
    let snapshots = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        NAMESPACE,
        &volume_snapshot_resource(),
    );
    wait_for(
        snapshots,
        name,
        "it is readyToUse",
        |s: Option<&DynamicObject>| {
            s.and_then(|s| s.data.pointer("/status/readyToUse")?.as_bool()) == Some(true)
        },
    )
    .await
}

/// The VolumeAttachment of the PV `volume` to `node`, which must be attached (as it is once a
/// Pod that uses it runs: the kubelet stand-in waits for it before staging).
pub async fn attachment(
    client: &Client,
    volume: &PersistentVolume,
    node: &str,
) -> anyhow::Result<VolumeAttachment> {
    let pv = volume.metadata.name.clone().unwrap_or_default();
    let attachment = find_attachment(client, volume, node)
        .await?
        .with_context(|| format!("no VolumeAttachment of PV {pv} to {node}"))?;
    anyhow::ensure!(
        attachment.status.as_ref().is_some_and(|s| s.attached),
        "the VolumeAttachment of PV {pv} to {node} is not attached: {:?}",
        attachment.status
    );
    Ok(attachment)
}

/// The VolumeAttachment of the PV `volume` to `node`, if there is one, in any state.
pub async fn find_attachment(
    client: &Client,
    volume: &PersistentVolume,
    node: &str,
) -> anyhow::Result<Option<VolumeAttachment>> {
    let pv = volume.metadata.name.clone().unwrap_or_default();
    Ok(Api::<VolumeAttachment>::all(client.clone())
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .find(|va| {
            va.spec.node_name == node
                && va.spec.source.persistent_volume_name.as_deref() == Some(pv.as_str())
        }))
}

/// Waits until the attach-detach controller and external-attacher have detached and deleted
/// `attachment`.
pub async fn detached(client: &Client, attachment: &VolumeAttachment) -> anyhow::Result<()> {
    let name = attachment.metadata.name.clone().unwrap_or_default();
    let uid = attachment.metadata.uid.clone().unwrap_or_default();
    let api = Api::<VolumeAttachment>::all(client.clone());
    wait_for_absence(api, &name, &uid).await
}

async fn wait_for_absence<K>(api: Api<K>, name: &str, uid: &str) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    match tokio::time::timeout(
        WAIT,
        await_condition(api, name, kube::runtime::conditions::is_deleted(uid)),
    )
    .await
    {
        Ok(result) => result
            .map(|_| ())
            .with_context(|| format!("watching {name} until it is gone")),
        Err(_) => anyhow::bail!("{name} was not gone within {WAIT:?}"),
    }
}

/// Deletes `name` of kind `K` and waits until it is gone (finalizers done).
pub async fn delete_and_wait<K>(api: Api<K>, name: &str) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("deleting {name}"))),
    }
    gone(api, name).await
}

/// Waits until `name` of kind `K` no longer exists (a controller deletes it).
pub async fn gone<K>(api: Api<K>, name: &str) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let Some(object) = api.get_opt(name).await? else {
        return Ok(());
    };
    let uid = object.meta().uid.clone().unwrap_or_default();
    wait_for_absence(api, name, &uid).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_waits_for_exec_with_its_claim_mounted_or_as_a_device() {
        let pod = pod("writer", "node-a", "data", false);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-a"));
        let container = &spec.containers[0];
        assert_eq!(container.name, POD_CONTAINER);
        assert_eq!(container.image.as_deref(), Some(POD_IMAGE));
        let command = container.command.clone().unwrap();
        assert_eq!(command[..2], ["sh", "-c"]);
        // A real kubelet runs it: it must keep running, and end on SIGTERM.
        assert!(command[2].contains("trap 'exit 0' TERM"), "{command:?}");
        let mounts = container.volume_mounts.clone().unwrap();
        assert_eq!(mounts[0].mount_path, MOUNT_PATH);
        assert!(container.volume_devices.is_none());
        let claim = spec.volumes.unwrap()[0].persistent_volume_claim.clone();
        assert_eq!(claim.unwrap().claim_name, "data");

        let block = super::pod("vm", "node-b", "raw", true).spec.unwrap();
        let devices = block.containers[0].volume_devices.clone().unwrap();
        assert_eq!(devices[0].device_path, DEVICE_PATH);
        assert!(block.containers[0].volume_mounts.is_none());
    }
}

//! The Kubernetes suites: objects, as a user makes them, handled by the real API server,
//! controller-manager, external-provisioner, -attacher, -resizer, csi-snapshotter and
//! snapshot-controller, the chart's rds-csi and a node's kubelet. The first three are shared flows:
//! they run on a process cluster of their own each (e2e/src/cluster/target.rs: kubelet stand-ins)
//! or, with `RDS_E2E_TARGET=kind`, on the kind cluster ci/kind.sh made (real kubelets, the kernel's
//! NVMe/TCP initiator), reaching it only through `Cluster` (e2e/src/cluster/reach.rs). Each ends
//! by checking that nothing is left on the RDS: no disk, no backing file. The others control the
//! processes and run on the process cluster only.

use anyhow::Context;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use rds_e2e::cluster::objects::{self, NAMESPACE, Source};
use rds_e2e::cluster::reach::{Cluster, PodVolume};
use rds_e2e::cluster::target::ClusterTarget;
use rds_e2e::cluster::trial::{CaseFuture, process_trial, trial};
use rds_sim::faults::{CrashPoint, Fault};

#[path = "cluster/failover.rs"]
mod failover;

/// The chart's default StorageClass (xfs, as the cluster target installs it: mkfs.xfs wants at
/// least 300 MiB) and VolumeSnapshotClass names.
const STORAGE_CLASS: &str = "rds-nvme";
const SNAPSHOT_CLASS: &str = "rds-nvme";
/// How much of a pattern the suites write: enough to span several file-system blocks.
const PATTERN_BYTES: usize = 1 << 20;

#[path = "cluster/migration.rs"]
mod migration;

fn main() {
    let trials = vec![
        trial(
            "cluster: PVC bound, Pod attached, staged, published, written, expanded, deleted: nothing left",
            filesystem_lifecycle,
        ),
        trial(
            "cluster: VolumeSnapshot restored and PVC cloned through external-provisioner, data as written",
            snapshot_restore_and_clone,
        ),
        trial(
            "cluster: raw block PVC published as a device, written and read back, deleted: nothing left",
            raw_block,
        ),
        process_trial(
            "cluster: ReadWriteOnce claim in use on one node, an attachment to a second node refused naming the holder",
            Vec::new(),
            "it reads the allow list from the in-process rds-sim and the host NQNs the process \
             cluster gives its nodes",
            migration::rwo_second_node_refused,
        ),
        process_trial(
            "cluster: KubeVirt live migration of a ReadWriteMany block claim: target attached while it runs, a third node refused, the source fenced out when it completes",
            Vec::new(),
            migration::NOT_ON_KIND,
            migration::migration_window,
        ),
        process_trial(
            "cluster: KubeVirt live migration past migrationTimeoutSeconds: the target taken off, MigrationFailed, a new attachment refused, the source keeps the volume",
            Vec::new(),
            migration::NOT_ON_KIND,
            migration::migration_timeout,
        ),
        process_trial(
            "cluster: TC-10 the RDS restarts under a mounted volume and a PVC whose answer was lost: one disk for it, the data intact",
            vec![("config.rds.breakerOpenMs", serde_json::json!(3_000))],
            "it crashes and restarts the in-process rds-sim (the kind cluster's rds-sim restarts with \
             `kubectl rollout restart`, by hand)",
            rds_restart,
        ),
        process_trial(
            "cluster: controller replicas fail over: leaders killed mid-burst, every PVC bound, one disk each, the driver's Lease moves",
            Vec::new(),
            "it kills and replaces the controller replicas' processes and slows rds-sim's \
             commands through the in-process simulator",
            failover::controller_failover,
        ),
    ];
    rds_e2e::suite::run(trials)
}

fn filesystem_lifecycle(cluster: Cluster<'_>) -> CaseFuture<'_> {
    Box::pin(async move {
        let client = cluster.client();
        let [node, _] = cluster.nodes();
        let claim = objects::pvc("data", STORAGE_CLASS, "512Mi", false, Source::None);
        objects::create(&client, &claim).await?;
        let volume = objects::bound_volume(&client, "data").await?;
        objects::create(&client, &objects::pod("writer", node, "data", false)).await?;
        objects::running_pod(&client, "writer").await?;
        let attachment = objects::attachment(&client, &volume, node).await?;
        let writer = PodVolume {
            node,
            pod: "writer",
            block: false,
        };
        cluster.write_pattern(writer, 1, PATTERN_BYTES).await?;
        cluster.read_pattern(writer, 1, PATTERN_BYTES).await?;

        // Expansion: external-resizer grows the disk, the node plugin grows the file system.
        let before = cluster.filesystem_bytes(writer).await?;
        let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NAMESPACE);
        let grow = serde_json::json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        claims
            .patch("data", &PatchParams::default(), &Patch::Merge(grow))
            .await?;
        objects::wait_for(
            claims,
            "data",
            "its status shows 1Gi",
            |pvc: Option<&PersistentVolumeClaim>| {
                pvc.and_then(|p| p.status.as_ref()?.capacity.as_ref()?.get("storage"))
                    .is_some_and(|q| q.0 == "1Gi")
            },
        )
        .await?;
        let after = cluster.filesystem_bytes(writer).await?;
        anyhow::ensure!(
            after > before + (256 << 20),
            "the file system did not grow: {before} → {after} bytes"
        );
        let handle = volume_handle(&volume).context("the PV has no volume handle")?;
        let rds = cluster.rds().await?;
        let disk = rds.disk(&handle);
        anyhow::ensure!(
            disk.is_some_and(|d| d.file_size >= 1 << 30),
            "the disk on the RDS was not grown: {disk:?}"
        );
        cluster
            .read_pattern(writer, 1, PATTERN_BYTES)
            .await
            .context("after the expansion")?;

        holds(cluster, node, true).await?;
        objects::delete_and_wait(Api::<Pod>::namespaced(client.clone(), NAMESPACE), "writer")
            .await?;
        objects::detached(&client, &attachment).await?;
        holds(cluster, node, false).await?;
        delete_claims(cluster, &["data"]).await
    })
}

fn snapshot_restore_and_clone(cluster: Cluster<'_>) -> CaseFuture<'_> {
    Box::pin(async move {
        let client = cluster.client();
        let [first, second] = cluster.nodes();
        let source = objects::pvc("source", STORAGE_CLASS, "512Mi", false, Source::None);
        objects::create(&client, &source).await?;
        objects::bound_volume(&client, "source").await?;
        objects::create(&client, &objects::pod("writer", first, "source", false)).await?;
        objects::running_pod(&client, "writer").await?;
        let writer = PodVolume {
            node: first,
            pod: "writer",
            block: false,
        };
        cluster.write_pattern(writer, 1, PATTERN_BYTES).await?;

        objects::create_volume_snapshot(&client, "snap", SNAPSHOT_CLASS, "source").await?;
        objects::ready_snapshot(&client, "snap").await?;
        // Changed after the snapshot: the restore must not see it, the clone must.
        cluster.write_pattern(writer, 2, PATTERN_BYTES).await?;

        let restored = objects::pvc(
            "restored",
            STORAGE_CLASS,
            "512Mi",
            false,
            Source::Snapshot("snap"),
        );
        objects::create(&client, &restored).await?;
        objects::bound_volume(&client, "restored").await?;
        let cloned = objects::pvc(
            "cloned",
            STORAGE_CLASS,
            "512Mi",
            false,
            Source::Pvc("source"),
        );
        objects::create(&client, &cloned).await?;
        objects::bound_volume(&client, "cloned").await?;

        // Seed 1 was written before the snapshot, seed 2 after it.
        for (pod, claim, seed) in [("reader-r", "restored", 1), ("reader-c", "cloned", 2)] {
            objects::create(&client, &objects::pod(pod, second, claim, false)).await?;
            objects::running_pod(&client, pod).await?;
            let reader = PodVolume {
                node: second,
                pod,
                block: false,
            };
            cluster
                .read_pattern(reader, seed, PATTERN_BYTES)
                .await
                .with_context(|| format!("{claim}, read through the node plugin"))?;
        }
        let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
        for pod in ["writer", "reader-r", "reader-c"] {
            objects::delete_and_wait(pods.clone(), pod).await?;
        }
        let resource = objects::volume_snapshot_resource();
        let snapshots = Api::<DynamicObject>::namespaced_with(client.clone(), NAMESPACE, &resource);
        objects::delete_and_wait(snapshots, "snap").await?;
        delete_claims(cluster, &["restored", "cloned", "source"]).await
    })
}

fn raw_block(cluster: Cluster<'_>) -> CaseFuture<'_> {
    Box::pin(async move {
        let client = cluster.client();
        let [node, _] = cluster.nodes();
        objects::create(
            &client,
            &objects::pvc("raw", STORAGE_CLASS, "64Mi", true, Source::None),
        )
        .await?;
        let volume = objects::bound_volume(&client, "raw").await?;
        objects::create(&client, &objects::pod("vm", node, "raw", true)).await?;
        objects::running_pod(&client, "vm").await?;
        let attachment = objects::attachment(&client, &volume, node).await?;
        let vm = PodVolume {
            node,
            pod: "vm",
            block: true,
        };
        anyhow::ensure!(
            cluster.is_block_device(vm).await?,
            "pod vm's {} is not a block device",
            objects::DEVICE_PATH
        );
        cluster.write_pattern(vm, 3, PATTERN_BYTES).await?;
        cluster.read_pattern(vm, 3, PATTERN_BYTES).await?;
        holds(cluster, node, true).await?;
        objects::delete_and_wait(Api::<Pod>::namespaced(client.clone(), NAMESPACE), "vm").await?;
        objects::detached(&client, &attachment).await?;
        holds(cluster, node, false).await?;
        delete_claims(cluster, &["raw"]).await
    })
}

/// Fails unless `node` holds something of CSI volumes while a pod uses one (so that the check
/// after the pod is gone can fail), or, once it is gone, nothing: no mount, device node or link.
async fn holds(cluster: Cluster<'_>, node: &str, in_use: bool) -> anyhow::Result<()> {
    let held = cluster.left_on_node(node).await?;
    if in_use {
        anyhow::ensure!(
            !held.is_empty(),
            "nothing of the volume is seen on {node} while its Pod runs"
        );
    } else {
        anyhow::ensure!(
            held.is_empty(),
            "still on {node} after the Pod is gone: {held:?}"
        );
    }
    Ok(())
}

/// Deletes the PVCs, waits for their PVs to go (reclaimPolicy Delete: DeleteVolume), and checks
/// that the RDS holds nothing of them.
async fn delete_claims(cluster: Cluster<'_>, claims: &[&str]) -> anyhow::Result<()> {
    remove_claims(&cluster.client(), claims).await?;
    cluster.rds().await?.ensure_empty()
}

/// TC-10 on the process cluster: a `/disk add` commits and its connection drops before the
/// answer (external-provisioner's CreateVolume fails and is retried), then rds-sim restarts with
/// every session dropped; the claim binds to exactly one disk, and the mounted volume keeps its
/// data and takes new writes. The node here attaches in loop mode: the kernel initiator's side
/// of TC-10 is the resilience suite's (`tests/resilience.rs`, QEMU).
fn rds_restart(target: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(async move {
        let sim = target.sim().clone();
        let cluster = Cluster::Processes(target);
        let client = cluster.client();
        let [node, _] = cluster.nodes();
        let claim = objects::pvc("data", STORAGE_CLASS, "512Mi", false, Source::None);
        objects::create(&client, &claim).await?;
        objects::bound_volume(&client, "data").await?;
        objects::create(&client, &objects::pod("writer", node, "data", false)).await?;
        objects::running_pod(&client, "writer").await?;
        let data = objects::bound_volume(&client, "data").await?;
        let attachment = objects::attachment(&client, &data, node).await?;
        let writer = PodVolume {
            node,
            pod: "writer",
            block: false,
        };
        cluster.write_pattern(writer, 5, PATTERN_BYTES).await?;

        sim.inject(&Fault::Crash {
            pattern: "^/disk add".into(),
            point: CrashPoint::AfterCommit,
            count: 1,
        })?;
        let during = objects::pvc("during", STORAGE_CLASS, "512Mi", false, Source::None);
        objects::create(&client, &during).await?;
        let committed = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while sim.disks().len() < 2 {
            anyhow::ensure!(
                tokio::time::Instant::now() < committed,
                "the PVC's /disk add never committed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        sim.inject(&Fault::Restart { downtime_ms: 5_000 })?;
        let volume = objects::bound_volume(&client, "during").await?;
        let name = volume.metadata.name.clone().unwrap_or_default();
        let disks = sim.disks();
        let made: Vec<&str> = disks
            .iter()
            .filter(|d| d.comment.as_deref().is_some_and(|c| c.contains(&name)))
            .map(|d| d.slot.as_str())
            .collect();
        anyhow::ensure!(made.len() == 1, "disks for {name}: {made:?}, not one");
        anyhow::ensure!(disks.len() == 2, "disks on the RDS: {disks:?}");
        cluster.read_pattern(writer, 5, PATTERN_BYTES).await?;
        cluster.write_pattern(writer, 6, PATTERN_BYTES).await?;
        cluster.read_pattern(writer, 6, PATTERN_BYTES).await?;
        let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
        objects::delete_and_wait(pods, "writer").await?;
        // The attacher's retries back off while the driver's breaker is open (3 s here, the
        // chart's config.rds.breakerOpenMs, after the restart's failed connections): the claims
        // go once the volume is detached.
        objects::detached(&client, &attachment).await?;
        delete_claims(cluster, &["data", "during"]).await
    })
}

/// Deletes the PVCs and waits until external-provisioner has deleted their volumes and PVs.
async fn remove_claims(client: &Client, claims: &[&str]) -> anyhow::Result<()> {
    let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NAMESPACE);
    let mut volumes = Vec::new();
    for claim in claims {
        if let Some(pv) = api.get(claim).await?.spec.and_then(|s| s.volume_name) {
            volumes.push(pv);
        }
        objects::delete_and_wait(api.clone(), claim).await?;
    }
    for pv in volumes {
        // reclaimPolicy Delete: external-provisioner calls DeleteVolume, then deletes the PV.
        objects::gone(Api::<PersistentVolume>::all(client.clone()), &pv).await?;
    }
    Ok(())
}

fn volume_handle(volume: &PersistentVolume) -> Option<String> {
    Some(volume.spec.as_ref()?.csi.as_ref()?.volume_handle.clone())
}

//! The `cluster` suites: Kubernetes objects, as a user makes them, handled by the real API server,
//! controller-manager, external-provisioner, -attacher, -resizer, csi-snapshotter and
//! snapshot-controller, the chart's rds-csi, and the kubelet stand-in's Node calls. Each trial starts
//! its own cluster target (e2e/src/cluster/target.rs) and ends by checking that nothing is left on
//! rds-sim: no disk, no backing file, no export.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use anyhow::Context;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use rds_e2e::cluster::kubelet::{read_pattern, write_pattern};
use rds_e2e::cluster::objects::{self, NAMESPACE, Source};
use rds_e2e::cluster::target::{ClusterTarget, NODES};
use rds_e2e::cluster::trial::{CaseFuture, trial};
use rds_e2e::sim_rds::{BASE_DIR, POOL};

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
        trial(
            "cluster: ReadWriteOnce claim in use on one node, an attachment to a second node refused naming the holder",
            migration::rwo_second_node_refused,
        ),
        trial(
            "cluster: KubeVirt live migration of a ReadWriteMany block claim: target attached while it runs, a third node refused, the source fenced out when it completes",
            migration::migration_window,
        ),
        trial(
            "cluster: KubeVirt live migration past migrationTimeoutSeconds: the target taken off, MigrationFailed, a new attachment refused, the source keeps the volume",
            migration::migration_timeout,
        ),
        trial(
            "cluster: controller replicas fail over: leaders killed mid-burst, every PVC bound, one disk each, the driver's Lease moves",
            failover::controller_failover,
        ),
    ];
    rds_e2e::suite::run(trials)
}

fn filesystem_lifecycle(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(async move {
        let client = cluster.client();
        let claim = objects::pvc("data", STORAGE_CLASS, "512Mi", false, Source::None);
        objects::create(&client, &claim).await?;
        let volume = objects::bound_volume(&client, "data").await?;
        objects::create(&client, &objects::pod("writer", NODES[0], "data", false)).await?;
        objects::running_pod(&client, "writer").await?;
        let attachment = objects::attachment(&client, &volume, NODES[0]).await?;
        let kubelet = &cluster.node(NODES[0])?.kubelet;
        let path = kubelet.published_path(NAMESPACE, "writer", "data")?;
        write_pattern(&path, 1, PATTERN_BYTES)?;
        read_pattern(&path, 1, PATTERN_BYTES)?;

        // Expansion: external-resizer grows the disk, the stand-in grows the file system.
        let before = filesystem_bytes(&path)?;
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
        let after = filesystem_bytes(&path)?;
        anyhow::ensure!(
            after > before + (256 << 20),
            "the file system did not grow: {before} → {after} bytes"
        );
        let handle = volume_handle(&volume);
        let disk = cluster
            .sim()
            .disks()
            .into_iter()
            .find(|d| Some(&d.slot) == handle.as_ref());
        anyhow::ensure!(
            disk.as_ref().is_some_and(|d| d.file_size >= 1 << 30),
            "the disk on the RDS was not grown: {disk:?}"
        );
        read_pattern(&path, 1, PATTERN_BYTES).context("after the expansion")?;

        let root = kubelet.paths().root().to_path_buf();
        objects::delete_and_wait(Api::<Pod>::namespaced(client.clone(), NAMESPACE), "writer")
            .await?;
        objects::detached(&client, &attachment).await?;
        let left = mounts_under(&root);
        anyhow::ensure!(
            left.is_empty(),
            "still mounted on {} after the Pod is gone: {left:?}",
            NODES[0]
        );
        delete_claims(cluster, &["data"]).await
    })
}

fn snapshot_restore_and_clone(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(async move {
        let client = cluster.client();
        let source = objects::pvc("source", STORAGE_CLASS, "512Mi", false, Source::None);
        objects::create(&client, &source).await?;
        objects::bound_volume(&client, "source").await?;
        objects::create(&client, &objects::pod("writer", NODES[0], "source", false)).await?;
        objects::running_pod(&client, "writer").await?;
        let kubelet = &cluster.node(NODES[0])?.kubelet;
        let source_path = kubelet.published_path(NAMESPACE, "writer", "data")?;
        write_pattern(&source_path, 1, PATTERN_BYTES)?;

        objects::create_volume_snapshot(&client, "snap", SNAPSHOT_CLASS, "source").await?;
        objects::ready_snapshot(&client, "snap").await?;
        // Changed after the snapshot: the restore must not see it, the clone must.
        write_pattern(&source_path, 2, PATTERN_BYTES)?;

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
            objects::create(&client, &objects::pod(pod, NODES[1], claim, false)).await?;
            objects::running_pod(&client, pod).await?;
            let path = cluster
                .node(NODES[1])?
                .kubelet
                .published_path(NAMESPACE, pod, "data")?;
            read_pattern(&path, seed, PATTERN_BYTES)
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

fn raw_block(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(async move {
        let client = cluster.client();
        objects::create(
            &client,
            &objects::pvc("raw", STORAGE_CLASS, "64Mi", true, Source::None),
        )
        .await?;
        let volume = objects::bound_volume(&client, "raw").await?;
        objects::create(&client, &objects::pod("vm", NODES[0], "raw", true)).await?;
        objects::running_pod(&client, "vm").await?;
        let attachment = objects::attachment(&client, &volume, NODES[0]).await?;
        let kubelet = &cluster.node(NODES[0])?.kubelet;
        let device = kubelet.published_path(NAMESPACE, "vm", "data")?;
        anyhow::ensure!(
            std::fs::metadata(&device)?.file_type().is_block_device(),
            "{} is not a block device",
            device.display()
        );
        write_pattern(&device, 3, PATTERN_BYTES)?;
        read_pattern(&device, 3, PATTERN_BYTES)?;
        let root = kubelet.paths().root().to_path_buf();
        objects::delete_and_wait(Api::<Pod>::namespaced(client.clone(), NAMESPACE), "vm").await?;
        objects::detached(&client, &attachment).await?;
        anyhow::ensure!(
            !device.exists(),
            "the device node {} outlived its Pod",
            device.display()
        );
        let left = mounts_under(&root);
        anyhow::ensure!(
            left.is_empty(),
            "still mounted on {} after the Pod is gone: {left:?}",
            NODES[0]
        );
        delete_claims(cluster, &["raw"]).await
    })
}

/// Deletes the PVCs, waits for their PVs to go (reclaimPolicy Delete: DeleteVolume), and checks
/// that rds-sim holds nothing of them.
async fn delete_claims(cluster: &ClusterTarget, claims: &[&str]) -> anyhow::Result<()> {
    let client = cluster.client();
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
    let state = cluster.sim().state();
    anyhow::ensure!(
        state.disks.is_empty(),
        "disks left on the RDS: {:?}",
        state.disks
    );
    let prefix = format!("{POOL}/{BASE_DIR}/");
    let files: Vec<_> = state
        .files
        .iter()
        .filter(|f| f.name.starts_with(&prefix) && f.kind != "directory")
        .collect();
    anyhow::ensure!(files.is_empty(), "files left on the RDS: {files:?}");
    Ok(())
}

fn volume_handle(volume: &PersistentVolume) -> Option<String> {
    Some(volume.spec.as_ref()?.csi.as_ref()?.volume_handle.clone())
}

fn filesystem_bytes(path: &Path) -> anyhow::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_blocks * stat.f_frsize)
}

/// The mount points under `root` (a node's kubelet directory): staging and publish mounts.
fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|point| point.starts_with(&*root))
        .map(str::to_owned)
        .collect()
}

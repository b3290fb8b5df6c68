//! The `cluster` suites: Kubernetes objects, as a user makes them, handled by the real API server,
//! controller-manager, external-provisioner, -attacher, -resizer, csi-snapshotter and
//! snapshot-controller, the chart's rds-csi, and the kubelet stand-in's Node calls. Each trial starts
//! its own cluster target (e2e/src/cluster/target.rs) and ends by checking that nothing is left on
//! rds-sim: no disk, no backing file, no export.

use std::path::Path;

use anyhow::Context;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use libtest_mimic::{Completion, Failed, Trial};
use rds_e2e::cluster::objects::{self, NAMESPACE, Source};
use rds_e2e::cluster::target::{ClusterError, ClusterTarget, NODES};
use rds_e2e::config::Settings;
use rds_e2e::sim_rds::{BASE_DIR, POOL};
use sha2::{Digest, Sha256};

/// The chart's default StorageClass (xfs, as the cluster target installs it: mkfs.xfs wants at
/// least 300 MiB) and VolumeSnapshotClass names.
const STORAGE_CLASS: &str = "rds-nvme";
const SNAPSHOT_CLASS: &str = "rds-nvme";
/// How much of a pattern the suites write: enough to span several file-system blocks.
const PATTERN_BYTES: usize = 1 << 20;

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
    ];
    rds_e2e::suite::run(trials)
}

fn trial(name: &'static str, case: fn(&mut ClusterTarget) -> CaseFuture<'_>) -> Trial {
    Trial::ignorable_test(name, move || {
        let settings = Settings::from_env().map_err(|e| Failed::from(e.to_string()))?;
        let runtime = rds_e2e::suite::runtime()?;
        runtime.block_on(async {
            let mut cluster = match ClusterTarget::start(&settings.sim).await {
                Ok(cluster) => cluster,
                Err(ClusterError::Skipped(reason)) => {
                    eprintln!("SKIPPED: {reason}");
                    return Ok(Completion::ignored_with(reason));
                }
                Err(e) => return Err(Failed::from(format!("starting the cluster target: {e}"))),
            };
            let outcome = case(&mut cluster).await;
            let verdict = match outcome.and_then(|()| cluster.check_running()) {
                Ok(()) => Ok(Completion::Completed),
                Err(e) => Err(Failed::from(format!(
                    "{e:#}\n(the logs of every process are kept in {})",
                    keep_logs(&cluster.logs()).display()
                ))),
            };
            cluster.shutdown().await;
            verdict
        })
    })
}

type CaseFuture<'a> = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

fn filesystem_lifecycle(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(async move {
        let client = cluster.client();
        objects::create(
            &client,
            &objects::pvc("data", STORAGE_CLASS, "512Mi", false, Source::None),
        )
        .await?;
        let volume = objects::bound_volume(&client, "data").await?;
        objects::create(&client, &objects::pod("writer", NODES[0], "data", false)).await?;
        objects::running_pod(&client, "writer").await?;
        let attachment = objects::attachment(&client, &volume, NODES[0]).await?;
        let path = cluster
            .node(NODES[0])?
            .kubelet
            .published_path(NAMESPACE, "writer", "data")?;
        let written = write_pattern(&path.join("pattern"), 1)?;
        assert_eq!(
            read_digest(&path.join("pattern"))?,
            written,
            "the pattern read back differs"
        );

        // Expansion: external-resizer grows the disk, the stand-in grows the file system.
        let before = filesystem_bytes(&path)?;
        let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NAMESPACE);
        claims
            .patch(
                "data",
                &PatchParams::default(),
                &Patch::Merge(
                    serde_json::json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}}),
                ),
            )
            .await?;
        objects::wait_for(
            claims.clone(),
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
        let disk = cluster
            .sim()
            .disks()
            .into_iter()
            .find(|d| Some(&d.slot) == volume_handle(&volume).as_ref());
        anyhow::ensure!(
            disk.as_ref().is_some_and(|d| d.file_size >= 1 << 30),
            "the disk on the RDS was not grown: {disk:?}"
        );
        assert_eq!(
            read_digest(&path.join("pattern"))?,
            written,
            "expansion changed the data"
        );

        objects::delete_and_wait(Api::<Pod>::namespaced(client.clone(), NAMESPACE), "writer")
            .await?;
        objects::detached(&client, &attachment).await?;
        anyhow::ensure!(
            !is_mount_point(&path),
            "{} is still mounted after the Pod is gone",
            path.display()
        );
        delete_claims(cluster, &["data"]).await
    })
}

fn snapshot_restore_and_clone(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(async move {
        let client = cluster.client();
        objects::create(
            &client,
            &objects::pvc("source", STORAGE_CLASS, "512Mi", false, Source::None),
        )
        .await?;
        objects::bound_volume(&client, "source").await?;
        objects::create(&client, &objects::pod("writer", NODES[0], "source", false)).await?;
        objects::running_pod(&client, "writer").await?;
        let source_path = cluster
            .node(NODES[0])?
            .kubelet
            .published_path(NAMESPACE, "writer", "data")?;
        let before_snapshot = write_pattern(&source_path.join("pattern"), 1)?;
        sync(&source_path)?;

        objects::create_volume_snapshot(&client, "snap", SNAPSHOT_CLASS, "source").await?;
        objects::ready_snapshot(&client, "snap").await?;
        // Changed after the snapshot: the restore must not see it, the clone must.
        let after_snapshot = write_pattern(&source_path.join("pattern"), 2)?;
        sync(&source_path)?;

        objects::create(
            &client,
            &objects::pvc(
                "restored",
                STORAGE_CLASS,
                "512Mi",
                false,
                Source::Snapshot("snap"),
            ),
        )
        .await?;
        objects::bound_volume(&client, "restored").await?;
        objects::create(
            &client,
            &objects::pvc(
                "cloned",
                STORAGE_CLASS,
                "512Mi",
                false,
                Source::Pvc("source"),
            ),
        )
        .await?;
        objects::bound_volume(&client, "cloned").await?;

        for (pod, claim, expected) in [
            ("reader-r", "restored", before_snapshot),
            ("reader-c", "cloned", after_snapshot),
        ] {
            objects::create(&client, &objects::pod(pod, NODES[1], claim, false)).await?;
            objects::running_pod(&client, pod).await?;
            let path = cluster
                .node(NODES[1])?
                .kubelet
                .published_path(NAMESPACE, pod, "data")?;
            assert_eq!(
                read_digest(&path.join("pattern"))?,
                expected,
                "{claim}: the data read through the node differs"
            );
        }
        let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
        for pod in ["writer", "reader-r", "reader-c"] {
            objects::delete_and_wait(pods.clone(), pod).await?;
        }
        let snapshots = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            NAMESPACE,
            &objects::volume_snapshot_resource(),
        );
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
        let device = cluster
            .node(NODES[0])?
            .kubelet
            .published_path(NAMESPACE, "vm", "data")?;
        use std::os::unix::fs::FileTypeExt;
        anyhow::ensure!(
            std::fs::metadata(&device)?.file_type().is_block_device(),
            "{} is not a block device",
            device.display()
        );
        let written = write_pattern(&device, 3)?;
        assert_eq!(
            read_digest_len(&device, PATTERN_BYTES)?,
            written,
            "the device read back differs"
        );
        objects::delete_and_wait(Api::<Pod>::namespaced(client.clone(), NAMESPACE), "vm").await?;
        objects::detached(&client, &attachment).await?;
        anyhow::ensure!(
            !device.exists(),
            "the device node {} outlived its Pod",
            device.display()
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

/// Writes a pattern of [`PATTERN_BYTES`] seeded by `seed` to `path`; returns its SHA-256.
fn write_pattern(path: &Path, seed: u8) -> anyhow::Result<[u8; 32]> {
    let data: Vec<u8> = (0..PATTERN_BYTES)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!is_block(path))
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(&data)?;
    file.sync_all()?;
    Ok(Sha256::digest(&data).into())
}

fn is_block(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

fn read_digest(path: &Path) -> anyhow::Result<[u8; 32]> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&data).into())
}

fn read_digest_len(path: &Path, len: usize) -> anyhow::Result<[u8; 32]> {
    use std::io::Read;
    let mut data = vec![0; len];
    std::fs::File::open(path)?.read_exact(&mut data)?;
    Ok(Sha256::digest(&data).into())
}

/// Flushes the file system at `path`, so a snapshot taken on the RDS sees what was written.
fn sync(path: &Path) -> anyhow::Result<()> {
    let dir = std::fs::File::open(path)?;
    rustix::fs::syncfs(&dir)?;
    Ok(())
}

fn filesystem_bytes(path: &Path) -> anyhow::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_blocks * stat.f_frsize)
}

fn is_mount_point(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|mounts| {
        mounts
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&*path.to_string_lossy()))
    })
}

/// A failed trial's logs, copied out of the temporary directory that goes with the target.
fn keep_logs(logs: &Path) -> std::path::PathBuf {
    let kept = std::env::temp_dir().join(format!("rds-e2e-cluster-logs-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&kept);
    if let Ok(entries) = std::fs::read_dir(logs) {
        for entry in entries.flatten() {
            let _ = std::fs::copy(entry.path(), kept.join(entry.file_name()));
        }
    }
    kept
}

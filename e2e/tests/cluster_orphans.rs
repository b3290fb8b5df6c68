//! Orphans on the `cluster` target: a bound PVC and a ready VolumeSnapshot, made through the real
//! external-provisioner and csi-snapshotter, beside a disk and a file planted on rds-sim behind
//! the driver's back. By default the controller reports the planted ones (an Event on its
//! Namespace) and keeps them, and `rds-csi orphans` lists them; with deletion on, it deletes them.
//! The PVC's volume and the snapshot's disk are never touched.

use anyhow::Context;
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use rds_e2e::cluster::objects::{self, Source};
use rds_e2e::cluster::target::{ClusterTarget, NAMESPACE as CHART_NAMESPACE};
use rds_e2e::cluster::trial::{CaseFuture, process_trial};
use rds_e2e::sim_rds::{BASE_DIR, POOL};
use serde_json::json;

const STORAGE_CLASS: &str = "rds-nvme";
const SNAPSHOT_CLASS: &str = "rds-nvme";

/// Why these trials run on the process cluster only.
const NOT_ON_KIND: &str = "it installs the chart with its own values and plants a disk and a \
    file through the in-process rds-sim, behind the driver's back";

fn main() {
    let trials = vec![
        process_trial(
            "cluster: a disk and a file planted behind the driver's back are reported as orphans, \
             listed by rds-csi orphans, and kept by default",
            values(false),
            NOT_ON_KIND,
            orphans_reported,
        ),
        process_trial(
            "cluster: with config.kubernetes.deleteOrphans the planted disk and file are deleted; \
             the PVC's volume and the snapshot's disk stay",
            values(true),
            NOT_ON_KIND,
            orphans_deleted,
        ),
    ];
    rds_e2e::suite::run(trials)
}

/// A grace and a resync short enough for a trial: the claim's and the snapshot's own objects,
/// not the grace, keep them while they are made.
fn values(delete: bool) -> Vec<(&'static str, serde_json::Value)> {
    let mut values = vec![
        ("config.kubernetes.orphanGraceSeconds", json!(2)),
        ("config.kubernetes.resyncSeconds", json!(1)),
    ];
    if delete {
        values.push(("config.kubernetes.deleteOrphans", json!(true)));
    }
    values
}

/// What the orphan trials start from: a bound PVC's volume and a ready VolumeSnapshot's disk,
/// which nothing may touch, and a disk and a file planted on rds-sim behind the driver's back,
/// as a volume whose PV was deleted by hand and a file an interrupted delete left.
struct Planted {
    volume: String,
    snapshot: String,
    disk: String,
    file: String,
}

async fn plant_orphans(cluster: &ClusterTarget) -> anyhow::Result<Planted> {
    let client = cluster.client();
    let claim = objects::pvc("kept", STORAGE_CLASS, "64Mi", false, Source::None);
    objects::create(&client, &claim).await?;
    let volume = volume_handle(&objects::bound_volume(&client, "kept").await?)
        .context("the PV of kept has no CSI volume handle")?;
    objects::create_volume_snapshot(&client, "snap", SNAPSHOT_CLASS, "kept").await?;
    objects::ready_snapshot(&client, "snap").await?;
    let snapshot = cluster
        .sim()
        .disks()
        .into_iter()
        .map(|d| d.slot)
        .find(|slot| slot.starts_with("snap-"))
        .context("no snapshot disk on the RDS")?;

    let disk = format!("pvc-{:028x}", 1);
    let file = format!("{POOL}/{BASE_DIR}/pvc-{:028x}.img", 2);
    // Made by the driver an hour ago, as the comment says; its PV is long gone.
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        - 3_600;
    let comment = format!("rds-csi:1,kind:volume,name:{disk},created:{created},requested:0");
    for line in [
        format!(
            r#"/disk add type=file file-path="{POOL}/{BASE_DIR}/{disk}.img" file-size=16777216 slot="{disk}" mount-filesystem=no comment="{comment}""#
        ),
        format!(r#"/file add name="{file}" contents="left behind""#),
    ] {
        let output = routeros(cluster, &line).await?;
        anyhow::ensure!(output.trim().is_empty(), "{line}: {output}");
    }
    Ok(Planted {
        volume,
        snapshot,
        disk,
        file,
    })
}

/// Runs a RouterOS command line on rds-sim as an SSH session would; returns its output.
async fn routeros(cluster: &ClusterTarget, line: &str) -> anyhow::Result<String> {
    let sim = cluster.sim();
    let (session, _) = sim.open_session("admin", ([127, 0, 0, 1], 1).into());
    let reply = sim.exec(session, line).await;
    sim.close_session(session);
    match reply {
        rds_sim::ssh::Reply::Output { text, .. } => Ok(text),
        rds_sim::ssh::Reply::Hangup => anyhow::bail!("rds-sim hung up on {line}"),
    }
}

/// Whether rds-sim holds the disk in `slot`, and the file `file`.
fn on_the_rds(cluster: &ClusterTarget, slot: &str, file: &str) -> (bool, bool) {
    let state = cluster.sim().state();
    (
        state.disks.iter().any(|d| d.slot == slot),
        state.files.iter().any(|f| f.name == file),
    )
}

/// Waits until the controller has recorded an Event with `reason` on its Namespace for each of
/// `subjects`, and returns the notes of every such Event.
async fn orphan_events(
    cluster: &ClusterTarget,
    reason: &str,
    subjects: &[&str],
) -> anyhow::Result<Vec<String>> {
    let events = Api::<Event>::namespaced(cluster.client(), CHART_NAMESPACE);
    let deadline = tokio::time::Instant::now() + objects::WAIT;
    loop {
        let notes: Vec<String> = events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Namespace"))
            .filter_map(|e| e.note)
            .collect();
        if subjects
            .iter()
            .all(|subject| notes.iter().any(|note| note.contains(subject)))
        {
            return Ok(notes);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no {reason} Event for each of {subjects:?} within {:?}; Events: {notes:?}",
            objects::WAIT
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Waits until the controllers' `/metrics` show `rds_csi_orphans{kind}` at `count` for each of
/// `kinds` (the gauge is set at the end of the pass whose Events were awaited, by the replica
/// that leads: the others never set it).
async fn orphan_gauges(cluster: &ClusterTarget, kinds: &[(&str, u32)]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + objects::WAIT;
    loop {
        let mut scraped = Vec::new();
        for replica in cluster.controllers() {
            scraped.push(replica.metrics().await?);
        }
        let value = |kind: &str| {
            let series = format!("rds_csi_orphans{{kind=\"{kind}\"}} ");
            scraped
                .iter()
                .filter_map(|metrics| {
                    metrics
                        .lines()
                        .find_map(|line| line.strip_prefix(&series)?.trim().parse::<u32>().ok())
                })
                .reduce(|a, b| a + b)
        };
        if kinds
            .iter()
            .all(|&(kind, count)| value(kind) == Some(count))
        {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "/metrics does not show rds_csi_orphans at {kinds:?} within {:?}:\n{}",
            objects::WAIT,
            scraped.join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn orphans_reported(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(async move {
        let planted = plant_orphans(cluster).await?;
        let notes = orphan_events(cluster, "OrphanFound", &[&planted.disk, &planted.file]).await?;
        for kept in [&planted.volume, &planted.snapshot] {
            anyhow::ensure!(
                !notes.iter().any(|note| note.contains(kept.as_str())),
                "{kept} is named by the cluster but was reported: {notes:?}"
            );
        }
        orphan_gauges(cluster, &[("disk", 1), ("file", 1), ("export", 0)]).await?;
        // The Event is recorded in the pass that would have deleted them.
        anyhow::ensure!(
            on_the_rds(cluster, &planted.disk, &planted.file) == (true, true),
            "an orphan was deleted with controller.orphans.delete off"
        );

        let output = cluster
            .driver_command(&["orphans"])?
            .output()
            .await
            .context("running rds-csi orphans")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "rds-csi orphans failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let rows: Vec<Vec<&str>> = stdout
            .lines()
            .map(|line| line.split_whitespace().take(2).collect())
            .collect();
        for (kind, name) in [("disk", planted.disk.as_str()), ("file", &planted.file)] {
            anyhow::ensure!(
                rows.contains(&vec![kind, name]),
                "rds-csi orphans does not list the {kind} {name}:\n{stdout}"
            );
        }
        for kept in [&planted.volume, &planted.snapshot] {
            anyhow::ensure!(
                !stdout.contains(kept.as_str()),
                "rds-csi orphans lists {kept}, which the cluster names:\n{stdout}"
            );
        }
        anyhow::ensure!(
            stdout.ends_with("2 orphans; nothing was deleted\n"),
            "{stdout}"
        );
        anyhow::ensure!(
            on_the_rds(cluster, &planted.disk, &planted.file) == (true, true),
            "rds-csi orphans deleted something"
        );
        Ok(())
    })
}

fn orphans_deleted(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(async move {
        let planted = plant_orphans(cluster).await?;
        orphan_events(cluster, "OrphanDeleted", &[&planted.disk, &planted.file]).await?;
        orphan_gauges(cluster, &[("disk", 0), ("file", 0), ("export", 0)]).await?;
        anyhow::ensure!(
            on_the_rds(cluster, &planted.disk, &planted.file) == (false, false),
            "an orphan is still on the RDS after its OrphanDeleted Event"
        );
        let disks: Vec<String> = cluster.sim().disks().into_iter().map(|d| d.slot).collect();
        for kept in [&planted.volume, &planted.snapshot] {
            anyhow::ensure!(
                disks.contains(kept),
                "{kept}, which the cluster names, was deleted; disks: {disks:?}"
            );
        }
        objects::bound_volume(&cluster.client(), "kept").await?;
        Ok(())
    })
}

fn volume_handle(volume: &PersistentVolume) -> Option<String> {
    Some(volume.spec.as_ref()?.csi.as_ref()?.volume_handle.clone())
}

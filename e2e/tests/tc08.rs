//! TC-08 (HARDWARE_VALIDATION.md): snapshot, delete the source, restore, compare, delete the
//! snapshot — for every snapshot method and both positions of rds-sim's `copy-from` switch.
//!
//! The pattern is written into the source's backing file through rds-sim's data directory (the
//! node path does not exist yet), so the data check needs the `sim` target. With
//! `copy-from=settings` the controller must refuse `copy-from` with FAILED_PRECONDITION naming
//! the method that works, and leave nothing behind, while `disk-copy` passes.
//!
//! `btrfs` needs a Btrfs pool: on `sim` its trials start rds-sim with one (`--pool-fs btrfs`),
//! on hardware a pool that is not Btrfs skips them; its volumes are made with `layout: subvolume`.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};

use anyhow::{Context, ensure};
use rds_csi::csi::v1::volume_content_source::{self, SnapshotSource};
use rds_csi::csi::v1::{
    CreateSnapshotRequest, CreateVolumeRequest, DeleteSnapshotRequest, DeleteVolumeRequest,
    VolumeContentSource,
};
use rds_csi::snapshot::Method;
use rds_e2e::config::Settings;
use rds_e2e::fixture::Fixture;
use rds_e2e::requests::{laid_out_for, unique_name};
use rds_e2e::sim_rds::backing_file;
use rds_e2e::suite::{Skip, trial, trial_with};
use rds_sim::sim::Sim;
use rds_sim::store::{CopySemantics, PoolFs};
use sha2::{Digest, Sha256};
use tonic::Code;

/// The volume: big enough for blocks at several offsets, small enough to hash quickly.
const SIZE: u64 = 64 << 20;
const BLOCK: usize = 1 << 20;

fn main() {
    let mut trials = Vec::new();
    // The switch only changes rds-sim; every pair runs, so both positions are shown for each
    // method.
    for method in Method::ALL {
        for semantics in [CopySemantics::Data, CopySemantics::Settings] {
            let name = format!("tc08 {method} copy-from={}", switch(semantics));
            let case = async move |fx: &mut Fixture| tc08(fx, method, semantics).await;
            trials.push(if method == Method::Btrfs {
                trial_with(&name, on_a_btrfs_pool, case)
            } else {
                trial(&name, case)
            });
        }
    }
    rds_e2e::suite::run(trials)
}

/// rds-sim with a Btrfs pool for the `btrfs` method, whatever the configuration says; on
/// hardware the pool is what it is, and a pool that is not Btrfs skips the trial.
fn on_a_btrfs_pool(settings: &mut Settings) {
    settings.sim.pool_fs = PoolFs::Btrfs;
}

fn switch(semantics: CopySemantics) -> &'static str {
    match semantics {
        CopySemantics::Data => "data",
        CopySemantics::Settings => "settings",
    }
}

async fn tc08(fx: &mut Fixture, method: Method, semantics: CopySemantics) -> anyhow::Result<()> {
    let sim = fx
        .require_sim("the pattern is written through its data directory")?
        .clone();
    sim.set_copy_from(semantics);
    let request = laid_out_for(fx.create_request(&unique_name("tc08-source")), method);
    let source = fx
        .create_volume(CreateVolumeRequest {
            capacity_range: Some(rds_e2e::requests::exact_capacity(SIZE)),
            ..request
        })
        .await;
    let source = match source {
        Err(status) if method == Method::Btrfs && status.code() == Code::InvalidArgument => {
            return Err(Skip(format!(
                "btrfs needs a Btrfs pool (sim.pool-fs = \"btrfs\"): {}",
                status.message()
            ))
            .into());
        }
        other => other.context("CreateVolume of the source")?,
    };
    let written = write_pattern(&sim, &source.volume_id)?;

    let snapshot_name = unique_name("tc08-snapshot");
    let request = CreateSnapshotRequest {
        name: snapshot_name.clone(),
        source_volume_id: source.volume_id.clone(),
        parameters: HashMap::from([("method".to_owned(), method.to_string())]),
        ..Default::default()
    };
    let answer = fx.create_snapshot(request.clone()).await;
    if method == Method::CopyFrom && semantics == CopySemantics::Settings {
        let status = answer
            .err()
            .context("copy-from copying only settings was accepted")?;
        ensure!(
            status.code() == Code::FailedPrecondition,
            "expected FAILED_PRECONDITION, got {:?}: {}",
            status.code(),
            status.message()
        );
        ensure!(
            status.message().contains("use disk-copy"),
            "the refusal does not name the method that works: {}",
            status.message()
        );
        let left: Vec<String> = sim
            .state()
            .disks
            .into_iter()
            .map(|d| d.slot)
            .filter(|slot| slot.starts_with("snap-") || slot.starts_with("probe-"))
            .collect();
        ensure!(left.is_empty(), "the refused snapshot left disks: {left:?}");
        return Ok(());
    }
    let snapshot = answer.context("CreateSnapshot")?;
    ensure!(snapshot.ready_to_use, "the snapshot is not ready to use");

    fx.controller()
        .delete_volume(DeleteVolumeRequest {
            volume_id: source.volume_id.clone(),
            ..Default::default()
        })
        .await
        .context("DeleteVolume of the source")?;

    let restore = CreateVolumeRequest {
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(volume_content_source::Type::Snapshot(SnapshotSource {
                snapshot_id: snapshot.snapshot_id.clone(),
            })),
        }),
        ..laid_out_for(fx.create_request(&unique_name("tc08-restored")), method)
    };
    let restored = fx
        .create_volume(CreateVolumeRequest {
            capacity_range: Some(rds_e2e::requests::exact_capacity(SIZE)),
            ..restore
        })
        .await
        .context("CreateVolume from the snapshot")?;
    let read = checksum(&sim, &restored.volume_id)?;
    ensure!(
        read == written,
        "the restored volume's checksum {read} differs from the source's {written}"
    );

    fx.controller()
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: snapshot.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .context("DeleteSnapshot")?;
    let state = sim.state();
    ensure!(
        !state.disks.iter().any(|d| d.slot == snapshot.snapshot_id),
        "the snapshot's disk is still there"
    );
    let file = format!("/{}.img", snapshot.snapshot_id);
    ensure!(
        !state.files.iter().any(|f| f.name.ends_with(&file)),
        "the snapshot's file is still there"
    );
    ensure!(
        !state
            .subvolumes
            .iter()
            .any(|s| s.path.ends_with(&snapshot.snapshot_id)),
        "the snapshot's subvolume is still there"
    );
    // The restored volume keeps its data without the snapshot.
    ensure!(checksum(&sim, &restored.volume_id)? == written);
    Ok(())
}

/// `request` in the StorageClass layout `method` snapshots: its own subvolume for `btrfs`.
/// Writes a known pattern at the start, the middle and the end of the volume, as a node would,
/// and returns the checksum of the whole volume.
fn write_pattern(sim: &Sim, slot: &str) -> anyhow::Result<String> {
    let path = backing_file(sim, slot)?;
    let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
    for (n, offset) in [0, SIZE / 2, SIZE - BLOCK as u64].into_iter().enumerate() {
        let block: Vec<u8> = (0..BLOCK)
            .map(|i| (i as u8).wrapping_mul(13).wrapping_add(n as u8))
            .collect();
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(&block)?;
    }
    file.sync_all()?;
    checksum(sim, slot)
}

fn checksum(sim: &Sim, slot: &str) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(backing_file(sim, slot)?)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; BLOCK];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

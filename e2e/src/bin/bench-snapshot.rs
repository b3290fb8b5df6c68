//! bench-snapshot: the time and the extra pool space each snapshot method costs to snapshot and
//! restore a volume with data in it.
//!
//! For each method it starts rds-sim and rds-csi in-process (the e2e `sim` target), creates a
//! `--size` volume, writes `--written` bytes of incompressible data into its backing file (as a
//! node would), then times CreateSnapshot and CreateVolume from that snapshot over the CSI
//! socket and measures the free space of the file system under rds-sim's data directory before
//! and after each (statvfs, after a sync). That file system decides what a copy costs: put the
//! data directory on XFS with reflink (`TMPDIR=/mnt/xfs`) to see reflink copies, which is what a
//! real RDS pool is (REFERENCE.md §8.2). Other writers on the same file system disturb the
//! space figures: use a file system of its own.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use rand::{Rng, SeedableRng};
use rds_csi::csi::v1::volume_content_source::{self, SnapshotSource};
use rds_csi::csi::v1::{CreateSnapshotRequest, CreateVolumeRequest, VolumeContentSource};
use rds_csi::snapshot::Method;
use rds_e2e::config::Settings;
use rds_e2e::requests;
use rds_e2e::sim_rds::backing_file;
use rds_e2e::target::Target;

#[derive(Debug, Parser)]
#[command(about = "Time and extra pool space of snapshot and restore, per snapshot method")]
struct Args {
    /// Size of the volume, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    size: u64,
    /// Bytes written into the volume before the snapshot.
    #[arg(long, default_value_t = 256 << 20)]
    written: u64,
    /// Seed of the data written.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// What one method cost.
struct Figures {
    method: Method,
    snapshot: Duration,
    snapshot_space: i64,
    restore: Duration,
    restore_space: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.written <= args.size,
        "--written must not exceed --size"
    );
    let mut figures = Vec::new();
    for method in Method::ALL {
        figures.push(measure(&args, method).await?);
    }
    println!(
        "volume {} MiB, {} MiB written; space is the data directory's file system's free space",
        args.size >> 20,
        args.written >> 20
    );
    println!(
        "{:<10} {:>12} {:>16} {:>12} {:>16}",
        "method", "snapshot s", "snapshot +MiB", "restore s", "restore +MiB"
    );
    for f in figures {
        println!(
            "{:<10} {:>12.2} {:>16.1} {:>12.2} {:>16.1}",
            f.method.as_str(),
            f.snapshot.as_secs_f64(),
            mib(f.snapshot_space),
            f.restore.as_secs_f64(),
            mib(f.restore_space)
        );
    }
    Ok(())
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

async fn measure(args: &Args, method: Method) -> anyhow::Result<Figures> {
    let mut settings = Settings::sim_for(method);
    settings.sim.pool_size = args.size.saturating_mul(8);
    let target = Target::start_with(&settings, |config| {
        config.controller.snapshot_method = method;
    })
    .await?;
    let sim = target
        .sim()
        .context("the sim target has a simulator")?
        .clone();
    let mut controller = target.controller();
    let volume = controller
        .create_volume(CreateVolumeRequest {
            capacity_range: Some(requests::exact_capacity(args.size)),
            ..requests::laid_out_for(
                requests::create_volume("bench-snapshot-source", args.size, &HashMap::new()),
                method,
            )
        })
        .await?
        .into_inner()
        .volume
        .context("CreateVolume answered no volume")?;
    let source = backing_file(&sim, &volume.volume_id)?;
    write_data(&source, args.written, args.seed)?;
    // The probe runs before the first snapshot; it is not what is measured.
    let warmup = CreateSnapshotRequest {
        name: "bench-snapshot-warmup".into(),
        source_volume_id: volume.volume_id.clone(),
        ..Default::default()
    };
    controller.create_snapshot(warmup).await?;

    let before = free_bytes(&source)?;
    let started = Instant::now();
    let snapshot = controller
        .create_snapshot(CreateSnapshotRequest {
            name: "bench-snapshot".into(),
            source_volume_id: volume.volume_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .snapshot
        .context("CreateSnapshot answered no snapshot")?;
    let snapshot_time = started.elapsed();
    let after_snapshot = free_bytes(&source)?;

    let started = Instant::now();
    controller
        .create_volume(CreateVolumeRequest {
            volume_content_source: Some(VolumeContentSource {
                r#type: Some(volume_content_source::Type::Snapshot(SnapshotSource {
                    snapshot_id: snapshot.snapshot_id,
                })),
            }),
            ..requests::laid_out_for(
                requests::create_volume("bench-snapshot-restored", args.size, &HashMap::new()),
                method,
            )
        })
        .await?;
    let restore_time = started.elapsed();
    let after_restore = free_bytes(&source)?;
    target.shutdown().await?;
    Ok(Figures {
        method,
        snapshot: snapshot_time,
        snapshot_space: before - after_snapshot,
        restore: restore_time,
        restore_space: after_snapshot - after_restore,
    })
}

/// Writes `len` bytes of seeded random data from the start of the file.
fn write_data(path: &Path, len: u64, seed: u64) -> anyhow::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.seek(SeekFrom::Start(0))?;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        rng.fill(&mut block[..n]);
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok(())
}

/// Free bytes of the file system holding `path`, after everything written reached it.
fn free_bytes(path: &Path) -> anyhow::Result<i64> {
    rustix::fs::sync();
    let stats = rustix::fs::statvfs(path)?;
    Ok(i64::try_from(stats.f_bavail.saturating_mul(stats.f_frsize)).unwrap_or(i64::MAX))
}

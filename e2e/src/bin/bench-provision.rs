//! bench-provision: how fast rds-csi creates volumes when every RouterOS command takes time.
//!
//! Starts rds-sim and rds-csi in-process (the e2e `sim` target: the driver on a temporary CSI
//! socket, SSH to the simulator on loopback), makes every command wait `--latency-ms` (a latency
//! fault matching every line), then sends `--volumes` CreateVolume calls over the CSI socket,
//! `--concurrency` at a time, and prints:
//! - wall time, p50 and p99 of one CreateVolume, throughput;
//! - the RouterOS commands the creates cost, counted from rds-sim's command log, by kind;
//! - the ratio of the wall time to the serial bound, commands × latency (N × L × commands per
//!   create): what the creates would take one command at a time with no overhead;
//! - the peak RSS of this process (VmHWM). The driver runs in-process, so this is the
//!   controller's peak plus the simulator's and the benchmark client's: an upper bound.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use rds_csi::csi::v1::CreateVolumeRequest;
use rds_e2e::config::Settings;
use rds_e2e::requests;
use rds_e2e::target::Target;
use rds_sim::faults::Fault;

#[derive(Debug, Parser)]
#[command(
    about = "Create volumes through rds-csi against a slow rds-sim and compare with the serial bound"
)]
struct Args {
    /// Volumes to create (N).
    #[arg(long, default_value_t = 200)]
    volumes: usize,
    /// CreateVolume calls in flight at once (C).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Latency added to every RouterOS command, in milliseconds (L).
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Random extra latency per command, 0 to this many milliseconds (seeded).
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// The driver's SSH sessions to the RDS (rds.sessions).
    #[arg(long, default_value_t = 4)]
    sessions: usize,
    /// The controller's bound on concurrent creates (controller.maxConcurrentCreates).
    #[arg(long, default_value_t = 8)]
    max_creates: usize,
    /// Size of each volume in bytes (backing files are sparse).
    #[arg(long, default_value_t = 1 << 30)]
    size: u64,
    /// Seed of the simulator's jitter.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The value below which `p` of the sorted samples fall (nearest rank), in milliseconds.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

/// This process's peak resident set, as /proc/self/status reports it.
fn peak_rss() -> anyhow::Result<String> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .map(|value| value.trim().to_owned())
        .context("no VmHWM line in /proc/self/status")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.volumes > 0 && args.concurrency > 0,
        "--volumes and --concurrency must be at least 1"
    );
    let mut settings = Settings::sim_defaults();
    settings.sim.seed = args.seed;
    settings.sim.pool_size = (args.size.saturating_mul(args.volumes as u64)).saturating_mul(2);
    let target = Target::start_with(&settings, |config| {
        config.rds.sessions = args.sessions;
        config.controller.max_concurrent_creates = args.max_creates;
        config.rds.command_timeout_ms = 60_000;
    })
    .await?;
    let sim = target
        .sim()
        .context("the sim target has a simulator")?
        .clone();
    sim.inject(&Fault::Latency {
        pattern: ".".into(),
        fixed_ms: args.latency_ms,
        jitter_ms: args.jitter_ms,
    })?;
    let first_seq = sim.log_since(0).len() as u64;

    let requests: Arc<Vec<CreateVolumeRequest>> = Arc::new(
        (0..args.volumes)
            .map(|_| {
                // The `pvc-<uuid>` names external-provisioner gives.
                let name = format!("pvc-{}", uuid::Uuid::new_v4());
                requests::create_volume(&name, args.size, &Default::default())
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..args.concurrency.min(args.volumes))
        .map(|_| {
            let (requests, next) = (requests.clone(), next.clone());
            let mut controller = target.controller();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(request) = requests.get(index) else {
                        return Ok::<_, anyhow::Error>(latencies);
                    };
                    let began = Instant::now();
                    controller
                        .create_volume(request.clone())
                        .await
                        .with_context(|| format!("creating {}", request.name))?;
                    latencies.push(began.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(args.volumes);
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let wall = start.elapsed();
    latencies.sort_unstable();

    let log = sim.log_since(first_seq);
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &log {
        *by_kind.entry(record.command.path.as_str()).or_default() += 1;
    }
    let disks = sim.disks().len();
    if disks != args.volumes {
        bail!(
            "{} volumes were asked for, rds-sim holds {disks} disks",
            args.volumes
        );
    }
    let commands = log.len();
    let per_create = commands as f64 / args.volumes as f64;
    let mean_latency = args.latency_ms as f64 + args.jitter_ms as f64 / 2.0;
    let serial_bound = Duration::from_secs_f64(commands as f64 * mean_latency / 1e3);

    println!(
        "bench-provision: N={} C={} L={} ms (+0..{} ms jitter), sessions {}, max creates {}, \
         {} bytes each, seed {}",
        args.volumes,
        args.concurrency,
        args.latency_ms,
        args.jitter_ms,
        args.sessions,
        args.max_creates,
        args.size,
        args.seed
    );
    println!("wall time          {:.2} s", wall.as_secs_f64());
    println!(
        "create latency     p50 {:.1} ms, p99 {:.1} ms",
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99)
    );
    println!(
        "throughput         {:.1} creates/s",
        args.volumes as f64 / wall.as_secs_f64()
    );
    println!("RouterOS commands  {commands} ({per_create:.2} per create)");
    for (path, count) in &by_kind {
        println!("  {path:<24} {count}");
    }
    println!(
        "serial bound       {:.2} s (N x L x {per_create:.2} commands per create)",
        serial_bound.as_secs_f64()
    );
    let mutations = log
        .iter()
        .filter(|r| {
            ["/add", "/set", "/remove"]
                .iter()
                .any(|v| r.command.path.ends_with(v))
        })
        .count();
    println!(
        "mutation floor     {:.2} s ({mutations} mutating commands x L: the driver runs them one \
         at a time per RDS)",
        mutations as f64 * mean_latency / 1e3
    );
    if serial_bound.is_zero() {
        println!("ratio              n/a (no latency, so no serial bound)");
    } else {
        println!(
            "ratio              {:.2} (wall time / serial bound)",
            wall.as_secs_f64() / serial_bound.as_secs_f64()
        );
    }
    println!(
        "peak RSS           {} (VmHWM of this process: driver, rds-sim and client together)",
        peak_rss()?
    );
    target.shutdown().await?;
    Ok(())
}

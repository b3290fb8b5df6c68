//! bench-nvme: rds-sim's NVMe/TCP throughput as the real Linux initiator in the QEMU guest sees it,
//! beside the guest kernel's own nvmet target on the same guest, as a ratio. Each pattern runs
//! `blockio` (O_DIRECT, sequential 1 MiB or random 4 KiB, writes before reads) against both,
//! several rounds that alternate which target goes first; the medians are printed, since the
//! shared 2-core machine makes single runs vary by ±30 %.
//!
//! `cargo build --release -p rds-e2e --bins && target/release/bench-nvme`

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rds_e2e::qemu::nvme::{self as guest_nvme, Connect, KernelTarget, SimTarget};
use rds_e2e::qemu::{Guest, GuestConfig, HOST_ADDR};

const SLOT: &str = "pvc-bench";
const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-bench";
const NVMET_NQN: &str = "nqn.2024-01.io.rds-csi:nvmet-bench";
const NVMET_PORT: u16 = 4420;
const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-0000000be1c4";

#[derive(Parser, Debug)]
struct Args {
    /// MiB moved by each sequential (1 MiB) pattern.
    #[arg(long, default_value_t = 128)]
    seq_mib: u64,
    /// MiB moved by each random (4 KiB) pattern.
    #[arg(long, default_value_t = 4)]
    rand_mib: u64,
    /// Requests in flight (blockio threads).
    #[arg(long, default_value_t = 1)]
    jobs: u64,
    /// Runs of each pattern on each target (alternating which goes first); medians are printed.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The guest's CPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// The blockio binary copied into the guest (default: beside this one).
    #[arg(long)]
    blockio: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let blockio = match args.blockio.clone() {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("blockio"),
    };
    anyhow::ensure!(
        blockio.exists(),
        "{} not found: build it with `cargo build --release -p rds-e2e --bins` or pass --blockio",
        blockio.display()
    );
    let span = args.seq_mib << 20;
    let size = span + (64 << 20);

    let dir = tempfile::tempdir()?;
    let sim = SimTarget::start(dir.path())?;
    let disk = sim.export_disk(SLOT, NQN, size, HOST_NQN)?;
    let guest = Guest::boot(GuestConfig {
        memory_mb: 512 + (size >> 20) as u32,
        cpus: args.cpus,
        extra_files: vec![(blockio, "/usr/bin/blockio".into())],
        command_timeout: Duration::from_secs(600),
        ..GuestConfig::default()
    })?;
    guest.run_ok("modprobe nvme-tcp")?;
    KernelTarget {
        nqn: NVMET_NQN,
        size,
        port: NVMET_PORT,
        uuid_hex: &disk.uuid_hex,
        serial: &disk.serial,
    }
    .start(&guest)?;
    let device = |traddr: &str, port: u16, nqn: &str| -> anyhow::Result<String> {
        guest_nvme::connect(
            &guest,
            &Connect {
                traddr,
                port,
                nqn,
                host_nqn: HOST_NQN,
                options: "",
            },
        )?;
        Ok(guest_nvme::namespace_device(&guest, nqn)?)
    };
    let sim_device = device(HOST_ADDR, sim.port(), NQN)?;
    let nvmet_device = device("127.0.0.1", NVMET_PORT, NVMET_NQN)?;

    println!(
        "bench-nvme: guest {} CPU(s) under TCG, {} job(s), median of {} round(s), rds-sim on the host via {HOST_ADDR}, nvmet in the guest on 127.0.0.1",
        args.cpus, args.jobs, args.rounds
    );
    println!(
        "{:<11} {:>7} {:>9} {:>14} {:>14} {:>7}",
        "pattern", "block", "MiB", "rds-sim MiB/s", "nvmet MiB/s", "ratio"
    );
    let patterns = [
        ("seq-write", 1 << 20, args.seq_mib),
        ("seq-read", 1 << 20, args.seq_mib),
        ("rand-write", 4096, args.rand_mib),
        ("rand-read", 4096, args.rand_mib),
    ];
    for (pattern, block, mib) in patterns {
        let run = |device: &str| -> anyhow::Result<f64> {
            let output = guest.run_ok(&format!(
                "blockio {device} {pattern} --block-size {block} --bytes {} --span {span} --jobs {}",
                mib << 20,
                args.jobs
            ))?;
            mib_per_s(&output.stdout)
        };
        let (mut nvmet, mut rds_sim) = (Vec::new(), Vec::new());
        for round in 0..args.rounds.max(1) {
            if round % 2 == 0 {
                nvmet.push(run(&nvmet_device)?);
                rds_sim.push(run(&sim_device)?);
            } else {
                rds_sim.push(run(&sim_device)?);
                nvmet.push(run(&nvmet_device)?);
            }
        }
        let (nvmet, rds_sim) = (median(nvmet), median(rds_sim));
        println!(
            "{pattern:<11} {block:>7} {mib:>9} {rds_sim:>14.2} {nvmet:>14.2} {:>7.2}",
            rds_sim / nvmet
        );
    }
    drop(guest);
    sim.shutdown();
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn mib_per_s(line: &str) -> anyhow::Result<f64> {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("mib_per_s="))
        .ok_or_else(|| anyhow::anyhow!("no mib_per_s in blockio's output {line:?}"))?
        .parse()
        .map_err(|e| anyhow::anyhow!("mib_per_s in {line:?}: {e}"))
}

//! `rds-chaos run --seed S --steps N`: a seeded workload through rds-csi's CSI API against an
//! in-process rds-sim that injects faults; on a failure, the command that replays it and a shrunk
//! schedule.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use rds_chaos::shrink::shrink;
use rds_chaos::{Faults, Plant, Stats};

#[derive(Parser)]
#[command(name = "rds-chaos", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one seed's schedule, then checks the invariants.
    Run {
        #[arg(long)]
        seed: u64,
        #[arg(long, default_value_t = 300)]
        steps: usize,
        /// Inject only the fault steps at these indices (a shrunk schedule), comma-separated.
        #[arg(long, value_delimiter = ',', num_args = 0..)]
        faults: Option<Vec<usize>>,
        /// Plant a known bug, to see it caught.
        #[arg(long, value_enum)]
        plant: Option<Plant>,
        /// Replays the shrinker may make of a failing run (0: do not shrink).
        #[arg(long, default_value_t = 48)]
        shrink_runs: u32,
        /// Print a progress line every this many steps (0: none).
        #[arg(long, default_value_t = 0)]
        progress: usize,
    },
}

fn summary(seed: u64, stats: &Stats) -> String {
    let secs = stats.elapsed.as_secs_f64();
    let kinds = |m: &std::collections::BTreeMap<&str, u64>| {
        m.iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "seed {seed}: {} steps in {secs:.1} s ({:.1} steps/s), {} retries, {} idle ops\n  ops: {}\n  faults ({}): {}",
        stats.steps,
        stats.steps as f64 / secs.max(1e-9),
        stats.retries,
        stats.idle,
        kinds(&stats.ops),
        stats.faults_total(),
        kinds(&stats.faults),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    let Command::Run {
        seed,
        steps,
        faults,
        plant,
        shrink_runs,
        progress,
    } = Cli::parse().command;
    let faults = match faults {
        Some(kept) => Faults::Only(kept.into_iter().collect::<BTreeSet<_>>()),
        None => Faults::All,
    };
    let started = Instant::now();
    let mut report = |stats: &Stats| {
        if progress > 0 && stats.steps.is_multiple_of(progress) {
            eprintln!(
                "seed {seed}: step {}/{steps}, {:.1} steps/s, {} faults, {} retries",
                stats.steps,
                stats.steps as f64 / started.elapsed().as_secs_f64().max(1e-9),
                stats.faults_total(),
                stats.retries
            );
        }
    };
    let (stats, result) = rds_chaos::run(seed, steps, &faults, plant, &mut report).await;
    println!("{}", summary(seed, &stats));
    if let Some(why) = &stats.node_skipped {
        println!(
            "seed {seed}: WARNING: rds-csi's node plugin was NOT exercised (no stage, publish, \
             unpublish or unstage; every write over NVMe/TCP): {why}"
        );
    }
    let Err(failure) = result else {
        println!("seed {seed}: every invariant holds");
        return ExitCode::SUCCESS;
    };
    println!("seed {seed}: FAILED {failure}");
    if !failure.context.is_empty() {
        println!("the RDS's last commands:");
        for line in &failure.context {
            println!("  {line}");
        }
    }
    let mut replay = format!("rds-chaos run --seed {seed} --steps {steps}");
    if let Faults::Only(kept) = &faults {
        let list: Vec<String> = kept.iter().map(ToString::to_string).collect();
        replay.push_str(&format!(" --faults '{}'", list.join(",")));
    }
    if let Some(plant) = plant {
        let name = clap::ValueEnum::to_possible_value(&plant).expect("named");
        replay.push_str(&format!(" --plant {}", name.get_name()));
    }
    println!("replay: {replay}");
    if shrink_runs > 0 && faults == Faults::All {
        let shrunk = shrink(seed, steps, &failure, plant, shrink_runs).await;
        println!(
            "shrunk to {} steps and {} faults in {} replays{}: {}",
            shrunk.steps,
            shrunk.faults.len(),
            shrunk.runs,
            if shrunk.cut_short {
                " (replay budget spent)"
            } else {
                ""
            },
            shrunk.command(seed, plant)
        );
        for line in shrunk.describe(seed) {
            println!("  {line}");
        }
    }
    ExitCode::FAILURE
}

//! bench-sim: how many RouterOS commands per second rds-sim serves over SSH.
//!
//! Starts rds-sim in-process (a temporary data dir, no injected latency), fills it with `--disks`
//! `pvc-` disks, then drives it from `--sessions` concurrent SSH connections, each the driver's own
//! client (`rds_csi::rds::ssh::SshTransport`), until `--seconds` have passed or `--count` commands
//! have run. Each session picks, by a seeded RNG, one of:
//! - 5 in 10: `/disk print detail where slot="…"` on a random existing disk (a volume lookup);
//! - 2 in 10: `:put [:serialize to=json [/disk print detail as-value where slot~"^pvc-"]]` (a list);
//! - 3 in 10: a churn of its own disk, `/disk add` then `/disk remove` then `/file remove`, each
//!   timed as its own command.
//!
//! The client and the simulator share one process and one tokio runtime, so the figures are what
//! the machine sustains for both sides together. On a shared machine wall-clock figures depend on
//! what else runs, so the CPU time the process spent during the run is printed too (commands per
//! CPU-second, and the load average before the run). Any unexpected output (an error where
//! silence is due, a print that misses its disk) is counted and makes the run fail.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rds_csi::rds::ssh::{HostKeyPin, SshTransport, Timeouts};
use rds_sim::server::{Options, RunningSim};
use rds_sim::ssh::load_or_generate_host_key;

#[derive(Debug, Parser)]
#[command(about = "Drive rds-sim over concurrent SSH sessions and print commands/s and latency")]
struct Args {
    /// Concurrent SSH sessions, one connection each.
    #[arg(long, default_value_t = 32)]
    sessions: usize,
    /// How long to run (ignored when --count is given).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Stop after this many commands instead of after --seconds.
    #[arg(long)]
    count: Option<u64>,
    /// `pvc-` disks created before the run, which the prints look up and the list returns.
    #[arg(long, default_value_t = 100)]
    disks: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const POOL: &str = rds_sim::server::DEFAULT_POOL;
const DISK_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Print,
    ListJson,
    Add,
    Remove,
    FileRemove,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Print,
        Kind::ListJson,
        Kind::Add,
        Kind::Remove,
        Kind::FileRemove,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::Print => "disk print detail where slot=",
            Kind::ListJson => "serialize json disk print slot~",
            Kind::Add => "disk add",
            Kind::Remove => "disk remove",
            Kind::FileRemove => "file remove",
        }
    }

    fn index(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).expect("listed")
    }
}

/// Per-kind latencies in microseconds, and the count of commands whose output was wrong.
#[derive(Default)]
struct Tally {
    micros: [Vec<u64>; 5],
    failures: u64,
    first_failure: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        for (mine, theirs) in self.micros.iter_mut().zip(other.micros) {
            mine.extend(theirs);
        }
        self.failures += other.failures;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }
}

/// When the run ends: a deadline, or a budget of commands shared by every session.
struct Budget {
    deadline: Option<Instant>,
    remaining: Option<AtomicU64>,
}

impl Budget {
    /// Takes `n` commands from the budget; false once it is spent.
    fn take(&self, n: u64) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        match &self.remaining {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(n)
                })
                .is_ok(),
        }
    }
}

struct Session {
    id: usize,
    transport: SshTransport,
    rng: StdRng,
    churns: u64,
    tally: Tally,
}

impl Session {
    async fn timed(&mut self, kind: Kind, line: &str, ok: impl Fn(&str) -> bool) {
        let start = Instant::now();
        let output = self.transport.run(line).await;
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.tally.micros[kind.index()].push(micros);
        let failure = match output {
            Ok(text) if ok(&text) => return,
            Ok(text) => format!("`{line}` printed {text:?}"),
            Err(error) => format!("`{line}` failed: {error}"),
        };
        self.tally.failures += 1;
        self.tally.first_failure.get_or_insert(failure);
    }

    async fn run(mut self, disks: Arc<Vec<String>>, budget: Arc<Budget>) -> Tally {
        loop {
            let pick = self.rng.random_range(0..10);
            let commands = if pick < 7 { 1 } else { 3 };
            if !budget.take(commands) {
                return self.tally;
            }
            match pick {
                0..5 => {
                    let slot = &disks[self.rng.random_range(0..disks.len())];
                    let line = format!("/disk print detail where slot=\"{slot}\"");
                    let expected = format!("slot=\"{slot}\"");
                    self.timed(Kind::Print, &line, |out| out.contains(&expected))
                        .await;
                }
                5..7 => {
                    let line = ":put [:serialize to=json [/disk print detail as-value where slot~\"^pvc-\"]]";
                    let count = disks.len();
                    self.timed(Kind::ListJson, line, |out| {
                        out.matches("\"slot\":").count() == count
                    })
                    .await;
                }
                _ => self.churn().await,
            }
        }
    }

    async fn churn(&mut self) {
        self.churns += 1;
        let slot = format!("bench-{}-{}", self.id, self.churns);
        let path = format!("{POOL}/bench/{slot}.img");
        let silent = |out: &str| out.trim().is_empty();
        let add = format!(
            "/disk add type=file file-path=\"{path}\" file-size={DISK_BYTES} slot=\"{slot}\" mount-filesystem=no"
        );
        self.timed(Kind::Add, &add, silent).await;
        let remove = format!("/disk remove [find where slot=\"{slot}\"]");
        self.timed(Kind::Remove, &remove, silent).await;
        let file_remove = format!("/file remove \"{path}\"");
        self.timed(Kind::FileRemove, &file_remove, silent).await;
    }
}

/// The value below which `p` of the sorted samples fall (nearest rank).
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// User plus system CPU time this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let of = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    of(usage.ru_utime) + of(usage.ru_stime)
}

/// The 1-minute load average, to judge how much of the machine the run had.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn report(args: &Args, tally: &mut Tally, elapsed: Duration, cpu: Duration, load: &str) -> String {
    let secs = elapsed.as_secs_f64();
    let mut all = Vec::new();
    let mut out = format!(
        "bench-sim: {} sessions, {} prefilled disks, seed {}, {:.2} s\n\
         {:<34} {:>9} {:>10} {:>9} {:>9}\n",
        args.sessions, args.disks, args.seed, secs, "kind", "commands", "cmd/s", "p50 ms", "p99 ms"
    );
    for kind in Kind::ALL {
        let samples = &mut tally.micros[kind.index()];
        samples.sort_unstable();
        all.extend_from_slice(samples);
        let _ = writeln!(
            out,
            "{:<34} {:>9} {:>10.1} {:>9.2} {:>9.2}",
            kind.label(),
            samples.len(),
            samples.len() as f64 / secs,
            percentile(samples, 0.50),
            percentile(samples, 0.99),
        );
    }
    all.sort_unstable();
    let _ = writeln!(
        out,
        "{:<34} {:>9} {:>10.1} {:>9.2} {:>9.2}",
        "all",
        all.len(),
        all.len() as f64 / secs,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
    );
    let _ = writeln!(
        out,
        "cpu: {:.2} s user+sys ({:.2} cores busy, load average {load} before the run), \
         {:.0} us per command, {:.0} commands per CPU-second",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() / secs,
        cpu.as_secs_f64() * 1e6 / all.len().max(1) as f64,
        all.len() as f64 / cpu.as_secs_f64().max(f64::EPSILON),
    );
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.sessions == 0 || args.disks == 0 {
        bail!("--sessions and --disks must be at least 1");
    }
    let dir = tempfile::tempdir().context("creating a temporary data dir")?;
    let client_key = load_or_generate_host_key(&dir.path().join("id_bench"))?;
    let running = RunningSim::start(Options {
        seed: args.seed,
        ..Options::loopback(
            dir.path().join("data"),
            client_key.public_key().clone(),
            1 << 50,
        )
    })
    .await?;
    let addr = running.ssh_addr.to_string();
    let pin = HostKeyPin::of_key(&running.host_public_key);
    let key = Arc::new(client_key);

    let mut sessions = Vec::with_capacity(args.sessions);
    for id in 0..args.sessions {
        let transport =
            SshTransport::connect(&addr, "admin", key.clone(), &pin, Timeouts::default())
                .await
                .with_context(|| format!("connecting session {id}"))?;
        sessions.push(Session {
            id,
            transport,
            rng: StdRng::seed_from_u64(args.seed.wrapping_add(id as u64)),
            churns: 0,
            tally: Tally::default(),
        });
    }

    let disks: Vec<String> = (0..args.disks).map(|n| format!("pvc-{n:028x}")).collect();
    for slot in &disks {
        let line = format!(
            "/disk add type=file file-path=\"{POOL}/csi/{slot}.img\" file-size={DISK_BYTES} \
             slot=\"{slot}\" mount-filesystem=no nvme-tcp-export=yes \
             nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:{slot}\" comment=\"rds-csi:1,kind:volume\""
        );
        let output = sessions[0].transport.run(&line).await?;
        if !output.trim().is_empty() {
            bail!("prefilling with `{line}` failed: {output}");
        }
    }

    let budget = Arc::new(Budget {
        deadline: args
            .count
            .is_none()
            .then(|| Instant::now() + Duration::from_secs(args.seconds)),
        remaining: args.count.map(AtomicU64::new),
    });
    let disks = Arc::new(disks);
    let load = load_average();
    let cpu_before = cpu_time();
    let start = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|session| tokio::spawn(session.run(disks.clone(), budget.clone())))
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await?);
    }
    let elapsed = start.elapsed();
    let cpu = cpu_time() - cpu_before;
    print!("{}", report(&args, &mut tally, elapsed, cpu, &load));
    running.shutdown().await;
    if let Some(first) = tally.first_failure {
        bail!("{} commands failed; the first: {first}", tally.failures);
    }
    Ok(())
}

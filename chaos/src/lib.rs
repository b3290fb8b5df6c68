//! rds-chaos: seeded, replayable fault schedules against rds-sim, with invariants checked at the end.
//!
//! A schedule is a list of steps drawn from one seed: workload steps (create a volume and write a
//! pattern into it, delete a volume) interleaved with faults (crash before or after a command's
//! commit, restart, dropped sessions). The runner drives the simulator the way a careful client
//! does — retrying a command whose connection dropped and reading back what happened — and then
//! checks the invariants: no data lost, no orphaned disk or file.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rds_sim::faults::{CrashPoint, Fault};
use rds_sim::sim::Sim;
use rds_sim::ssh::Reply;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create volume `n` and write its pattern.
    Create(u32),
    Delete(u32),
    Inject(Fault),
}

/// The steps for `seed`: the same seed always gives the same schedule.
pub fn schedule(seed: u64, steps: usize) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..steps)
        .map(|_| match rng.random_range(0..10) {
            0..=4 => Step::Create(rng.random_range(0..16)),
            5..=6 => Step::Delete(rng.random_range(0..16)),
            7 => Step::Inject(Fault::Crash {
                pattern: if rng.random_bool(0.5) {
                    "^/disk add".into()
                } else {
                    "^/disk remove".into()
                },
                point: if rng.random_bool(0.5) {
                    CrashPoint::BeforeCommit
                } else {
                    CrashPoint::AfterCommit
                },
                count: 1,
            }),
            8 => Step::Inject(Fault::Restart { downtime_ms: 0 }),
            _ => Step::Inject(Fault::DropSessions),
        })
        .collect()
}

const MIB: u64 = 1 << 20;

fn slot(n: u32) -> String {
    format!("chaos-{n}")
}

fn file(n: u32) -> String {
    format!("storage-pool/chaos/{}.img", slot(n))
}

fn pattern(n: u32, generation: u32) -> Vec<u8> {
    format!("volume {n} generation {generation}\n").into_bytes()
}

/// A violated invariant, with the seed that replays it.
#[derive(Debug, thiserror::Error)]
#[error("seed {seed}: {what}")]
pub struct Violation {
    pub seed: u64,
    pub what: String,
}

pub struct Runner<'a> {
    sim: &'a Sim,
    session: u64,
    /// What the client believes exists: volume → the generation of the pattern written into it.
    expected: BTreeMap<u32, u32>,
    generation: u32,
}

impl<'a> Runner<'a> {
    pub fn new(sim: &'a Sim) -> Runner<'a> {
        let (session, _) =
            sim.open_session("admin", "127.0.0.1:1".parse().expect("literal address"));
        Runner {
            sim,
            session,
            expected: BTreeMap::new(),
            generation: 0,
        }
    }

    /// Runs a line until a reply arrives (a crash drops the connection; the client reconnects and
    /// tries again, as the driver does).
    async fn run(&mut self, line: &str) -> String {
        loop {
            match self.sim.exec(self.session, line).await {
                Reply::Output { text, .. } => return text,
                Reply::Hangup => continue,
            }
        }
    }

    async fn exists(&mut self, n: u32) -> bool {
        let out = self
            .run(&format!(
                "/disk print count-only where slot=\"{}\"",
                slot(n)
            ))
            .await;
        out.trim_end() == "1"
    }

    pub async fn create(&mut self, n: u32) -> Result<(), String> {
        if self.expected.contains_key(&n) {
            return Ok(());
        }
        let add = format!(
            "/disk add type=file file-path=\"{}\" file-size=1M slot=\"{}\"",
            file(n),
            slot(n)
        );
        let out = self.run(&add).await;
        // A retry after a crash-after-commit finds the disk already there: read back, never assume.
        if !out.is_empty() && !self.exists(n).await {
            return Err(format!("create {n}: {out}"));
        }
        self.generation += 1;
        let disk = self
            .sim
            .disks()
            .into_iter()
            .find(|d| d.slot == slot(n))
            .ok_or_else(|| format!("create {n}: disk missing after add"))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.sim.backing_path(&disk))
            .map_err(|e| e.to_string())?;
        f.seek(SeekFrom::Start(MIB / 2))
            .map_err(|e| e.to_string())?;
        f.write_all(&pattern(n, self.generation))
            .map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())?;
        self.expected.insert(n, self.generation);
        Ok(())
    }

    pub async fn delete(&mut self, n: u32) -> Result<(), String> {
        let out = self
            .run(&format!("/disk remove [find where slot=\"{}\"]", slot(n)))
            .await;
        if !out.is_empty() {
            return Err(format!("delete {n}: {out}"));
        }
        let out = self
            .run(&format!("/file remove [find where name=\"{}\"]", file(n)))
            .await;
        if !out.is_empty() {
            return Err(format!("delete {n} file: {out}"));
        }
        self.expected.remove(&n);
        Ok(())
    }

    /// Runs the schedule, then checks the invariants; finally deletes everything and checks that
    /// nothing is left behind.
    pub async fn run_schedule(&mut self, seed: u64, steps: &[Step]) -> Result<(), Violation> {
        let fail = |what: String| Violation { seed, what };
        for step in steps {
            match step {
                Step::Create(n) => self.create(*n).await.map_err(fail)?,
                Step::Delete(n) => self.delete(*n).await.map_err(fail)?,
                Step::Inject(f) => self.sim.inject(f).map_err(|e| fail(e.to_string()))?,
            }
        }
        self.sim
            .inject(&Fault::Clear)
            .map_err(|e| fail(e.to_string()))?;
        self.check_data().map_err(fail)?;
        let all: Vec<u32> = self.expected.keys().copied().collect();
        for n in all {
            self.delete(n).await.map_err(fail)?;
        }
        self.check_empty().map_err(fail)
    }

    /// No data lost: every volume the client created holds the last pattern written to it, and no
    /// volume exists that the client did not create.
    pub fn check_data(&self) -> Result<(), String> {
        let disks = self.sim.disks();
        for (n, generation) in &self.expected {
            let disk = disks
                .iter()
                .find(|d| d.slot == slot(*n))
                .ok_or_else(|| format!("volume {n} was lost"))?;
            let mut f =
                std::fs::File::open(self.sim.backing_path(disk)).map_err(|e| e.to_string())?;
            let want = pattern(*n, *generation);
            let mut got = vec![0; want.len()];
            f.seek(SeekFrom::Start(MIB / 2))
                .map_err(|e| e.to_string())?;
            f.read_exact(&mut got).map_err(|e| e.to_string())?;
            if got != want {
                return Err(format!("volume {n} lost its data"));
            }
        }
        for d in &disks {
            let known = self.expected.keys().any(|n| slot(*n) == d.slot);
            if !known {
                return Err(format!("disk {} exists but was never acknowledged", d.slot));
            }
        }
        Ok(())
    }

    /// No orphans: after deleting everything, no disk and no backing file remain.
    fn check_empty(&self) -> Result<(), String> {
        let state = self.sim.state();
        if !state.disks.is_empty() {
            return Err(format!("orphaned disks: {:?}", state.disks));
        }
        let orphans: Vec<_> = state
            .files
            .iter()
            .filter(|f| f.name.starts_with("storage-pool/chaos/"))
            .collect();
        if !orphans.is_empty() {
            return Err(format!("orphaned files: {orphans:?}"));
        }
        Ok(())
    }
}

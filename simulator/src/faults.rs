//! The fault plan: what goes wrong, where, and how often. Every random choice comes from one seeded
//! RNG, so a run is replayable from its seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When a crash fault strikes relative to the command's commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrashPoint {
    /// The connection drops before the command runs: nothing changes.
    BeforeCommit,
    /// The command runs and commits, then the connection drops with no reply.
    AfterCommit,
}

/// Every fault the simulator can inject, as the control API and the Rust API take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// Drop every connection, refuse new ones for `downtime_ms`, reload state from disk.
    Restart { downtime_ms: u64 },
    /// Delay commands whose line matches `pattern` by `fixed_ms` plus up to `jitter_ms`.
    Latency {
        pattern: String,
        fixed_ms: u64,
        #[serde(default)]
        jitter_ms: u64,
    },
    /// Answer the next `count` commands matching `pattern` with `text` instead of running them.
    Error {
        pattern: String,
        text: String,
        #[serde(default = "one")]
        count: u32,
    },
    /// Drop the connection around the next `count` commands matching `pattern`.
    Crash {
        pattern: String,
        point: CrashPoint,
        #[serde(default = "one")]
        count: u32,
    },
    /// The pool reports no free space, so every allocation fails.
    PoolFull { enabled: bool },
    /// Close every SSH session now.
    DropSessions,
    /// Send exit-status 1 with error text (RouterOS's own status is unverified; default 0).
    ExitStatusOnError { enabled: bool },
    /// Drop live NVMe/TCP connections: all, or those of one subsystem NQN and/or host NQN.
    NvmeDrop {
        #[serde(default)]
        nqn: Option<String>,
        #[serde(default)]
        host: Option<String>,
    },
    /// Refuse new NVMe/TCP connections for `duration_ms`.
    NvmeRefuse { duration_ms: u64 },
    /// Delay every NVMe/TCP read and write by `latency_ms` (0 removes it).
    NvmeLatency { latency_ms: u64 },
    /// Hold every NVMe/TCP I/O until switched off, to exercise the host's timeouts.
    NvmeStall { enabled: bool },
    /// Remove every rule and switch back to defaults.
    Clear,
}

fn one() -> u32 {
    1
}

struct Rule<T> {
    pattern: Regex,
    what: T,
    remaining: u32,
}

/// The rules in force.
pub struct FaultPlan {
    latency: Vec<Rule<(u64, u64)>>,
    errors: Vec<Rule<String>>,
    crashes: Vec<Rule<CrashPoint>>,
    pub pool_full: bool,
    pub exit_status_on_error: bool,
    rng: StdRng,
}

/// A fault that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("fault pattern {pattern:?} is not a valid regular expression: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("no NVMe/TCP target is running: start rds-sim with --nvme-listen")]
    NoTarget,
    #[error("nvme-drop takes an nqn or a host, not both")]
    NqnAndHost,
}

fn compile(pattern: &str) -> Result<Regex, FaultError> {
    Regex::new(pattern).map_err(|e| FaultError::BadPattern {
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })
}

/// Takes one use of the first rule matching `line`, dropping rules that are used up.
fn take<T: Clone>(rules: &mut Vec<Rule<T>>, line: &str) -> Option<T> {
    let i = rules.iter().position(|r| r.pattern.is_match(line))?;
    let what = rules[i].what.clone();
    rules[i].remaining -= 1;
    if rules[i].remaining == 0 {
        rules.remove(i);
    }
    Some(what)
}

impl FaultPlan {
    pub fn new(seed: u64) -> FaultPlan {
        FaultPlan {
            latency: Vec::new(),
            errors: Vec::new(),
            crashes: Vec::new(),
            pool_full: false,
            exit_status_on_error: false,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Adds a command-level rule. Restarts, session drops and NVMe/TCP faults are carried out by
    /// the simulator.
    pub fn add(&mut self, fault: &Fault) -> Result<(), FaultError> {
        match fault {
            Fault::Latency {
                pattern,
                fixed_ms,
                jitter_ms,
            } => self.latency.push(Rule {
                pattern: compile(pattern)?,
                what: (*fixed_ms, *jitter_ms),
                remaining: u32::MAX,
            }),
            Fault::Error {
                pattern,
                text,
                count,
            } => self.errors.push(Rule {
                pattern: compile(pattern)?,
                what: text.clone(),
                remaining: (*count).max(1),
            }),
            Fault::Crash {
                pattern,
                point,
                count,
            } => self.crashes.push(Rule {
                pattern: compile(pattern)?,
                what: *point,
                remaining: (*count).max(1),
            }),
            Fault::PoolFull { enabled } => self.pool_full = *enabled,
            Fault::ExitStatusOnError { enabled } => self.exit_status_on_error = *enabled,
            Fault::Clear => {
                self.latency.clear();
                self.errors.clear();
                self.crashes.clear();
                self.pool_full = false;
                self.exit_status_on_error = false;
            }
            Fault::Restart { .. }
            | Fault::DropSessions
            | Fault::NvmeDrop { .. }
            | Fault::NvmeRefuse { .. }
            | Fault::NvmeLatency { .. }
            | Fault::NvmeStall { .. } => {}
        }
        Ok(())
    }

    /// The delay for a command line: the first matching latency rule, with seeded jitter.
    pub fn latency_for(&mut self, line: &str) -> Duration {
        let Some(rule) = self.latency.iter().find(|r| r.pattern.is_match(line)) else {
            return Duration::ZERO;
        };
        let (fixed, jitter) = rule.what;
        let extra = if jitter == 0 {
            0
        } else {
            self.rng.random_range(0..=jitter)
        };
        Duration::from_millis(fixed + extra)
    }

    pub fn take_error(&mut self, line: &str) -> Option<String> {
        take(&mut self.errors, line)
    }

    pub fn take_crash(&mut self, line: &str) -> Option<CrashPoint> {
        take(&mut self.crashes, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rules_are_used_up_in_order() {
        let mut plan = FaultPlan::new(1);
        plan.add(&Fault::Error {
            pattern: "^/disk add".into(),
            text: "failure: boom".into(),
            count: 2,
        })
        .unwrap();
        assert_eq!(plan.take_error("/disk print"), None);
        assert_eq!(
            plan.take_error("/disk add x").as_deref(),
            Some("failure: boom")
        );
        assert_eq!(
            plan.take_error("/disk add y").as_deref(),
            Some("failure: boom")
        );
        assert_eq!(plan.take_error("/disk add z"), None);
    }

    #[test]
    fn jitter_is_replayable_from_the_seed() {
        let fault = Fault::Latency {
            pattern: ".".into(),
            fixed_ms: 10,
            jitter_ms: 50,
        };
        let run = |seed| {
            let mut plan = FaultPlan::new(seed);
            plan.add(&fault).unwrap();
            (0..20).map(|_| plan.latency_for("/x")).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(
            run(7)
                .iter()
                .all(|d| (10..=60).contains(&(d.as_millis() as u64)))
        );
    }

    #[test]
    fn a_bad_pattern_is_refused_with_its_reason() {
        let mut plan = FaultPlan::new(1);
        let err = plan
            .add(&Fault::Crash {
                pattern: "(".into(),
                point: CrashPoint::AfterCommit,
                count: 1,
            })
            .unwrap_err();
        assert!(err.to_string().contains("not a valid regular expression"));
    }

    #[test]
    fn faults_round_trip_through_json() {
        let f: Fault = serde_json::from_str(
            r#"{"fault":"crash","pattern":"^/disk add","point":"after-commit"}"#,
        )
        .unwrap();
        assert_eq!(
            f,
            Fault::Crash {
                pattern: "^/disk add".into(),
                point: CrashPoint::AfterCommit,
                count: 1
            }
        );
    }
}

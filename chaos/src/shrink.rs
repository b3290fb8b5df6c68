//! Shrinking a failing run: the schedule is cut after the failing step, then delta debugging
//! (Zeller's ddmin) removes fault steps while a replay still fails the same way. Operations are
//! never removed, so the workload a shrunk schedule replays is the original one.

use std::collections::BTreeSet;

use crate::schedule::{Step, schedule};
use crate::{Failure, Faults, Plant};

/// A smaller schedule that fails the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shrunk {
    pub steps: usize,
    /// The indices of the fault steps kept.
    pub faults: Vec<usize>,
    /// Replays it took.
    pub runs: u32,
    /// True when the replay budget ran out before ddmin finished.
    pub cut_short: bool,
}

impl Shrunk {
    /// The command that replays the shrunk schedule.
    pub fn command(&self, seed: u64, plant: Option<Plant>) -> String {
        let faults: Vec<String> = self.faults.iter().map(ToString::to_string).collect();
        let mut command = format!(
            "rds-chaos run --seed {seed} --steps {} --faults '{}'",
            self.steps,
            faults.join(",")
        );
        if let Some(plant) = plant {
            command.push_str(&format!(
                " --plant {}",
                clap::ValueEnum::to_possible_value(&plant)
                    .expect("every plant has a name")
                    .get_name()
            ));
        }
        command
    }

    /// The fault steps kept, one per line.
    pub fn describe(&self, seed: u64) -> Vec<String> {
        let steps = schedule(seed, self.steps);
        self.faults
            .iter()
            .map(|&i| match &steps[i] {
                Step::Fault(chaos) => format!(
                    "step {i}: {}",
                    serde_json::to_string(chaos).expect("faults serialise")
                ),
                Step::Op(op) => format!("step {i}: {op:?}"),
            })
            .collect()
    }
}

/// Shrinks `failure` of `seed` (run with `steps` steps), replaying at most `max_runs` times.
pub async fn shrink(
    seed: u64,
    steps: usize,
    failure: &Failure,
    plant: Option<Plant>,
    max_runs: u32,
) -> Shrunk {
    let steps = failure.step.map_or(steps, |at| at + 1);
    let all: Vec<usize> = schedule(seed, steps)
        .iter()
        .enumerate()
        .filter(|(_, step)| matches!(step, Step::Fault(_)))
        .map(|(i, _)| i)
        .collect();
    let mut runs = 0;
    let mut cut_short = false;
    let faults = ddmin(all, async |kept: &[usize]| {
        if runs >= max_runs {
            cut_short = true;
            return false;
        }
        runs += 1;
        let only = Faults::Only(kept.iter().copied().collect::<BTreeSet<_>>());
        let (_, result) = crate::run(seed, steps, &only, plant, &mut |_| {}).await;
        result.is_err_and(|f| f.same_as(failure))
    })
    .await;
    Shrunk {
        steps,
        faults,
        runs,
        cut_short,
    }
}

/// A 1-minimal subset of `items` for which `fails` holds (assumed to hold for `items`).
pub async fn ddmin(
    mut items: Vec<usize>,
    mut fails: impl AsyncFnMut(&[usize]) -> bool,
) -> Vec<usize> {
    if fails(&[]).await {
        return Vec::new();
    }
    let mut n = 2;
    while items.len() >= 2 {
        let size = items.len().div_ceil(n);
        let chunks: Vec<Vec<usize>> = items.chunks(size).map(<[usize]>::to_vec).collect();
        let mut reduced = None;
        for chunk in &chunks {
            if fails(chunk).await {
                reduced = Some((chunk.clone(), 2));
                break;
            }
        }
        if reduced.is_none() && chunks.len() > 2 {
            for chunk in &chunks {
                let rest: Vec<usize> = items
                    .iter()
                    .copied()
                    .filter(|i| !chunk.contains(i))
                    .collect();
                if fails(&rest).await {
                    reduced = Some((rest, (n - 1).max(2)));
                    break;
                }
            }
        }
        match reduced {
            Some((smaller, next)) => {
                items = smaller;
                n = next;
            }
            None if n >= items.len() => break,
            None => n = (n * 2).min(items.len()),
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn ddmin_finds_the_pair_that_fails_together() {
        let items: Vec<usize> = (0..40).collect();
        let mut calls = 0;
        let found = block_on(ddmin(items, async |kept: &[usize]| {
            calls += 1;
            kept.contains(&7) && kept.contains(&31)
        }));
        assert_eq!(found, vec![7, 31]);
        assert!(calls < 100, "{calls} calls");
    }

    #[test]
    fn ddmin_gives_nothing_when_the_failure_needs_no_item() {
        let found = block_on(ddmin(vec![1, 2, 3], async |_: &[usize]| true));
        assert!(found.is_empty());
    }
}

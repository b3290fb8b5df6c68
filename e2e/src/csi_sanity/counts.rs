//! What ginkgo says at the end of a csi-sanity run, and the verdict on it. The exit status alone
//! cannot tell a run that passed everything from one that skipped nearly everything (a capability
//! lost, a focus that matches nothing), so the counts are read and checked too.

use std::fmt;

/// ginkgo's closing counts: `Ran 90 of 96 Specs …` and `… 90 Passed | 0 Failed | 0 Pending |
/// 6 Skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub ran: u32,
    pub of: u32,
    pub passed: u32,
    pub failed: u32,
    pub pending: u32,
    pub skipped: u32,
}

impl Counts {
    /// The counts in csi-sanity's output (the last report when there are several); `None` when
    /// the output has none, as when it stopped before running a spec.
    pub fn parse(output: &str) -> Option<Counts> {
        let ran_line = output.lines().rev().find_map(|line| {
            let rest = line.trim().strip_prefix("Ran ")?;
            let (ran, rest) = rest.split_once(" of ")?;
            let (of, _) = rest.split_once(" Specs")?;
            Some((ran.parse().ok()?, of.parse().ok()?))
        })?;
        let tallies = output.lines().rev().find_map(|line| {
            // "SUCCESS! -- 90 Passed | …" or "FAIL! -- 89 Passed | …".
            let (_, tally) = line.split_once("-- ")?;
            let mut counts = [None; 4];
            for part in tally.split('|') {
                let (number, word) = part.trim().split_once(' ')?;
                let slot = ["Passed", "Failed", "Pending", "Skipped"]
                    .iter()
                    .position(|w| *w == word.trim())?;
                counts[slot] = Some(number.parse().ok()?);
            }
            Some(counts.map(|c| c.unwrap_or(0)))
        })?;
        let (ran, of) = ran_line;
        let [passed, failed, pending, skipped] = tallies;
        Some(Counts {
            ran,
            of,
            passed,
            failed,
            pending,
            skipped,
        })
    }

    /// Why these counts fail a run that must pass at least `min_passed` specs and fail none.
    pub fn verdict(&self, min_passed: u32) -> Result<(), String> {
        if self.failed > 0 {
            return Err(format!("{} specs failed ({self})", self.failed));
        }
        if self.passed < min_passed {
            return Err(format!(
                "only {} specs passed, fewer than the {min_passed} this run must pass ({self}): \
                 a capability the driver no longer advertises, or a focus that matches less",
                self.passed
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Ran {} of {} Specs: {} Passed | {} Failed | {} Pending | {} Skipped",
            self.ran, self.of, self.passed, self.failed, self.pending, self.skipped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSED: &str = "\
Running Suite: CSI Driver Test Suite - /work
============================================
Random Seed: 1765020000

Will run 90 of 96 specs
••••S•••

Ran 90 of 96 Specs in 41.203 seconds
SUCCESS! -- 84 Passed | 0 Failed | 0 Pending | 6 Skipped
PASS
";

    #[test]
    fn reads_ginkgos_closing_counts() {
        assert_eq!(
            Counts::parse(PASSED),
            Some(Counts {
                ran: 90,
                of: 96,
                passed: 84,
                failed: 0,
                pending: 0,
                skipped: 6,
            })
        );
    }

    #[test]
    fn a_failure_or_too_few_passes_fail_the_run() {
        let failed = Counts::parse(
            "Ran 90 of 96 Specs in 1 seconds\nFAIL! -- 83 Passed | 1 Failed | 0 Pending | 6 Skipped\n",
        )
        .unwrap();
        assert_eq!(failed.failed, 1);
        assert!(failed.verdict(80).unwrap_err().contains("1 specs failed"));
        let passed = Counts::parse(PASSED).unwrap();
        assert_eq!(passed.verdict(84), Ok(()));
        let message = passed.verdict(85).unwrap_err();
        assert!(message.contains("only 84 specs passed"), "{message}");
        assert!(message.contains("Ran 90 of 96 Specs"), "{message}");
    }

    #[test]
    fn output_without_counts_has_none() {
        assert_eq!(Counts::parse("panic: cannot connect\n"), None);
        assert_eq!(Counts::parse("Ran 3 of 9 Specs\n"), None);
    }
}

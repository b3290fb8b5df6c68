//! `rds-csi doctor --snapshots`: which snapshot methods copy data on this RDS.
//!
//! Unlike the other checks this one writes: each probe makes two small disks and files in
//! `<pool>/<baseDir>` and removes them again (and says so when it cannot).

use anyhow::Context;
use std::fmt;

use crate::config::Config;
use crate::service::Driver;
use crate::snapshot::Method;
use crate::snapshot::probe::{self, Outcome, Verdict};

/// Every method's probe, and the method the configuration picks.
#[derive(Debug, Clone)]
pub struct SnapshotReport {
    pub configured: Method,
    pub outcomes: Vec<Outcome>,
}

impl SnapshotReport {
    /// True when the configured method copies data.
    pub fn ok(&self) -> bool {
        self.verdict(self.configured)
            .is_some_and(Verdict::copies_data)
    }

    pub fn verdict(&self, method: Method) -> Option<&Verdict> {
        self.outcomes
            .iter()
            .find(|o| o.method == method)
            .map(|o| &o.verdict)
    }
}

impl fmt::Display for SnapshotReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "snapshot methods:")?;
        for outcome in &self.outcomes {
            let mark = match outcome.verdict {
                Verdict::CopiesData => " ok ",
                Verdict::CopiesSettingsOnly => "NO  ",
                Verdict::Unavailable(_) => " -- ",
            };
            writeln!(f, "[{mark}] {}: {}", outcome.method, outcome.verdict)?;
            for leftover in &outcome.leftovers {
                writeln!(f, "       left behind: {leftover}")?;
            }
        }
        let working: Vec<&str> = self
            .outcomes
            .iter()
            .filter(|o| o.verdict.copies_data())
            .map(|o| o.method.as_str())
            .collect();
        if self.ok() {
            writeln!(f, "the configured method {} copies data", self.configured)
        } else if working.is_empty() {
            writeln!(
                f,
                "no method copies data on this RDS: snapshots cannot be taken"
            )
        } else {
            writeln!(
                f,
                "the configured method {} does not copy data: set controller.snapshotMethod to {}",
                self.configured,
                working.join(" or ")
            )
        }
    }
}

/// Probes every snapshot method on the RDS in `config`.
pub async fn probe(config: &Config) -> Result<SnapshotReport, anyhow::Error> {
    let driver = Driver::new(config.clone()).await?;
    let pool = config.rds.pool_path().map_err(anyhow::Error::msg)?;
    let dir = pool.join(&config.rds.base_dir_path().map_err(anyhow::Error::msg)?);
    Ok(SnapshotReport {
        configured: config.controller.snapshot_method,
        outcomes: probe::probe_all(
            driver
                .rds()
                .context("the driver was built without an RDS client")?,
            &dir,
        )
        .await,
    })
}

//! The controller's memory of probes: each method is probed once per RouterOS version of the
//! appliance, before its first use, and refused when it does not copy data.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use super::Method;
use super::probe::{self, Verdict};
use crate::rds::disk::{RdsClient, RdsError};
use crate::rds::parse::RosVersion;
use crate::rds::value::RosPath;

/// Why a method may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "snapshot method {method} does not copy data on this RDS (RouterOS {version}): probed, \
         it {verdict}; {advice}"
    )]
    NoData {
        method: Method,
        version: RosVersion,
        verdict: Verdict,
        advice: String,
    },
    #[error(transparent)]
    Rds(#[from] RdsError),
}

/// Probe verdicts by RouterOS version and method.
#[derive(Default)]
pub struct Verified {
    verdicts: Mutex<HashMap<(RosVersion, Method), Verdict>>,
}

impl Verified {
    /// Ok when `method` copies data on this RDS, probing it (in `dir`) if this RouterOS version
    /// has not been probed yet. A refusal names the methods that do copy data.
    pub async fn check(
        &self,
        rds: &Arc<RdsClient>,
        dir: &RosPath,
        method: Method,
    ) -> Result<(), Refused> {
        let version = rds.version().await?;
        let mut verdicts = self.verdicts.lock().await;
        let verdict = self.verdict(&mut verdicts, rds, dir, version, method).await;
        if verdict.copies_data() {
            return Ok(());
        }
        let mut working = Vec::new();
        for other in Method::ALL.into_iter().filter(|&m| m != method) {
            if self
                .verdict(&mut verdicts, rds, dir, version, other)
                .await
                .copies_data()
            {
                working.push(other.as_str());
            }
        }
        let advice = if working.is_empty() {
            "no snapshot method copies data on this RDS; run `rds-csi doctor --snapshots`"
                .to_owned()
        } else {
            format!(
                "use {} instead (VolumeSnapshotClass parameter `method` or controller.snapshotMethod)",
                working.join(" or ")
            )
        };
        Err(Refused::NoData {
            method,
            version,
            verdict,
            advice,
        })
    }

    async fn verdict(
        &self,
        verdicts: &mut HashMap<(RosVersion, Method), Verdict>,
        rds: &Arc<RdsClient>,
        dir: &RosPath,
        version: RosVersion,
        method: Method,
    ) -> Verdict {
        if let Some(verdict) = verdicts.get(&(version, method)) {
            return verdict.clone();
        }
        // The probe runs as a task of its own: a CreateSnapshot whose deadline passes is
        // dropped, and a probe dropped with it would leave its disks and files on the RDS
        // (found by rds-chaos). The caller still waits for the verdict.
        let (rds, dir) = (Arc::clone(rds), dir.clone());
        let outcome =
            match tokio::spawn(async move { probe::probe(&rds, &dir, method).await }).await {
                Ok(outcome) => outcome,
                Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
            };
        for leftover in &outcome.leftovers {
            tracing::warn!(%method, "snapshot probe left something behind: {leftover}");
        }
        tracing::info!(%method, %version, verdict = %outcome.verdict, "snapshot method probed");
        // A failed probe may have failed for a passing reason (a dropped connection): only
        // what a completed probe showed is remembered.
        if !matches!(outcome.verdict, Verdict::Unavailable(_)) {
            verdicts.insert((version, method), outcome.verdict.clone());
        }
        outcome.verdict
    }
}

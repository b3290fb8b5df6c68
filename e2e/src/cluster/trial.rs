//! One `cluster` trial: a fresh cluster target per case, a verdict that also fails when one of the
//! chart's processes died, and the logs kept when it fails.

use std::path::{Path, PathBuf};

use libtest_mimic::{Completion, Failed, Trial};

use super::target::{ClusterError, ClusterTarget};
use crate::config::Settings;

/// A case: it gets the running target and returns what went wrong.
pub type CaseFuture<'a> = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;
pub type Case = fn(&mut ClusterTarget) -> CaseFuture<'_>;

/// A trial of `case` on a target installed with the chart's default values for tests.
pub fn trial(name: &'static str, case: Case) -> Trial {
    trial_with(name, Vec::new(), case)
}

/// A trial of `case` on a target installed with `values` set.
pub fn trial_with(
    name: &'static str,
    values: Vec<(&'static str, serde_json::Value)>,
    case: Case,
) -> Trial {
    Trial::ignorable_test(name, move || {
        let settings = Settings::from_env().map_err(|e| Failed::from(e.to_string()))?;
        let runtime = crate::suite::runtime()?;
        runtime.block_on(async {
            let mut cluster = match ClusterTarget::start_configured(&settings.sim, &values).await {
                Ok(cluster) => cluster,
                Err(ClusterError::Skipped(reason)) => {
                    eprintln!("SKIPPED: {reason}");
                    return Ok(Completion::ignored_with(reason));
                }
                Err(e) => return Err(Failed::from(format!("starting the cluster target: {e}"))),
            };
            let outcome = case(&mut cluster).await;
            let verdict = match outcome.and_then(|()| cluster.check_running()) {
                Ok(()) => Ok(Completion::Completed),
                Err(e) => Err(Failed::from(format!(
                    "{e:#}\n(the logs of every process are kept in {})",
                    keep_logs(&cluster.logs()).display()
                ))),
            };
            cluster.shutdown().await;
            verdict
        })
    })
}

/// A failed trial's logs, copied out of the temporary directory that goes with the target.
fn keep_logs(logs: &Path) -> PathBuf {
    let kept = std::env::temp_dir().join(format!("rds-e2e-cluster-logs-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&kept);
    if let Ok(entries) = std::fs::read_dir(logs) {
        for entry in entries.flatten() {
            let _ = std::fs::copy(entry.path(), kept.join(entry.file_name()));
        }
    }
    kept
}

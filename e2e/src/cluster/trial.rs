//! One Kubernetes trial. A shared flow runs on the kind cluster when `RDS_E2E_TARGET=kind` and on
//! a fresh process cluster otherwise; a case that controls the processes runs on the process
//! cluster only and is ignored on kind, saying why. The verdict also fails when one of the chart's
//! processes died (on kind: a container restarted), and a failed process trial keeps its logs.

use std::path::{Path, PathBuf};

use libtest_mimic::{Completion, Failed, Trial};

use super::kind::KindCluster;
use super::reach::Cluster;
use super::target::{ClusterError, ClusterTarget};
use crate::config::{KindSettings, Settings, SimSettings, TargetKind};

/// A case: it gets the running target and returns what went wrong.
pub type CaseFuture<'a> = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;
/// A case of the process cluster only: it stops, kills or reconfigures its processes.
pub type Case = fn(&mut ClusterTarget) -> CaseFuture<'_>;
/// A flow every Kubernetes target runs: it reaches the cluster only through [`Cluster`].
pub type Flow = fn(Cluster<'_>) -> CaseFuture<'_>;

/// Chart values set before `helm install` on the process cluster.
pub type Values = Vec<(&'static str, serde_json::Value)>;

/// A trial of `flow` on the target `RDS_E2E_TARGET` names: the kind cluster for `kind`, a process
/// cluster installed with the chart's default values for tests otherwise.
pub fn trial(name: &'static str, flow: Flow) -> Trial {
    Trial::ignorable_test(name, move || {
        let settings = Settings::from_env().map_err(|e| Failed::from(e.to_string()))?;
        let runtime = crate::suite::runtime()?;
        runtime.block_on(async {
            match settings.target {
                TargetKind::Kind => on_kind(&settings.kind, flow).await,
                _ => on_processes(&settings.sim, &[], Run::Flow(flow)).await,
            }
        })
    })
}

/// A trial of `case` on a process cluster installed with `values` set; on kind it is ignored,
/// `not_on_kind` saying why.
pub fn process_trial(
    name: &'static str,
    values: Values,
    not_on_kind: &'static str,
    case: Case,
) -> Trial {
    Trial::ignorable_test(name, move || {
        let settings = Settings::from_env().map_err(|e| Failed::from(e.to_string()))?;
        if settings.target == TargetKind::Kind {
            return Ok(Completion::ignored_with(format!(
                "not on kind: {not_on_kind}"
            )));
        }
        let runtime = crate::suite::runtime()?;
        runtime.block_on(on_processes(&settings.sim, &values, Run::Case(case)))
    })
}

enum Run {
    Flow(Flow),
    Case(Case),
}

async fn on_processes(
    sim: &SimSettings,
    values: &[(&'static str, serde_json::Value)],
    run: Run,
) -> Result<Completion, Failed> {
    let mut cluster = match ClusterTarget::start_configured(sim, values).await {
        Ok(cluster) => cluster,
        Err(ClusterError::Skipped(reason)) => {
            eprintln!("SKIPPED: {reason}");
            return Ok(Completion::ignored_with(reason));
        }
        Err(e) => return Err(Failed::from(format!("starting the cluster target: {e}"))),
    };
    let outcome = match run {
        Run::Flow(flow) => flow(Cluster::Processes(&cluster)).await,
        Run::Case(case) => case(&mut cluster).await,
    };
    let verdict = match outcome.and_then(|()| cluster.check_running()) {
        Ok(()) => Ok(Completion::Completed),
        Err(e) => Err(Failed::from(format!(
            "{e:#}\n(the logs of every process are kept in {})",
            keep_logs(&cluster.logs()).display()
        ))),
    };
    cluster.shutdown().await;
    verdict
}

/// Runs `flow` on the kind cluster, then deletes whatever it left in the suites' namespace so the
/// next trial starts clean: after a flow that passed there must be nothing to delete.
async fn on_kind(settings: &KindSettings, flow: Flow) -> Result<Completion, Failed> {
    let kind = KindCluster::connect(settings)
        .await
        .map_err(|e| Failed::from(format!("reaching the kind cluster: {e:#}")))?;
    let outcome = flow(Cluster::Kind(&kind)).await;
    let running = kind.check_running().await;
    let cleaned = kind.clean().await;
    let mut problems = Vec::new();
    if let Err(e) = outcome {
        problems.push(format!("{e:#}"));
    }
    if let Err(e) = running {
        problems.push(format!("{e:#}"));
    }
    match cleaned {
        Ok(deleted) if !deleted.is_empty() => problems.push(format!(
            "the trial left {} in namespace {}; deleted now",
            deleted.join(", "),
            super::objects::NAMESPACE
        )),
        Ok(_) => {}
        Err(e) => problems.push(format!("cleaning up after the trial: {e:#}")),
    }
    if problems.is_empty() {
        Ok(Completion::Completed)
    } else {
        Err(Failed::from(problems.join("\nand then: ")))
    }
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

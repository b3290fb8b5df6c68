//! One run of a schedule: select, create, and only after every creation succeeded, expire.

use std::fmt;

use jiff::Timestamp;

use super::cluster::{Claim, Cluster, Creation};
use super::error::ScheduleError;
use super::naming::slot_start;
use super::retention::{Expiry, expired};
use super::settings::{Schedule, ScheduleName, Scope, Target};

/// A snapshot the run took, found or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOf {
    pub namespace: String,
    pub name: String,
    pub pvc: String,
}

/// What a run did, in the order it did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub schedule: ScheduleName,
    pub scope: Scope,
    pub slot: Timestamp,
    pub created: Vec<SnapshotOf>,
    /// Taken by an earlier run (or try) in the same slot.
    pub already_there: Vec<SnapshotOf>,
    /// PVCs left out, and why.
    pub skipped: Vec<(String, String)>,
    pub deleted: Vec<(SnapshotOf, Expiry)>,
    /// The schedule's snapshots left after retention; `None` when retention did not run.
    pub kept: Option<usize>,
}

/// A run that did not finish everything: what it did, and every error.
#[derive(Debug)]
pub struct RunFailed {
    pub report: Report,
    pub failures: Vec<ScheduleError>,
}

/// Runs `schedule` once at `now`. Every selected PVC is attempted even when one fails, but the
/// schedule's old snapshots are deleted only when every PVC has its snapshot for this slot.
pub async fn run(
    cluster: &Cluster,
    schedule: &Schedule,
    now: Timestamp,
) -> Result<Report, RunFailed> {
    let slot = slot_start(now, schedule.slot);
    let scope = schedule.target.scope();
    let mut report = Report {
        schedule: schedule.name.clone(),
        scope: scope.clone(),
        slot,
        created: Vec::new(),
        already_there: Vec::new(),
        skipped: Vec::new(),
        deleted: Vec::new(),
        kept: None,
    };
    let (claims, mut failures) = select(cluster, &schedule.target).await;
    for claim in claims {
        if let Some(why) = unsnapshottable(&claim) {
            tracing::warn!(
                namespace = claim.namespace,
                pvc = claim.name,
                why,
                "skipped"
            );
            report
                .skipped
                .push((format!("{}/{}", claim.namespace, claim.name), why));
            continue;
        }
        match cluster.create_snapshot(&claim, schedule, slot).await {
            Ok((name, creation)) => {
                tracing::info!(
                    namespace = claim.namespace,
                    name,
                    pvc = claim.name,
                    ?creation,
                    "snapshot"
                );
                let taken = SnapshotOf {
                    namespace: claim.namespace,
                    name,
                    pvc: claim.name,
                };
                match creation {
                    Creation::Created => report.created.push(taken),
                    Creation::AlreadyThere => report.already_there.push(taken),
                }
            }
            Err(e) => failures.push(e),
        }
    }
    if !failures.is_empty() {
        return Err(RunFailed { report, failures });
    }

    let owned = match cluster.list_owned(&scope, &schedule.name).await {
        Ok(owned) => owned,
        Err(e) => {
            return Err(RunFailed {
                report,
                failures: vec![e],
            });
        }
    };
    let expired = expired(&owned, &schedule.retention, now);
    for (snapshot, why) in &expired {
        match cluster.delete_snapshot(snapshot).await {
            Ok(_) => {
                tracing::info!(namespace = snapshot.namespace, name = snapshot.name, %why, "deleted");
                report.deleted.push((
                    SnapshotOf {
                        namespace: snapshot.namespace.clone(),
                        name: snapshot.name.clone(),
                        pvc: snapshot.pvc.clone(),
                    },
                    *why,
                ));
            }
            Err(e) => failures.push(e),
        }
    }
    let live = owned.iter().filter(|s| !s.deleting).count();
    report.kept = Some(live - report.deleted.len());
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(RunFailed { report, failures })
    }
}

/// The target's PVCs. A failed list selects nothing; with names, each missing or unreadable
/// PVC is one failure and the others are still selected.
async fn select(cluster: &Cluster, target: &Target) -> (Vec<Claim>, Vec<ScheduleError>) {
    match target {
        Target::Selector { scope, selector } => match cluster.list_claims(scope, selector).await {
            Ok(claims) => (claims, Vec::new()),
            Err(e) => (Vec::new(), vec![e]),
        },
        Target::Names { namespace, names } => {
            let mut claims = Vec::new();
            let mut failures = Vec::new();
            for name in names {
                match cluster.get_claim(namespace, name).await {
                    Ok(claim) => claims.push(claim),
                    Err(e) => failures.push(e),
                }
            }
            (claims, failures)
        }
    }
}

/// Why a snapshot of `claim` cannot be taken now; the snapshot-controller would leave one of an
/// unbound PVC pending forever.
fn unsnapshottable(claim: &Claim) -> Option<String> {
    if claim.deleting {
        return Some("the PVC is being deleted".to_owned());
    }
    match claim.phase.as_deref() {
        Some("Bound") => None,
        Some(phase) => Some(format!("the PVC is {phase}, not Bound")),
        None => Some("the PVC has no status yet, so it is not Bound".to_owned()),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "snapshot schedule {} {}, slot {}",
            self.schedule, self.scope, self.slot
        )?;
        for s in &self.created {
            writeln!(f, "  created  {}/{} of PVC {}", s.namespace, s.name, s.pvc)?;
        }
        for s in &self.already_there {
            writeln!(
                f,
                "  present  {}/{} of PVC {} (taken earlier in this slot)",
                s.namespace, s.name, s.pvc
            )?;
        }
        for (pvc, why) in &self.skipped {
            writeln!(f, "  skipped  PVC {pvc}: {why}")?;
        }
        if self.created.is_empty() && self.already_there.is_empty() && self.skipped.is_empty() {
            writeln!(f, "  no PVC selected")?;
        }
        for (s, why) in &self.deleted {
            writeln!(
                f,
                "  deleted  {}/{} of PVC {}: {why}",
                s.namespace, s.name, s.pvc
            )?;
        }
        match self.kept {
            Some(kept) => writeln!(f, "  kept     {kept} snapshot(s) of this schedule"),
            None => writeln!(f, "  retention not applied: nothing was deleted"),
        }
    }
}

impl fmt::Display for RunFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "snapshot schedule {} failed ({} error(s)):",
            self.report.schedule,
            self.failures.len()
        )?;
        for failure in &self.failures {
            writeln!(f, "  - {failure}")?;
        }
        if self.report.kept.is_none() {
            writeln!(
                f,
                "No snapshot was deleted: retention runs only once every selected PVC has its snapshot for this slot. Fix the errors above and run again; snapshots already taken in this slot are reused."
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for RunFailed {}

//! KubeVirt live migration (docs/operations.md, "KubeVirt live migration").
//!
//! A VirtualMachineInstanceMigration (kubevirt.io/v1) moves a running VMI to another node; while
//! it runs, the VMI's ReadWriteMany block volumes must be attached to both nodes. Each pass reads
//! the migrations and VMIs the API server shows ([`track`], pure) and
//! - every replica refreshes the controller's registry of migration windows ([`windows`]), which
//!   ControllerPublishVolume consults to admit the target as the second node;
//! - the reconciler ([`Migrating::apply`]) takes the other node off the volume's allow-list when
//!   a migration ends: the source once it succeeded (the VM runs on the target now), the target
//!   once it failed or ran longer than its StorageClass's `migrationTimeoutSeconds`; and records
//!   the Events MigrationStarted, MigrationCompleted and MigrationFailed on the claims.
//!
//! The objects are read as dynamic objects, for the few fields used: a migration's
//! `spec.vmiName`, `status.phase` and creation time; a VMI's `spec.volumes[]`
//! (`persistentVolumeClaim.claimName`, `dataVolume.name`: a DataVolume's claim has its name),
//! `status.nodeName` and `status.migrationState` (`migrationUid`, `sourceNode`, `targetNode`),
//! which describes the VMI's latest migration.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Resource, ResourceExt};
use serde_json::Value;

use super::events::Events;
use super::fencing;
use super::health::node_id;
use crate::controller::ControllerService;
use crate::controller::migration::Window;
use crate::controller::params::{DEFAULT_MIGRATION_TIMEOUT, Parameters};
use crate::rds::value::Nqn;

/// kubevirt.io/v1 VirtualMachineInstance.
pub fn instance_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "kubevirt.io",
        "v1",
        "VirtualMachineInstance",
    ))
}

/// kubevirt.io/v1 VirtualMachineInstanceMigration.
pub fn migration_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "kubevirt.io",
        "v1",
        "VirtualMachineInstanceMigration",
    ))
}

/// The KubeVirt objects and StorageClasses one pass reads.
#[derive(Default)]
pub struct Seen {
    pub instances: Vec<Arc<DynamicObject>>,
    pub migrations: Vec<Arc<DynamicObject>>,
    pub classes: Vec<Arc<StorageClass>>,
}

/// Where a migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Any phase before Succeeded or Failed (Pending, Scheduling … Running).
    Running,
    Succeeded,
    Failed,
}

/// One migration of a VMI, for one of its volumes of this driver.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    /// The migration's uid.
    pub uid: String,
    pub volume: String,
    pub claim: ObjectReference,
    pub stage: Stage,
    /// The VMI's `status.migrationState` is this migration's: it is the VMI's latest.
    pub latest: bool,
    pub window: Window,
    /// How long until a running migration's window expires.
    pub expires_in: Option<Duration>,
}

/// The migrations of VMIs that use volumes of `driver`, per volume.
pub fn track(kubevirt: &Seen, seen: &fencing::Seen, driver: &str, now: Timestamp) -> Vec<Tracked> {
    let hosts: BTreeMap<String, String> = seen
        .nodes
        .iter()
        .filter_map(|node| Some((node.name_any(), node_id(node, driver)?)))
        .collect();
    let host_of = |node: Option<&str>| node.and_then(|n| hosts.get(n)).cloned();
    let mut tracked = Vec::new();
    for migration in &kubevirt.migrations {
        let namespace = migration.namespace().unwrap_or_default();
        let Some(vmi_name) = text(&migration.data, "/spec/vmiName") else {
            continue;
        };
        let Some(vmi) = kubevirt
            .instances
            .iter()
            .find(|i| i.namespace().as_deref() == Some(&namespace) && i.name_any() == vmi_name)
        else {
            continue;
        };
        let uid = migration.uid().unwrap_or_default();
        let state = vmi.data.pointer("/status/migrationState");
        let state_uid = state.and_then(|s| text(s, "/migrationUid"));
        let latest = state.is_some() && state_uid.is_none_or(|u| u == uid);
        let state = state.filter(|_| latest);
        let stage = match text(&migration.data, "/status/phase") {
            Some("Succeeded") => Stage::Succeeded,
            Some("Failed") => Stage::Failed,
            _ => Stage::Running,
        };
        // Before KubeVirt fills in the migration state, the VMI runs on the source.
        let source = state
            .and_then(|s| text(s, "/sourceNode"))
            .or_else(|| text(&vmi.data, "/status/nodeName"));
        let target = state.and_then(|s| text(s, "/targetNode"));
        let started = migration.creation_timestamp().map(|t| t.0);
        let elapsed = started
            .map(|t| now.duration_since(t).unsigned_abs())
            .unwrap_or_default();
        for (claim, pv) in claims_of(vmi, seen) {
            let Some((volume, class)) = csi_volume(&pv, driver) else {
                continue;
            };
            let timeout = timeout_of(kubevirt, class.as_deref());
            tracked.push(Tracked {
                uid: uid.clone(),
                volume,
                claim,
                stage,
                latest,
                window: Window {
                    migration: format!("{namespace}/{}", migration.name_any()),
                    vmi: format!("{namespace}/{vmi_name}"),
                    source: host_of(source),
                    target: host_of(target),
                    timeout,
                    expired: elapsed > timeout,
                },
                expires_in: (stage == Stage::Running)
                    .then(|| timeout.checked_sub(elapsed))
                    .flatten(),
            });
        }
    }
    tracked
}

/// The registry's windows: the migrations in progress, by volume. Of two in progress for one
/// volume (which KubeVirt does not allow), the first listed is kept.
pub fn windows(tracked: &[Tracked]) -> BTreeMap<String, Window> {
    let mut windows = BTreeMap::new();
    for t in tracked.iter().filter(|t| t.stage == Stage::Running) {
        windows
            .entry(t.volume.clone())
            .or_insert_with(|| t.window.clone());
    }
    windows
}

/// How long until the next running migration's window expires: the next pass must see it.
pub fn next_expiry(tracked: &[Tracked]) -> Option<Duration> {
    tracked.iter().filter_map(|t| t.expires_in).min()
}

/// What a pass does about one tracked migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Running within its timeout: say so once.
    Started,
    /// The volume keeps only this host (when it holds it): the other one is taken off, its
    /// connections ended. `failed`: the migration failed or timed out, else it completed.
    KeepOnly {
        host: String,
        failed: bool,
    },
    Nothing,
}

/// The step for one tracked migration. A finished migration that is not the VMI's latest is
/// history: acting on it could take a volume from a later migration's node.
pub fn step(t: &Tracked) -> Step {
    let keep = |host: &Option<String>, failed| match host {
        Some(host) => Step::KeepOnly {
            host: host.clone(),
            failed,
        },
        None => Step::Nothing,
    };
    match t.stage {
        Stage::Running if t.window.expired => keep(&t.window.source, true),
        Stage::Running => Step::Started,
        Stage::Succeeded if t.latest => keep(&t.window.target, false),
        Stage::Failed if t.latest => keep(&t.window.source, true),
        Stage::Succeeded | Stage::Failed => Step::Nothing,
    }
}

/// The claims a VMI's volumes name, with the PVs bound to them.
fn claims_of(
    vmi: &DynamicObject,
    seen: &fencing::Seen,
) -> Vec<(ObjectReference, Arc<PersistentVolume>)> {
    let namespace = vmi.namespace();
    let volumes = vmi
        .data
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    volumes
        .iter()
        .filter_map(|v| {
            text(v, "/persistentVolumeClaim/claimName").or_else(|| text(v, "/dataVolume/name"))
        })
        .filter_map(|name| {
            let claim = seen
                .claims
                .iter()
                .find(|c| c.namespace() == namespace && c.name_any() == name)?;
            let pv_name = claim.spec.as_ref()?.volume_name.as_ref()?;
            let pv = seen.volumes.iter().find(|pv| &pv.name_any() == pv_name)?;
            Some((claim.object_ref(&()), pv.clone()))
        })
        .collect()
}

/// A PV's volume handle and StorageClass, when it is a volume of `driver`.
fn csi_volume(pv: &PersistentVolume, driver: &str) -> Option<(String, Option<String>)> {
    let spec = pv.spec.as_ref()?;
    let csi = spec.csi.as_ref().filter(|csi| csi.driver == driver)?;
    Some((csi.volume_handle.clone(), spec.storage_class_name.clone()))
}

/// The StorageClass's `migrationTimeoutSeconds`, or the default (no class, a class that is gone,
/// or one whose parameters this driver would refuse: its volumes were never made).
fn timeout_of(kubevirt: &Seen, class: Option<&str>) -> Duration {
    class
        .and_then(|name| kubevirt.classes.iter().find(|c| c.name_any() == name))
        .and_then(|c| {
            let parameters = c.parameters.clone()?.into_iter().collect();
            Parameters::parse(&parameters).ok()
        })
        .and_then(|p| p.migration_timeout)
        .unwrap_or(DEFAULT_MIGRATION_TIMEOUT)
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer)?.as_str().filter(|s| !s.is_empty())
}

/// Carries out the steps against the RDS and records the Events.
pub struct Migrating {
    pub controller: Arc<ControllerService>,
    pub events: Arc<Events>,
    /// The (migration uid, reason) Events this process has recorded, so that each goes out once;
    /// a finished migration is announced only when this process saw it run or acted on it.
    announced: Mutex<BTreeSet<(String, &'static str)>>,
}

impl Migrating {
    pub fn new(controller: Arc<ControllerService>, events: Arc<Events>) -> Migrating {
        Migrating {
            controller,
            events,
            announced: Mutex::default(),
        }
    }

    /// One pass; a failed step is logged and tried again on the next pass.
    pub async fn apply(&self, tracked: &[Tracked]) {
        let live: BTreeSet<&str> = tracked.iter().map(|t| t.uid.as_str()).collect();
        self.announced()
            .retain(|(uid, _)| live.contains(uid.as_str()));
        for t in tracked {
            if let Err(error) = self.apply_one(t).await {
                tracing::warn!(
                    migration = t.window.migration,
                    volume = t.volume,
                    error = format!("{error:#}"),
                    "live migration step failed; retrying on the next pass"
                );
            }
        }
    }

    async fn apply_one(&self, t: &Tracked) -> anyhow::Result<()> {
        let (migration, vmi) = (&t.window.migration, &t.window.vmi);
        match step(t) {
            Step::Nothing => Ok(()),
            Step::Started => {
                if self.first(t, "MigrationStarted") {
                    let note = format!(
                        "live migration {migration} of VMI {vmi} started: volume {} may be \
                         attached to the target node as well for up to {}s \
                         (migrationTimeoutSeconds)",
                        t.volume,
                        t.window.timeout.as_secs()
                    );
                    self.events.normal(&t.claim, "MigrationStarted", note).await;
                }
                Ok(())
            }
            Step::KeepOnly { host, failed } => {
                let hosts = self.controller.published_hosts(&t.volume).await?;
                let holds = hosts.contains(&host);
                let mut removed = Vec::new();
                for other in hosts.iter().filter(|h| holds && **h != host) {
                    if self
                        .controller
                        .remove_host(&t.volume, &Nqn::parse(other)?)
                        .await?
                    {
                        removed.push(other.clone());
                    }
                }
                if !removed.is_empty() {
                    tracing::info!(
                        migration,
                        volume = t.volume,
                        removed = removed.join(","),
                        kept = host,
                        "took a live migration's other node off the volume's allow-list"
                    );
                }
                // A timeout is news whenever it happens; an end, when this process saw the
                // migration run or acted on it (not every old migration after a restart).
                let news = (failed && t.stage == Stage::Running)
                    || !removed.is_empty()
                    || (holds && self.was_announced(t, "MigrationStarted"));
                let reason = if failed {
                    "MigrationFailed"
                } else {
                    "MigrationCompleted"
                };
                if news && self.first(t, reason) {
                    self.announce(t, failed, &host, &removed).await;
                }
                Ok(())
            }
        }
    }

    async fn announce(&self, t: &Tracked, failed: bool, kept: &str, removed: &[String]) {
        crate::metrics::migration_outcome(if failed { "failed" } else { "completed" });
        let (migration, vmi) = (&t.window.migration, &t.window.vmi);
        let taken = if removed.is_empty() {
            String::new()
        } else {
            format!(
                "; node {} was fenced out of it on the RDS (allow-list, connections ended)",
                removed.join(" and ")
            )
        };
        if !failed {
            let note = format!(
                "live migration {migration} of VMI {vmi} completed: volume {} stays published \
                 to the target node {kept}{taken}",
                t.volume
            );
            self.events
                .normal(&t.claim, "MigrationCompleted", note)
                .await;
            return;
        }
        let why = if t.stage == Stage::Running {
            format!(
                "has run longer than its StorageClass's migrationTimeoutSeconds ({}s)",
                t.window.timeout.as_secs()
            )
        } else {
            "failed".to_owned()
        };
        let note = format!(
            "live migration {migration} of VMI {vmi} {why}: volume {} stays published to the \
             source node {kept} only, and no second node is admitted{taken}",
            t.volume
        );
        self.events.warning(&t.claim, "MigrationFailed", note).await;
    }

    fn announced(&self) -> std::sync::MutexGuard<'_, BTreeSet<(String, &'static str)>> {
        self.announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// True the first time `reason` comes up for this migration.
    fn first(&self, t: &Tracked, reason: &'static str) -> bool {
        self.announced().insert((t.uid.clone(), reason))
    }

    fn was_announced(&self, t: &Tracked, reason: &'static str) -> bool {
        self.announced().contains(&(t.uid.clone(), reason))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;

    const DRIVER: &str = "rds.csi.mikrotik.com";
    const A: &str = "nqn.2014-08.org.nvmexpress:uuid:a";
    const B: &str = "nqn.2014-08.org.nvmexpress:uuid:b";

    fn object<K: DeserializeOwned>(value: Value) -> Arc<K> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn node(name: &str, host: &str) -> Arc<Node> {
        let ids = json!({ DRIVER: host }).to_string();
        object(json!({"metadata": {"name": name, "annotations": {
            "csi.volume.kubernetes.io/nodeid": ids,
        }}}))
    }

    /// The claim `disk` bound to PV `pv-1` (handle `pvc-1`) in `class`, and the nodes a and b.
    fn cluster(class: Option<&str>) -> fencing::Seen {
        fencing::Seen {
            nodes: vec![node("node-a", A), node("node-b", B)],
            claims: vec![object(json!({
                "metadata": {"name": "disk", "namespace": "vms", "uid": "claim-uid"},
                "spec": {"volumeName": "pv-1"},
            }))],
            volumes: vec![object(json!({
                "metadata": {"name": "pv-1"},
                "spec": {
                    "storageClassName": class,
                    "csi": {"driver": DRIVER, "volumeHandle": "pvc-1"},
                },
            }))],
            ..fencing::Seen::default()
        }
    }

    fn vmi(state: Value) -> Arc<DynamicObject> {
        object(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm", "namespace": "vms"},
            "spec": {"volumes": [
                {"name": "root", "containerDisk": {"image": "x"}},
                {"name": "disk", "persistentVolumeClaim": {"claimName": "disk"}},
            ]},
            "status": {"nodeName": "node-a", "migrationState": state},
        }))
    }

    fn migration(uid: &str, phase: &str, created: &str) -> Arc<DynamicObject> {
        object(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": "migrate", "namespace": "vms", "uid": uid,
                "creationTimestamp": created},
            "spec": {"vmiName": "vm"},
            "status": {"phase": phase},
        }))
    }

    fn class(name: &str, timeout: &str) -> Arc<StorageClass> {
        object(json!({
            "metadata": {"name": name}, "provisioner": DRIVER,
            "parameters": {"migrationTimeoutSeconds": timeout},
        }))
    }

    const START: &str = "2026-01-01T00:00:00Z";

    fn at(seconds: i64) -> Timestamp {
        START.parse::<Timestamp>().unwrap() + jiff::SignedDuration::from_secs(seconds)
    }

    fn running_to_b() -> Value {
        json!({"migrationUid": "m1", "sourceNode": "node-a", "targetNode": "node-b"})
    }

    #[test]
    fn a_running_migration_opens_a_window_with_source_and_target_hosts() {
        let kubevirt = Seen {
            instances: vec![vmi(running_to_b())],
            migrations: vec![migration("m1", "Running", START)],
            classes: vec![class("fast", "120")],
        };
        let tracked = track(&kubevirt, &cluster(Some("fast")), DRIVER, at(30));
        assert_eq!(tracked.len(), 1);
        let t = &tracked[0];
        assert_eq!(t.volume, "pvc-1");
        assert_eq!(t.claim.name.as_deref(), Some("disk"));
        assert_eq!(
            t.window,
            Window {
                migration: "vms/migrate".into(),
                vmi: "vms/vm".into(),
                source: Some(A.into()),
                target: Some(B.into()),
                timeout: Duration::from_secs(120),
                expired: false,
            }
        );
        assert_eq!(t.expires_in, Some(Duration::from_secs(90)));
        assert_eq!(next_expiry(&tracked), Some(Duration::from_secs(90)));
        assert_eq!(step(t), Step::Started);
        assert_eq!(windows(&tracked).get("pvc-1"), Some(&t.window));
    }

    #[test]
    fn before_kubevirt_names_the_nodes_the_source_is_where_the_vmi_runs() {
        let kubevirt = Seen {
            instances: vec![vmi(Value::Null)],
            migrations: vec![migration("m1", "Pending", START)],
            classes: Vec::new(),
        };
        let tracked = track(&kubevirt, &cluster(None), DRIVER, at(1));
        assert_eq!(tracked[0].window.source.as_deref(), Some(A));
        assert_eq!(tracked[0].window.target, None);
        assert_eq!(tracked[0].window.timeout, DEFAULT_MIGRATION_TIMEOUT);
    }

    #[test]
    fn past_the_timeout_the_window_expires_and_the_source_keeps_the_volume() {
        let kubevirt = Seen {
            instances: vec![vmi(running_to_b())],
            migrations: vec![migration("m1", "Running", START)],
            classes: vec![class("fast", "5")],
        };
        let tracked = track(&kubevirt, &cluster(Some("fast")), DRIVER, at(6));
        assert!(tracked[0].window.expired);
        assert_eq!(tracked[0].expires_in, None);
        assert!(windows(&tracked)["pvc-1"].expired);
        assert_eq!(
            step(&tracked[0]),
            Step::KeepOnly {
                host: A.into(),
                failed: true
            }
        );
    }

    #[test]
    fn an_end_keeps_the_target_or_the_source_but_only_for_the_latest_migration() {
        for (phase, keep, failed) in [("Succeeded", B, false), ("Failed", A, true)] {
            let kubevirt = Seen {
                instances: vec![vmi(running_to_b())],
                migrations: vec![migration("m1", phase, START)],
                classes: Vec::new(),
            };
            let tracked = track(&kubevirt, &cluster(None), DRIVER, at(3600));
            assert!(windows(&tracked).is_empty(), "{phase}");
            let host = keep.to_owned();
            assert_eq!(step(&tracked[0]), Step::KeepOnly { host, failed });
            // A later migration is the VMI's latest now: this one is history.
            let later =
                json!({"migrationUid": "m2", "sourceNode": "node-b", "targetNode": "node-a"});
            let kubevirt = Seen {
                instances: vec![vmi(later)],
                ..kubevirt
            };
            let tracked = track(&kubevirt, &cluster(None), DRIVER, at(3600));
            assert_eq!(step(&tracked[0]), Step::Nothing, "{phase}");
        }
    }

    #[test]
    fn volumes_of_other_drivers_and_migrations_of_other_vmis_are_not_tracked() {
        let mut seen = cluster(None);
        seen.volumes = vec![object(json!({
            "metadata": {"name": "pv-1"},
            "spec": {"csi": {"driver": "other.csi.example.com", "volumeHandle": "x"}},
        }))];
        let kubevirt = Seen {
            instances: vec![vmi(running_to_b())],
            migrations: vec![migration("m1", "Running", START)],
            classes: Vec::new(),
        };
        assert!(track(&kubevirt, &seen, DRIVER, at(1)).is_empty());
        let elsewhere = object(json!({
            "metadata": {"name": "migrate", "namespace": "other", "uid": "m1"},
            "spec": {"vmiName": "vm"},
        }));
        let kubevirt = Seen {
            migrations: vec![elsewhere],
            ..kubevirt
        };
        assert!(track(&kubevirt, &cluster(None), DRIVER, at(1)).is_empty());
    }
}

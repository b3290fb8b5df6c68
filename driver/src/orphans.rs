//! Orphans: the driver's disks, files and exports on the RDS that nothing in the cluster names
//! (docs/operations.md, "Orphans"). [`find`] holds the rules, [`named`] what the API server
//! names; here are the controller's periodic [`Reconciler`] (a metric, a log line and an Event
//! per orphan; deletion only with `kubernetes.deleteOrphans`) and the listing that `rds-csi
//! orphans` prints. A wrong delete loses data, so a pass whose listing failed or came back cut
//! short does nothing, and every deletion goes through the controller's own delete paths.

mod find;
mod named;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use tokio::sync::Mutex;

pub use find::{FirstSeen, Kind, Named, OnRds, Orphan, Place, age, find};

use crate::config::KubernetesConfig;
use crate::controller::ControllerService;
use crate::kubernetes::Events;

/// The longest time between two passes, whatever the grace.
const MAX_INTERVAL: Duration = Duration::from_secs(300);

/// What one look found.
pub struct Found {
    /// Every orphan, whatever its age.
    pub orphans: Vec<Orphan>,
    /// False when VolumeSnapshotContents could not be listed (no snapshot CRDs), so no
    /// snapshot counted.
    pub snapshots_listed: bool,
}

/// Every orphan on the RDS, whatever its age: the RDS is read first, then the API server, so a
/// thing made in between is seen without the object that names it only while it is younger
/// than the grace.
pub async fn list(
    controller: &ControllerService,
    client: &Client,
    driver: &str,
) -> anyhow::Result<Found> {
    let rds = controller
        .inventory()
        .await
        .context("listing the disks and files on the RDS")?;
    let named = named::list(client, driver).await?;
    Ok(Found {
        orphans: find::find(&rds, &named, &controller.place()),
        snapshots_listed: named.snapshots.is_some(),
    })
}

/// The controller's orphan reconciler. Its state lives in memory: what it saw first when, and
/// what it has already recorded an Event for.
pub struct Reconciler {
    client: Client,
    driver: String,
    controller: Arc<ControllerService>,
    events: Arc<Events>,
    /// The driver's Namespace: the object every orphan Event is recorded on (an orphan has no
    /// object of its own, and the Namespace outlives any controller Pod).
    regarding: ObjectReference,
    grace: Duration,
    delete: bool,
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last: Option<Instant>,
    first_seen: FirstSeen,
    reported: HashSet<(Kind, String)>,
}

impl Reconciler {
    /// Passes run at most every `resyncSeconds`, at least every five minutes, and about four
    /// times per grace in between.
    pub fn new(
        client: Client,
        driver: &str,
        controller: Arc<ControllerService>,
        events: Arc<Events>,
        config: &KubernetesConfig,
    ) -> Reconciler {
        let grace = Duration::from_secs(config.orphan_grace_seconds);
        let resync = Duration::from_secs(config.resync_seconds);
        Reconciler {
            events,
            client,
            driver: driver.to_owned(),
            controller,
            regarding: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Namespace".to_owned()),
                name: Some(config.namespace.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectReference::default()
            },
            grace,
            delete: config.delete_orphans,
            interval: (grace / 4).min(MAX_INTERVAL).max(resync),
            state: Mutex::default(),
        }
    }

    /// Runs a pass when the last one is at least the interval old; the caller's loop calls it
    /// on every turn.
    pub async fn pass_when_due(&self) {
        let mut state = self.state.lock().await;
        if state
            .last
            .is_some_and(|last| last.elapsed() < self.interval)
        {
            return;
        }
        state.last = Some(Instant::now());
        self.pass(&mut state).await;
    }

    async fn pass(&self, state: &mut State) {
        let found = match list(&self.controller, &self.client, &self.driver).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "orphans were not looked for this time; the next pass tries again"
                );
                return;
            }
        };
        let now = Timestamp::now();
        let due = state.first_seen.due(found.orphans, now, self.grace);
        let mut left: BTreeMap<Kind, usize> = Kind::ALL.iter().map(|&k| (k, 0)).collect();
        let mut reported = HashSet::new();
        for orphan in &due {
            let key = (orphan.kind, orphan.name().to_owned());
            let subject = format!("{} {}", orphan.kind, orphan.name());
            if self.delete {
                match self.controller.delete_orphan(orphan).await {
                    Ok(()) => {
                        tracing::warn!(kind = %orphan.kind, name = orphan.name(), why = orphan.why, "deleted an orphan");
                        let note = format!("deleted orphan {subject}: {}", orphan.why);
                        self.events
                            .normal_about(&self.regarding, &subject, "OrphanDeleted", note)
                            .await;
                        continue;
                    }
                    Err(status) => {
                        tracing::warn!(kind = %orphan.kind, name = orphan.name(), why = orphan.why, error = status.message(), "could not delete an orphan; the next pass tries again");
                        let note = format!(
                            "could not delete orphan {subject} ({}): {}",
                            orphan.why,
                            status.message()
                        );
                        self.events
                            .warning_about(&self.regarding, &subject, "OrphanNotDeleted", note)
                            .await;
                    }
                }
            } else {
                tracing::warn!(kind = %orphan.kind, name = orphan.name(), why = orphan.why, "an orphan on the RDS, kept: kubernetes.deleteOrphans is off");
            }
            if !state.reported.contains(&key) {
                let note = format!(
                    "orphan {subject}: {}; {}",
                    orphan.why,
                    if self.delete {
                        "deletion failed, retried every pass"
                    } else {
                        "kept (kubernetes.deleteOrphans is off); `rds-csi orphans` lists them all"
                    }
                );
                self.events
                    .warning_about(&self.regarding, &subject, "OrphanFound", note)
                    .await;
            }
            reported.insert(key);
            *left.entry(orphan.kind).or_default() += 1;
        }
        state.reported = reported;
        for (kind, count) in left {
            crate::metrics::orphans(kind.as_str(), count);
        }
    }
}

/// What `rds-csi orphans` prints: every orphan, its age and whether the grace has passed.
pub struct Listing {
    pub place: Place,
    pub found: Found,
    pub now: Timestamp,
    pub grace: Duration,
    pub delete: bool,
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "orphans under {} and exported as {}:<id> (grace {}s; the controller {} them)",
            self.place.dir(),
            self.place.nqn_prefix,
            self.grace.as_secs(),
            if self.delete {
                "deletes"
            } else {
                "reports, and keeps,"
            }
        )?;
        if !self.found.snapshots_listed {
            writeln!(
                f,
                "VolumeSnapshotContents cannot be listed (the snapshot CRDs are not installed): \
                 no snapshot counts as an orphan"
            )?;
        }
        let orphans = &self.found.orphans;
        if orphans.is_empty() {
            return writeln!(f, "no orphans");
        }
        writeln!(f, "{:<7} {:<48} {:<12} WHY", "KIND", "NAME", "AGE")?;
        for orphan in orphans {
            let age = match orphan.created.map(|created| age(created, self.now)) {
                None => "unknown*".to_owned(),
                Some(None) => "future".to_owned(),
                Some(Some(age)) if age < self.grace => format!("{} <grace", short(age)),
                Some(Some(age)) => short(age),
            };
            writeln!(
                f,
                "{:<7} {:<48} {:<12} {}",
                orphan.kind,
                orphan.name(),
                age,
                orphan.why
            )?;
        }
        if orphans.iter().any(|o| o.created.is_none()) {
            writeln!(
                f,
                "* the RDS records no creation time for it: the controller counts the grace from \
                 when it first sees it"
            )?;
        }
        writeln!(f, "{} orphans; nothing was deleted", orphans.len())
    }
}

/// `3d4h`, `2h13m`, `5m12s`, `42s`: the two largest units.
fn short(age: Duration) -> String {
    let secs = age.as_secs();
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdKind;
    use crate::rds::value::{Nqn, RosPath, Slot};

    #[test]
    fn the_listing_shows_kind_name_age_and_why() {
        let created = Timestamp::from_second(1_000).unwrap();
        let orphan = |kind, slot: &str, file: Option<&str>, created| Orphan {
            kind,
            slot: Slot::parse(slot).unwrap(),
            id_kind: IdKind::Volume,
            file: file.map(str::to_owned),
            created,
            why: "no PersistentVolume or claim names volume x".to_owned(),
        };
        let listing = Listing {
            place: Place {
                pool: RosPath::parse("pool").unwrap(),
                base_dir: RosPath::parse("csi").unwrap(),
                nqn_prefix: Nqn::parse("nqn.2000-02.com.mikrotik").unwrap(),
            },
            found: Found {
                orphans: vec![
                    orphan(
                        Kind::Disk,
                        "pvc-a",
                        Some("pool/csi/pvc-a.img"),
                        Some(created),
                    ),
                    orphan(
                        Kind::Disk,
                        "pvc-b",
                        None,
                        Some(created + jiff::SignedDuration::from_secs(7_000)),
                    ),
                    orphan(Kind::File, "pvc-c", Some("pool/csi/pvc-c.img"), None),
                ],
                snapshots_listed: true,
            },
            now: created + jiff::SignedDuration::from_secs(7_380),
            grace: Duration::from_secs(3_600),
            delete: false,
        };
        let text = listing.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "orphans under pool/csi and exported as nqn.2000-02.com.mikrotik:<id> (grace 3600s; \
             the controller reports, and keeps, them)"
        );
        assert!(lines[1].starts_with("KIND "), "{text}");
        let columns = |line: &str| -> Vec<String> {
            line.split_whitespace().take(3).map(str::to_owned).collect()
        };
        assert_eq!(columns(lines[2]), ["disk", "pvc-a", "2h3m"]);
        assert!(lines[2].ends_with(" no PersistentVolume or claim names volume x"));
        assert_eq!(columns(lines[3]), ["disk", "pvc-b", "6m20s"]);
        assert!(lines[3].contains("6m20s <grace"), "{text}");
        assert_eq!(
            columns(lines[4]),
            ["file", "pool/csi/pvc-c.img", "unknown*"]
        );
        assert!(
            lines[5].starts_with("* the RDS records no creation time"),
            "{text}"
        );
        assert_eq!(lines[6], "3 orphans; nothing was deleted");

        let empty = Listing {
            found: Found {
                orphans: Vec::new(),
                snapshots_listed: false,
            },
            ..listing
        };
        let text = empty.to_string();
        assert!(
            text.ends_with(
                "\nVolumeSnapshotContents cannot be listed (the snapshot CRDs are not installed): \
                 no snapshot counts as an orphan\nno orphans\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn ages_read_in_their_two_largest_units() {
        for (secs, text) in [
            (42, "42s"),
            (312, "5m12s"),
            (7_980, "2h13m"),
            (273_600, "3d4h"),
        ] {
            assert_eq!(short(Duration::from_secs(secs)), text);
        }
    }
}

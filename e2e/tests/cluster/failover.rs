//! Two controller replicas: the one whose external-provisioner leads dies in the middle of a
//! burst of creates, and later the one whose rds-csi holds the driver's Lease. Every claim binds,
//! the RDS holds one disk per PV and nothing else, and the driver's Lease moves to a live replica
//! within its documented bound, whose reconcilers then act; a replica stopped cleanly gives the
//! Lease up, so the next takes it at once.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{Patch, PatchParams};
use rds_csi::config::KubernetesConfig;
use rds_csi::kubernetes::fencing::fenced_annotation;
use rds_csi::kubernetes::leader::lease_name;
use rds_e2e::cluster::objects::{self, NAMESPACE, Source, WAIT};
use rds_e2e::cluster::target::{self, ClusterTarget, NODES};
use rds_sim::faults::Fault;
use tokio::time::Instant;

use rds_e2e::cluster::reach::Cluster;

use super::{CaseFuture, STORAGE_CLASS, delete_claims, volume_handle};

/// Claims created at once.
const BURST: usize = 10;
/// How long rds-sim takes for each `/disk add`: the driver adds disks one at a time, so the
/// burst lasts about `BURST` times this, and is still going when its leader dies.
const ADD_LATENCY_MS: u64 = 1500;
/// What this machine may add to the documented bound, for API calls under load.
const TOLERANCE: Duration = Duration::from_secs(5);

/// How long after its holder died the driver's Lease is another replica's at the latest
/// (docs/operations.md, "Two controller replicas"): the lease duration from the last renewal a
/// standby saw, which it sees up to one retry period late, and its next try up to one retry
/// period after that.
fn takeover_bound() -> Duration {
    let config = KubernetesConfig::default();
    Duration::from_secs(config.lease_duration_seconds + 2 * config.retry_period_seconds)
}

/// What is left at `now` of the documented bound for a takeover after a kill at `killed`, with
/// this machine's tolerance.
fn left_of_bound(killed: Instant) -> Duration {
    (killed + takeover_bound() + TOLERANCE).saturating_duration_since(Instant::now())
}

/// The Lease name csi-lib-utils gives a sidecar's election for `driver` (its `sanitizeName`):
/// the external-provisioner's.
fn provisioner_lease(driver: &str) -> String {
    let name: String = driver
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.ends_with('-') {
        name + "X"
    } else {
        name
    }
}

/// The replica (pod name) in a holder identity: the sidecars' is the host name, the driver's
/// the host name, `_` and a random suffix.
fn replica(lease: &Lease) -> Option<&str> {
    let holder = lease.spec.as_ref()?.holder_identity.as_deref()?;
    Some(holder.split_once('_').map_or(holder, |(pod, _)| pod)).filter(|p| !p.is_empty())
}

/// Waits, `within`, until the Lease `name` is held by one of `candidates`; returns which.
async fn held_by(
    leases: &Api<Lease>,
    name: &str,
    candidates: &[&str],
    within: Duration,
) -> anyhow::Result<String> {
    let now = leases.get_opt(name).await?;
    if let Some(held) = now.as_ref().and_then(replica)
        && candidates.contains(&held)
    {
        return Ok(held.to_owned());
    }
    let what = format!("one of {candidates:?} holds it");
    let lease = objects::wait_within(within, leases.clone(), name, &what, |l: Option<&Lease>| {
        l.and_then(replica).is_some_and(|r| candidates.contains(&r))
    })
    .await?;
    Ok(replica(&lease).unwrap_or_default().to_owned())
}

/// Waits until the replica's rds-csi has started its election (it logs this just before).
async fn electing(log: &std::path::Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("watching the API server for lost nodes")
    {
        ensure!(
            Instant::now() < deadline,
            "{} did not start its election in {WAIT:?}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn bound_claims(client: &kube::Client) -> anyhow::Result<usize> {
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NAMESPACE)
        .list(&Default::default())
        .await?;
    Ok(claims
        .items
        .iter()
        .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        .count())
}

pub fn controller_failover(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(async move {
        let client = cluster.client();
        let driver = Api::<StorageClass>::all(client.clone())
            .get(STORAGE_CLASS)
            .await?
            .provisioner;
        let leases = Api::<Lease>::namespaced(client.clone(), target::NAMESPACE);
        let (ours, provisioner) = (lease_name(&driver), provisioner_lease(&driver));
        let replicas: Vec<String> = cluster
            .controllers()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        ensure!(
            replicas.len() == 2,
            "the chart runs {} controller replicas, not two",
            replicas.len()
        );
        let names: Vec<&str> = replicas.iter().map(String::as_str).collect();
        let provisioning = held_by(&leases, &provisioner, &names, WAIT).await?;
        let leading = held_by(&leases, &ours, &names, WAIT).await?;
        let survivor = names
            .iter()
            .find(|n| **n != provisioning)
            .context("two replicas")?
            .to_string();

        // The burst; its provisioner dies once the RDS has the first disk.
        cluster.sim().inject(&Fault::Latency {
            pattern: "/disk add ".into(),
            fixed_ms: ADD_LATENCY_MS,
            jitter_ms: 0,
        })?;
        let claims: Vec<String> = (0..BURST).map(|i| format!("burst-{i}")).collect();
        for claim in &claims {
            let pvc = objects::pvc(claim, STORAGE_CLASS, "64Mi", false, Source::None);
            objects::create(&client, &pvc).await?;
        }
        let deadline = Instant::now() + WAIT;
        while cluster.sim().disks().is_empty() {
            ensure!(
                Instant::now() < deadline,
                "no disk on the RDS after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let bound = bound_claims(&client).await?;
        ensure!(
            bound < BURST,
            "all {BURST} claims were bound before the provisioner's leader died"
        );
        let killed = Instant::now();
        cluster.kill_controller(&provisioning).await?;
        eprintln!(
            "killed {provisioning} (leading the provisioner; the driver's Lease: {leading}) \
             with {bound} of {BURST} claims bound"
        );

        // The same replica's rds-csi led too: its Lease moves within the bound, while the burst
        // goes on.
        if leading == provisioning {
            held_by(&leases, &ours, &[&survivor], left_of_bound(killed))
                .await
                .context("the driver's Lease did not move to the surviving replica in time")?;
        }
        let mut handles = BTreeSet::new();
        for claim in &claims {
            let volume = objects::bound_volume(&client, claim).await?;
            handles.insert(volume_handle(&volume).context("a CSI PV")?);
        }
        let disks: BTreeSet<String> = cluster.sim().disks().into_iter().map(|d| d.slot).collect();
        ensure!(
            handles.len() == BURST && disks == handles,
            "after the failover the RDS holds {} disks {disks:?} for {} PVs {handles:?}: \
             a duplicate or an orphan",
            disks.len(),
            handles.len()
        );
        let provisioning_now = leases.get(&provisioner).await?;
        ensure!(
            replica(&provisioning_now) == Some(survivor.as_str()),
            "the provisioner's Lease is {:?}'s, not the survivor's",
            replica(&provisioning_now)
        );
        cluster.sim().inject(&Fault::Clear)?;

        // The Deployment replaces the lost pod; then the driver's Lease holder dies too.
        let replacement = cluster.replace_controller().await?;
        let (fresh, fresh_log) = (replacement.name.clone(), replacement.log("rds-csi"));
        electing(&fresh_log).await?;
        ensure!(held_by(&leases, &ours, &[&survivor], WAIT).await? == survivor);
        let killed = Instant::now();
        cluster.kill_controller(&survivor).await?;
        held_by(&leases, &ours, &[&fresh], left_of_bound(killed))
            .await
            .context("the driver's Lease did not move to the replacement replica in time")?;

        // The new leader's reconcilers act: a fence recorded on a Ready node with nothing
        // attached to it is lifted.
        let nodes = Api::<Node>::all(client.clone());
        let key = fenced_annotation(&driver);
        let host = cluster.node(NODES[0])?.host_nqn.clone();
        let fence = serde_json::json!({"metadata": {"annotations": {&key: host}}});
        nodes
            .patch(NODES[0], &PatchParams::default(), &Patch::Merge(fence))
            .await?;
        objects::wait_for(
            nodes,
            NODES[0],
            "the leader lifts the fence",
            |node: Option<&Node>| {
                node.is_some_and(|n| {
                    n.metadata
                        .annotations
                        .as_ref()
                        .is_none_or(|a| !a.contains_key(&key))
                })
            },
        )
        .await?;

        // A clean stop gives the Lease up: the next standby takes it at its next try, long
        // before the lease duration would have run out.
        let standby = cluster.replace_controller().await?;
        let (standby, standby_log) = (standby.name.clone(), standby.log("rds-csi"));
        electing(&standby_log).await?;
        let stopped = Instant::now();
        cluster.stop_controller(&fresh).await?;
        let retry = Duration::from_secs(KubernetesConfig::default().retry_period_seconds);
        held_by(
            &leases,
            &ours,
            &[&standby],
            (stopped + retry + TOLERANCE).saturating_duration_since(Instant::now()),
        )
        .await
        .context("the Lease given up on SIGTERM was not taken at the standby's next try")?;

        let claims: Vec<&str> = claims.iter().map(String::as_str).collect();
        delete_claims(Cluster::Processes(cluster), &claims).await
    })
}

//! Node failure on the `cluster` target, with the real node lifecycle, taint-eviction and
//! attach-detach controllers: node A, with a Pod writing to an RWO volume, stops (its kubelet
//! stand-in's heartbeats end and its kernel state goes, as in a power loss). The driver's
//! controller fences node A on the RDS (its host can no longer connect, its old connection is
//! ended), lets the volume go, and the Pod recreated on node B (as a StatefulSet would, once the
//! old one is gone) attaches it there with the data intact, within the bound
//! docs/operations.md states. Then node A comes back: the fence is lifted only once none of its
//! old attachments stands.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, Pod, Toleration};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use rds_e2e::cluster::control_plane::NODE_MONITOR_GRACE;
use rds_e2e::cluster::kubelet::{read_pattern, write_pattern};
use rds_e2e::cluster::objects::{self, NAMESPACE, Source};
use rds_e2e::cluster::target::{ClusterTarget, NODES};
use rds_e2e::cluster::trial::{CaseFuture, process_trial};
use rds_sim::nvme::initiator::{ConnectParams, Initiator};
use rds_sim::nvme::pdu::Digests;
use rds_sim::nvme::status::Status as NvmeStatus;
use serde_json::json;
use tokio_stream::StreamExt;

const STORAGE_CLASS: &str = "rds-nvme";
const PATTERN_BYTES: usize = 1 << 20;
const DRIVER: &str = "rds.csi.mikrotik.com";
/// The chart's `config.kubernetes.lostNodeGraceSeconds` in the NotReady case.
const GRACE: Duration = Duration::from_secs(3);
/// How long the Pod tolerates an unreachable node before the taint-eviction controller deletes
/// it (Kubernetes adds 300 s unless the Pod says otherwise).
const TOLERATION: Duration = Duration::from_secs(1);
/// kube-controller-manager's `--attach-detach-reconcile-sync-period` on the cluster target.
const ATTACH_DETACH_SYNC: Duration = Duration::from_secs(5);
/// How long kube-controller-manager's pod garbage collector waits before deleting the Pods of a
/// Node that no longer exists (its `quarantineTime`, not a flag).
const POD_GC_QUARANTINE: Duration = Duration::from_secs(40);
/// How often the pod garbage collector looks (its `gcCheckPeriod`, not a flag either).
const POD_GC_PERIOD: Duration = Duration::from_secs(20);
/// The chart's `config.kubernetes.resyncSeconds` here.
const RESYNC: Duration = Duration::from_secs(1);

/// Why these trials run on the process cluster only.
const NOT_ON_KIND: &str = "it powers a node off (stops its kubelet stand-in and drops what its \
    kernel held) and needs kube-controller-manager's node-monitor and attach-detach periods \
    shortened, which a kind cluster's are not";

fn main() {
    let trials = vec![
        process_trial(
            "cluster: node lost (NotReady past the grace): fenced on the RDS, the volume attaches on the other node with its data; the fence lifts when the node is back",
            values(GRACE),
            NOT_ON_KIND,
            not_ready,
        ),
        process_trial(
            "cluster: node out of service (taint): fenced at once, the volume attaches on the other node with its data",
            // A grace no test waits out: only the taint can make the node lost here.
            values(Duration::from_secs(3600)),
            NOT_ON_KIND,
            out_of_service,
        ),
        process_trial(
            "cluster: node deleted while its volume is attached: fenced, the volume attaches on the other node with its data",
            values(Duration::from_secs(3600)),
            NOT_ON_KIND,
            deleted,
        ),
    ];
    rds_e2e::suite::run(trials)
}

fn values(grace: Duration) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "config.kubernetes.lostNodeGraceSeconds",
            json!(grace.as_secs()),
        ),
        ("config.kubernetes.resyncSeconds", json!(RESYNC.as_secs())),
    ]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Failure {
    NotReady,
    OutOfService,
    /// The Node object is deleted (a cloud's node controller does this for a vanished VM).
    Deleted,
}

fn not_ready(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(node_failure(cluster, Failure::NotReady))
}

fn out_of_service(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(node_failure(cluster, Failure::OutOfService))
}

fn deleted(cluster: &mut ClusterTarget) -> CaseFuture<'_> {
    Box::pin(node_failure(cluster, Failure::Deleted))
}

async fn node_failure(cluster: &mut ClusterTarget, failure: Failure) -> anyhow::Result<()> {
    let client = cluster.client();
    let (a, b) = (NODES[0], NODES[1]);
    let host_a = cluster.node(a)?.host_nqn.clone();
    objects::create(
        &client,
        &objects::pvc("data", STORAGE_CLASS, "512Mi", false, Source::None),
    )
    .await?;
    let volume = objects::bound_volume(&client, "data").await?;
    let handle = volume
        .spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .map(|csi| csi.volume_handle.clone())
        .context("the PV has no CSI volume handle")?;
    objects::create(&client, &tolerant_pod("writer", a)).await?;
    objects::running_pod(&client, "writer").await?;
    let path = cluster
        .node(a)?
        .kubelet
        .published_path(NAMESPACE, "writer", "data")?;
    write_pattern(&path, 7, PATTERN_BYTES)?;
    if failure == Failure::NotReady {
        attach_elsewhere_is_refused(cluster, &volume_name(&volume)?, b).await?;
    }

    // Node A's kernel initiator, connected to the volume's export as node A's host.
    let export = export_nqn(cluster, &handle)?;
    let nvme = cluster
        .sim()
        .target()
        .context("rds-sim serves no NVMe/TCP")?
        .local_addr();
    let (old, status) = connect(nvme, &export, &host_a).await?;
    anyhow::ensure!(
        status.is_success(),
        "node A cannot connect to its published volume: {status:?}"
    );

    let failed_at = Instant::now();
    cluster.power_off(a).await?;
    let nodes = Api::<Node>::all(client.clone());
    objects::wait_for(
        nodes.clone(),
        a,
        "its Ready condition is Unknown",
        |node: Option<&Node>| ready_status(node) == Some("Unknown"),
    )
    .await?;
    match failure {
        Failure::NotReady => {}
        Failure::OutOfService => {
            let taint = json!({"spec": {"taints": [{
                "key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"
            }]}});
            nodes
                .patch(a, &PatchParams::default(), &Patch::Merge(&taint))
                .await?;
        }
        Failure::Deleted => objects::delete_and_wait(nodes.clone(), a).await?,
    }

    // Fenced: marked on the Node (when there is one), the disk admits no host, node A's
    // connection is ended and a new one refused.
    if failure != Failure::Deleted {
        objects::wait_for(
            nodes.clone(),
            a,
            "it carries the driver's fence annotation",
            |node: Option<&Node>| fence_of(node).as_deref() == Some(host_a.as_str()),
        )
        .await?;
    }
    wait_until("the disk's allow-list admits no host", || {
        Ok(cluster.sim().disks().iter().any(|d| {
            d.slot == handle
                && d.nvme_tcp_server_allow_host_name
                    .contains(":rds-csi:fenced")
        }))
    })
    .await?;
    let connected = cluster
        .sim()
        .target()
        .map(|t| t.connections())
        .unwrap_or_default();
    anyhow::ensure!(
        !connected.iter().any(|c| c.host_nqn == host_a),
        "node A's old NVMe/TCP connection is still there: {connected:?}"
    );
    drop(old);
    let (_, refused) = connect(nvme, &export, &host_a).await?;
    anyhow::ensure!(
        refused == NvmeStatus::CONNECT_INVALID_HOST,
        "rds-sim let fenced node A connect again: {refused:?}"
    );

    // The Pod goes (evicted, then deleted for good: node A's kubelet never confirms) and comes
    // back on node B, as a StatefulSet's Pod would.
    let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
    objects::gone(pods, "writer").await?;
    objects::create(&client, &tolerant_pod("writer", b)).await?;
    objects::running_pod(&client, "writer").await?;
    let moved_after = failed_at.elapsed();
    let bound = match failure {
        // Unknown after the node monitor's grace, lost after ours; the Pod is evicted after its
        // toleration; the attach-detach controller notices the cleared attachment at its next
        // sync; plus a resync of ours each for fencing and clearing, and 30 s for the calls.
        Failure::NotReady => {
            NODE_MONITOR_GRACE
                + GRACE.max(TOLERATION)
                + ATTACH_DETACH_SYNC
                + 2 * RESYNC
                + Duration::from_secs(30)
        }
        Failure::OutOfService => {
            NODE_MONITOR_GRACE + ATTACH_DETACH_SYNC + 2 * RESYNC + Duration::from_secs(30)
        }
        // The Node is deleted after the node monitor's grace; the pod garbage collector deletes
        // the Pods bound to it after its quarantine, then the controller clears.
        Failure::Deleted => {
            NODE_MONITOR_GRACE
                + POD_GC_QUARANTINE
                + POD_GC_PERIOD
                + ATTACH_DETACH_SYNC
                + 2 * RESYNC
                + Duration::from_secs(30)
        }
    };
    eprintln!(
        "the volume was attached on node B {moved_after:?} after node A failed (bound {bound:?})"
    );
    anyhow::ensure!(
        moved_after <= bound,
        "the volume took {moved_after:?} to move, past the bound of {bound:?}"
    );
    let attachment = objects::attachment(&client, &volume, b).await?;
    let path = cluster
        .node(b)?
        .kubelet
        .published_path(NAMESPACE, "writer", "data")?;
    read_pattern(&path, 7, PATTERN_BYTES).context("on node B, after node A was lost")?;
    let host_b = cluster.node(b)?.host_nqn.clone();
    anyhow::ensure!(
        cluster
            .sim()
            .disks()
            .iter()
            .any(|d| d.slot == handle && d.nvme_tcp_server_allow_host_name == host_b),
        "the volume is not published to node B alone on the RDS"
    );
    // With the taint, Kubernetes detaches at once (ControllerUnpublishVolume fences the volume
    // itself), so the controller may find nothing left to fence per volume.
    match failure {
        Failure::NotReady => events_say(cluster, &["NodeFenced", "VolumeFenced"])?,
        Failure::OutOfService => events_say(cluster, &["NodeFenced"])?,
        Failure::Deleted => events_say(cluster, &["VolumeFenced", "StaleAttachmentRemoved"])?,
    }

    if failure == Failure::NotReady {
        // Node A comes back: with no attachment to it left, its fence is lifted.
        cluster.restart_kubelet(a).await?;
        objects::wait_for(
            nodes,
            a,
            "its fence annotation is gone",
            |node: Option<&Node>| ready_status(node) == Some("True") && fence_of(node).is_none(),
        )
        .await?;
        events_say(cluster, &["NodeUnfenced"])?;
    }

    // The controllers' metrics say so too. A family with no sample yet is not exposed (a
    // standby replica has served no call), so the families are looked for over both replicas;
    // the leader counted the fenced volume.
    let mut exposition = String::new();
    let mut fenced = 0.0;
    for replica in cluster.controllers() {
        let metrics = replica.metrics().await?;
        fenced += metrics
            .lines()
            .find_map(|line| line.strip_prefix("rds_csi_fenced_volumes_total "))
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0);
        exposition.push_str(&metrics);
    }
    for family in [
        "rds_csi_attachments",
        "rds_csi_fenced_nodes",
        "rds_csi_fenced_volumes",
        "rds_csi_leader",
        "rds_csi_rpcs",
        "rds_csi_rpc_duration_seconds",
        "rds_csi_routeros_commands",
        "rds_csi_ssh_sessions",
        "rds_csi_ssh_circuit_breaker_state",
    ] {
        anyhow::ensure!(
            exposition.contains(&format!("\n# TYPE {family} ")),
            "no controller replica's /metrics has {family}:\n{exposition}"
        );
    }
    if failure != Failure::OutOfService {
        anyhow::ensure!(
            fenced >= 1.0,
            "rds_csi_fenced_volumes_total is {fenced} over the replicas, not at least 1"
        );
    }

    objects::delete_and_wait(Api::<Pod>::namespaced(client.clone(), NAMESPACE), "writer").await?;
    objects::detached(&client, &attachment).await?;
    Ok(())
}

/// A VolumeAttachment of the volume to `node` while it is attached to another (as a
/// misconfigured or racing attacher would make it): the driver refuses ControllerPublishVolume,
/// the claim gets an `AttachRefused` Event naming the holder, and nothing changes on the RDS.
async fn attach_elsewhere_is_refused(
    cluster: &ClusterTarget,
    pv: &str,
    node: &str,
) -> anyhow::Result<()> {
    let client = cluster.client();
    let attachment: VolumeAttachment = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "VolumeAttachment",
        "metadata": {"name": "second-attach"},
        "spec": {"attacher": DRIVER, "nodeName": node, "source": {"persistentVolumeName": pv}}
    }))?;
    Api::<VolumeAttachment>::all(client.clone())
        .create(&Default::default(), &attachment)
        .await?;
    let events = Api::<Event>::namespaced(client.clone(), NAMESPACE);
    let about_data = |e: &Event| {
        e.reason.as_deref() == Some("AttachRefused")
            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("data")
    };
    let stream = watcher(events, watcher::Config::default()).applied_objects();
    let refused = tokio::time::timeout(objects::WAIT, async {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let event = event?;
            if about_data(&event) {
                return Ok(event);
            }
        }
        anyhow::bail!("the Event watch ended")
    })
    .await
    .context("no AttachRefused Event on the claim")??;
    let note = refused.note.unwrap_or_default();
    anyhow::ensure!(
        note.contains("is published to node"),
        "the AttachRefused Event does not name the holder: {note}"
    );
    objects::delete_and_wait(
        Api::<VolumeAttachment>::all(client.clone()),
        "second-attach",
    )
    .await
}

fn volume_name(volume: &PersistentVolume) -> anyhow::Result<String> {
    volume.metadata.name.clone().context("the PV has no name")
}

/// A Pod on `node` using the claim `data` that tolerates an unreachable or not-ready node for
/// [`TOLERATION`] only.
fn tolerant_pod(name: &str, node: &str) -> Pod {
    let mut pod = objects::pod(name, node, "data", false);
    let toleration = |key: &str| Toleration {
        key: Some(key.to_owned()),
        operator: Some("Exists".to_owned()),
        effect: Some("NoExecute".to_owned()),
        toleration_seconds: Some(TOLERATION.as_secs() as i64),
        ..Toleration::default()
    };
    if let Some(spec) = pod.spec.as_mut() {
        spec.tolerations = Some(vec![
            toleration("node.kubernetes.io/unreachable"),
            toleration("node.kubernetes.io/not-ready"),
        ]);
    }
    pod
}

fn ready_status(node: Option<&Node>) -> Option<&str> {
    node?
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

fn fence_of(node: Option<&Node>) -> Option<String> {
    node?
        .metadata
        .annotations
        .as_ref()?
        .get(&format!("{DRIVER}/fenced-host"))
        .cloned()
}

fn export_nqn(cluster: &ClusterTarget, handle: &str) -> anyhow::Result<String> {
    cluster
        .sim()
        .disks()
        .into_iter()
        .find(|d| d.slot == handle)
        .map(|d| d.nvme_tcp_server_nqn)
        .with_context(|| format!("no disk {handle} on rds-sim"))
}

/// An admin-queue Fabrics Connect to `subsystem` as `host`, as the kernel initiator sends it;
/// the connection (kept open) and the Connect's status.
async fn connect(
    target: std::net::SocketAddr,
    subsystem: &str,
    host: &str,
) -> anyhow::Result<(Initiator<TcpStream>, NvmeStatus)> {
    let (subsystem, host) = (subsystem.to_owned(), host.to_owned());
    tokio::task::spawn_blocking(move || {
        let stream = TcpStream::connect(target)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let (mut initiator, _) = Initiator::handshake(stream, Digests::default())?;
        let response = initiator.fabrics_connect(&ConnectParams {
            qid: 0,
            sqsize: 31,
            kato_ms: 120_000,
            cntlid: 0xffff,
            subsys_nqn: &subsystem,
            host_nqn: &host,
            host_id: [7; 16],
        })?;
        Ok((initiator, response.cqe.status))
    })
    .await?
}

/// Polls `done` (a read of rds-sim's state, which has no watch) until it holds, for at most
/// [`objects::WAIT`].
async fn wait_until(
    what: &str,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + objects::WAIT;
    while !done()? {
        anyhow::ensure!(
            Instant::now() < deadline,
            "waited {:?} until {what}, in vain",
            objects::WAIT
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Fails unless `kubectl get events` lists an Event of each reason.
fn events_say(cluster: &ClusterTarget, reasons: &[&str]) -> anyhow::Result<()> {
    let listed = cluster.helm().kubectl(
        cluster.admin_kubeconfig(),
        [
            "get",
            "events",
            "--all-namespaces",
            "-o",
            "custom-columns=REASON:.reason,NOTE:.note,MESSAGE:.message",
        ],
    )?;
    for reason in reasons {
        anyhow::ensure!(
            listed.lines().any(|line| line.starts_with(reason)),
            "kubectl get events shows no {reason} Event:\n{listed}"
        );
    }
    Ok(())
}

//! Prometheus metrics, served at `/metrics` over HTTP when `metrics.listen` is set.
//!
//! The families live in one process-wide registry, so the two edges that count (every CSI RPC in
//! `rpc_trace`, every RouterOS command in `rds::disk`) need no handle threaded through each
//! service. The SSH pool's gauges are read from the pool when a scrape asks, so they are never
//! stale and the pool does not have to report each change. Label values are `'static` names or
//! gRPC codes, never a volume id or other caller value, so the series stay few.
//! docs/operations.md, "Metrics", documents each family and the alert it supports.

mod node;

pub use node::NodeProbe;

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::rds::disk::{ErrorKind, RdsClient};
use crate::rds::ssh::{BreakerState, PoolStats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbErrorLabels {
    verb: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerStateLabels {
    state: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 1 ms to about 65 s: a RouterOS print answers in milliseconds, a CreateVolume that waits for
/// the create bound or a slow RDS takes tens of seconds.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

struct Metrics {
    registry: Registry,
    rpcs: Family<RpcLabels, Counter>,
    rpc_seconds: Histograms<MethodLabels>,
    commands: Family<VerbLabels, Counter>,
    command_seconds: Histograms<VerbLabels>,
    command_errors: Family<VerbErrorLabels, Counter>,
    ssh_sessions: Family<SessionLabels, Gauge>,
    breaker: Gauge,
    attachments: Gauge,
    fenced_nodes: Gauge,
    fenced_volumes: Counter,
    migrations: Gauge,
    migration_outcomes: Family<OutcomeLabels, Counter>,
    nvme_controllers: Family<ControllerStateLabels, Gauge>,
    stale_mounts: Gauge,
    leader: Gauge,
    orphans: Family<KindLabels, Gauge>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut metrics = Metrics {
        rpcs: Family::default(),
        rpc_seconds: Family::new_with_constructor(latency),
        commands: Family::default(),
        command_seconds: Family::new_with_constructor(latency),
        command_errors: Family::default(),
        ssh_sessions: Family::default(),
        breaker: Gauge::default(),
        attachments: Gauge::default(),
        fenced_nodes: Gauge::default(),
        fenced_volumes: Counter::default(),
        migrations: Gauge::default(),
        migration_outcomes: Family::default(),
        nvme_controllers: Family::default(),
        stale_mounts: Gauge::default(),
        leader: Gauge::default(),
        orphans: Family::default(),
        registry: Registry::with_prefix("rds_csi"),
    };
    let registry = &mut metrics.registry;
    registry.register(
        "rpcs",
        "CSI RPCs handled, by method and gRPC code",
        metrics.rpcs.clone(),
    );
    registry.register_with_unit(
        "rpc_duration",
        "Time to answer a CSI RPC, by method",
        Unit::Seconds,
        metrics.rpc_seconds.clone(),
    );
    registry.register(
        "routeros_commands",
        "RouterOS commands sent to the RDS, by verb",
        metrics.commands.clone(),
    );
    registry.register_with_unit(
        "routeros_command_duration",
        "Time from sending a RouterOS command to its answer, by verb",
        Unit::Seconds,
        metrics.command_seconds.clone(),
    );
    registry.register(
        "routeros_command_errors",
        "RouterOS commands that failed, by verb and kind of failure",
        metrics.command_errors.clone(),
    );
    registry.register(
        "ssh_sessions",
        "SSH sessions to the RDS: idle (connected, waiting) or busy (running a command)",
        metrics.ssh_sessions.clone(),
    );
    registry.register(
        "ssh_circuit_breaker_state",
        "The SSH circuit breaker: 0 closed, 1 half-open (one probe connection), 2 open (failing fast)",
        metrics.breaker.clone(),
    );
    registry.register(
        "attachments",
        "VolumeAttachments of this driver that are attached, as the controller's last pass saw them",
        metrics.attachments.clone(),
    );
    registry.register(
        "fenced_nodes",
        "Nodes carrying this driver's fence annotation: nothing is published to them",
        metrics.fenced_nodes.clone(),
    );
    registry.register(
        "fenced_volumes",
        "Volumes taken from a lost node on the RDS (allow-list emptied, connections ended)",
        metrics.fenced_volumes.clone(),
    );
    registry.register(
        "migrations",
        "KubeVirt live migrations whose window is open: a volume may be attached to two nodes",
        metrics.migrations.clone(),
    );
    registry.register(
        "migration_outcomes",
        "KubeVirt live migrations ended, by outcome (completed, failed)",
        metrics.migration_outcomes.clone(),
    );
    registry.register(
        "node_nvme_controllers",
        "The node's NVMe/TCP controllers, by state (live, connecting, resetting, ...)",
        metrics.nvme_controllers.clone(),
    );
    registry.register(
        "node_stale_mounts",
        "Mounts under the kubelet directory whose device is gone",
        metrics.stale_mounts.clone(),
    );
    registry.register(
        "leader",
        "1 while this controller replica holds the Lease and runs the reconcilers that change \
         things, else 0",
        metrics.leader.clone(),
    );
    registry.register(
        "orphans",
        "Disks, files and exports on the RDS that nothing in the cluster names, past the grace \
         and not deleted, by kind, as the controller's last orphan pass found them",
        metrics.orphans.clone(),
    );
    metrics
});

/// The attached VolumeAttachments of this driver, after a pass of the controller.
pub(crate) fn attachments(count: usize) {
    METRICS.attachments.set(count as i64);
}

/// The live migrations whose window is open now.
pub(crate) fn migrations(count: usize) {
    METRICS.migrations.set(count as i64);
}

/// Counts a live migration that ended, `completed` or `failed`.
pub(crate) fn migration_outcome(outcome: &'static str) {
    METRICS
        .migration_outcomes
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

/// The nodes fenced now.
pub(crate) fn fenced_nodes(count: usize) {
    METRICS.fenced_nodes.set(count as i64);
}

/// Counts volumes fenced on the RDS.
pub(crate) fn fenced_volumes(count: usize) {
    METRICS.fenced_volumes.inc_by(count as u64);
}

/// Whether this replica leads the reconcilers (kubernetes::leader).
pub(crate) fn leader(leading: bool) {
    METRICS.leader.set(i64::from(leading));
}

/// Counts one finished CSI RPC.
pub(crate) fn rpc(method: &'static str, code: tonic::Code, took: Duration) {
    // The spelling of the gRPC status names, as other gRPC exporters label them.
    let code = match code {
        tonic::Code::Ok => "OK".to_owned(),
        other => format!("{other:?}"),
    };
    let metrics = &*METRICS;
    metrics
        .rpcs
        .get_or_create(&RpcLabels { method, code })
        .inc();
    metrics
        .rpc_seconds
        .get_or_create(&MethodLabels { method })
        .observe(took.as_secs_f64());
}

/// Counts one RouterOS command that got an answer or failed on the way.
pub(crate) fn command(verb: &'static str, took: Duration) {
    let metrics = &*METRICS;
    metrics.commands.get_or_create(&VerbLabels { verb }).inc();
    metrics
        .command_seconds
        .get_or_create(&VerbLabels { verb })
        .observe(took.as_secs_f64());
}

/// Counts one failed RouterOS command: not delivered, or refused by RouterOS.
pub(crate) fn command_error(verb: &'static str, kind: ErrorKind) {
    METRICS
        .command_errors
        .get_or_create(&VerbErrorLabels {
            verb,
            kind: kind.name(),
        })
        .inc();
}

/// Records the orphans of `kind` the last orphan pass left on the RDS.
pub(crate) fn orphans(kind: &'static str, count: usize) {
    METRICS
        .orphans
        .get_or_create(&KindLabels { kind })
        .set(i64::try_from(count).unwrap_or(i64::MAX));
}

/// The text exposition of every family, with the pool's gauges as `pool` has them now and the
/// node's as `node` reads them.
pub fn render(pool: Option<PoolStats>, node: Option<&NodeProbe>) -> String {
    let metrics = &*METRICS;
    if let Some(node) = node {
        metrics.nvme_controllers.clear();
        // The states an alert asks about are always there, at 0 on a node without controllers:
        // a family with no sample is not exposed at all.
        let mut states = node.tcp_controllers();
        for state in ["live", "connecting", "resetting", "deleting"] {
            states.entry(state.to_owned()).or_insert(0);
        }
        for (state, count) in states {
            metrics
                .nvme_controllers
                .get_or_create(&ControllerStateLabels { state })
                .set(count);
        }
        metrics.stale_mounts.set(node.stale_mounts());
    }
    if let Some(pool) = pool {
        let sessions = |state| metrics.ssh_sessions.get_or_create(&SessionLabels { state });
        sessions("idle").set(pool.idle as i64);
        sessions("busy").set(pool.busy as i64);
        metrics.breaker.set(match pool.breaker {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        });
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry)
        .expect("writing to a String cannot fail");
    text
}

/// Binds `addr` and serves `/metrics` until `shutdown` completes; `rds` is the controller's RDS
/// client, whose pool the SSH gauges describe (`None` in the node plugin, which has no pool), and
/// `node` where the node plugin's host gauges are read (`None` in the controller).
pub async fn serve(
    addr: SocketAddr,
    rds: Option<Arc<RdsClient>>,
    node: Option<NodeProbe>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr} (metrics.listen)"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving metrics at /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = render(rds.as_ref().map(|rds| rds.pool_stats()), node.as_ref());
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving metrics")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name{labels}` in `text`, where `labels` is written as the
    /// exposition writes it.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_family_is_exposed_with_its_type_and_labels() {
        rpc(
            "TestMethod",
            tonic::Code::NotFound,
            Duration::from_millis(3),
        );
        rpc("TestMethod", tonic::Code::Ok, Duration::from_millis(1));
        command("/test verb", Duration::from_millis(2));
        command_error("/test verb", ErrorKind::Timeout);
        orphans("test-kind", 2);
        attachments(2);
        fenced_nodes(1);
        fenced_volumes(3);
        migrations(1);
        migration_outcome("completed");
        let sys = tempfile::tempdir().unwrap();
        let controller = sys.path().join("class/nvme/nvme0");
        std::fs::create_dir_all(&controller).unwrap();
        std::fs::write(controller.join("transport"), "tcp\n").unwrap();
        std::fs::write(controller.join("state"), "connecting\n").unwrap();
        let node = NodeProbe {
            sysfs: sys.path().to_path_buf(),
            ..NodeProbe::host(Some(std::path::PathBuf::from("/nonexistent/kubelet")))
        };
        let text = render(
            Some(PoolStats {
                idle: 3,
                busy: 1,
                breaker: BreakerState::Open,
            }),
            Some(&node),
        );

        for (family, kind) in [
            ("rds_csi_rpcs", "counter"),
            ("rds_csi_rpc_duration_seconds", "histogram"),
            ("rds_csi_routeros_commands", "counter"),
            ("rds_csi_routeros_command_duration_seconds", "histogram"),
            ("rds_csi_routeros_command_errors", "counter"),
            ("rds_csi_ssh_sessions", "gauge"),
            ("rds_csi_ssh_circuit_breaker_state", "gauge"),
            ("rds_csi_attachments", "gauge"),
            ("rds_csi_fenced_nodes", "gauge"),
            ("rds_csi_fenced_volumes", "counter"),
            ("rds_csi_migrations", "gauge"),
            ("rds_csi_migration_outcomes", "counter"),
            ("rds_csi_node_nvme_controllers", "gauge"),
            ("rds_csi_node_stale_mounts", "gauge"),
            ("rds_csi_leader", "gauge"),
            ("rds_csi_orphans", "gauge"),
        ] {
            assert!(
                text.contains(&format!("\n# TYPE {family} {kind}\n")),
                "{family} is not a {kind}:\n{text}"
            );
        }
        let expect = [
            (
                r#"rds_csi_rpcs_total{method="TestMethod",code="NotFound"}"#,
                1.0,
            ),
            (r#"rds_csi_rpcs_total{method="TestMethod",code="OK"}"#, 1.0),
            (
                r#"rds_csi_rpc_duration_seconds_count{method="TestMethod"}"#,
                2.0,
            ),
            (r#"rds_csi_routeros_commands_total{verb="/test verb"}"#, 1.0),
            (
                r#"rds_csi_routeros_command_duration_seconds_count{verb="/test verb"}"#,
                1.0,
            ),
            (
                r#"rds_csi_routeros_command_errors_total{verb="/test verb",kind="timeout"}"#,
                1.0,
            ),
            (r#"rds_csi_ssh_sessions{state="idle"}"#, 3.0),
            (r#"rds_csi_ssh_sessions{state="busy"}"#, 1.0),
            ("rds_csi_ssh_circuit_breaker_state", 2.0),
            ("rds_csi_attachments", 2.0),
            ("rds_csi_fenced_nodes", 1.0),
            ("rds_csi_fenced_volumes_total", 3.0),
            ("rds_csi_migrations", 1.0),
            (
                r#"rds_csi_migration_outcomes_total{outcome="completed"}"#,
                1.0,
            ),
            ("rds_csi_node_stale_mounts", 0.0),
            (r#"rds_csi_node_nvme_controllers{state="connecting"}"#, 1.0),
            (r#"rds_csi_node_nvme_controllers{state="live"}"#, 0.0),
            (r#"rds_csi_orphans{kind="test-kind"}"#, 2.0),
        ];
        for (series, value) in expect {
            assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

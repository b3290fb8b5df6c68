//! `/metrics` of the rds-csi binary, scraped over HTTP after CSI calls against rds-sim.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use rds_csi::config::{Config, FabricMode, NodeConfig, RdsConfig};
use rds_csi::csi::v1::controller_client::ControllerClient;
use rds_csi::csi::v1::node_client::NodeClient;
use rds_csi::csi::v1::volume_capability::access_mode::Mode as Access;
use rds_csi::csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use rds_csi::csi::v1::{
    CapacityRange, CreateVolumeRequest, DeleteVolumeRequest, NodeGetInfoRequest, VolumeCapability,
};
use rds_csi::grpc::connect_unix;
use rds_csi::rds::ssh::HostKeyPin;
use rds_sim::server::{DEFAULT_POOL, Options, RunningSim};
use rds_sim::ssh::load_or_generate_host_key;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;

/// The body of `GET /metrics`, over a plain HTTP/1.1 connection as Prometheus makes one.
async fn scrape(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: rds-csi\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    body.to_owned()
}

/// The value of the sample `series` (name and labels as the exposition writes them).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The rds-csi binary serving CSI on a socket in `dir` and metrics on the port the kernel picked
/// for `metrics.listen = "127.0.0.1:0"`; killed when dropped.
struct Plugin {
    socket: PathBuf,
    /// `IP:port` of `/metrics`.
    metrics: String,
    _process: Child,
}

impl Plugin {
    async fn start(command: &str, dir: &Path, mut config: Config) -> Plugin {
        config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
        let file = dir.join("config.toml");
        std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
        let socket = dir.join("csi.sock");
        let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_rds-csi"))
            .arg(command)
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .arg("--config")
            .arg(&file)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // The log line names the port the kernel picked; CSI is served before it is written.
        let mut log = BufReader::new(process.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let metrics = loop {
            let Some(line) = log.next_line().await.unwrap() else {
                panic!("the plugin exited before serving metrics: {seen:#?}");
            };
            let addr = line
                .contains("serving metrics")
                .then(|| line.split_once("addr=").map(|(_, a)| a.trim().to_owned()))
                .flatten();
            seen.push(line);
            if let Some(addr) = addr {
                break addr;
            }
        };
        // Keep reading, so that the plugin never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
        Plugin {
            socket,
            metrics,
            _process: process,
        }
    }
}

fn create(name: &str) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: 1 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![VolumeCapability {
            access_mode: Some(AccessMode {
                mode: Access::SingleNodeWriter.into(),
            }),
            access_type: Some(AccessType::Mount(MountVolume::default())),
        }],
        ..CreateVolumeRequest::default()
    }
}

#[tokio::test]
async fn rpcs_and_routeros_commands_are_counted_at_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("id_ed25519");
    let client_key = load_or_generate_host_key(&key_file).unwrap();
    let sim = RunningSim::start(Options::loopback(
        dir.path().join("rds"),
        client_key.public_key().clone(),
        64 << 30,
    ))
    .await
    .unwrap();
    let config = Config {
        rds: RdsConfig {
            address: "127.0.0.1".into(),
            ssh_port: sim.ssh_addr.port(),
            private_key_file: key_file,
            host_key: HostKeyPin::of_key(&sim.host_public_key).to_string(),
            pool: DEFAULT_POOL.into(),
            nvme_address: "192.0.2.10".into(),
            ..RdsConfig::default()
        },
        ..Config::default()
    };
    let plugin = Plugin::start("controller", dir.path(), config).await;

    let mut controller = ControllerClient::new(connect_unix(&plugin.socket).await.unwrap());
    let volume = controller
        .create_volume(create("pvc-metrics"))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let refused = controller.create_volume(create("")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: volume.volume_id,
            ..DeleteVolumeRequest::default()
        })
        .await
        .unwrap();

    let text = scrape(&plugin.metrics).await;
    for (series, value) in [
        (
            r#"rds_csi_rpcs_total{method="CreateVolume",code="OK"}"#,
            1.0,
        ),
        (
            r#"rds_csi_rpcs_total{method="CreateVolume",code="InvalidArgument"}"#,
            1.0,
        ),
        (
            r#"rds_csi_rpcs_total{method="DeleteVolume",code="OK"}"#,
            1.0,
        ),
        (
            r#"rds_csi_rpc_duration_seconds_count{method="CreateVolume"}"#,
            2.0,
        ),
        (r#"rds_csi_routeros_commands_total{verb="/disk add"}"#, 1.0),
        (
            r#"rds_csi_routeros_commands_total{verb="/disk remove"}"#,
            1.0,
        ),
        ("rds_csi_ssh_circuit_breaker_state", 0.0),
        (r#"rds_csi_ssh_sessions{state="busy"}"#, 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    }
    let idle = sample(&text, r#"rds_csi_ssh_sessions{state="idle"}"#);
    assert!(idle.is_some_and(|n| n >= 1.0), "{text}");
    assert!(
        !text.contains("pvc-metrics"),
        "a volume name leaked into a label:\n{text}"
    );

    drop(plugin);
    sim.shutdown().await;
}

/// The node plugin serves metrics too: its RPCs are counted, it runs no RouterOS command, and it
/// reports the host's NVMe/TCP controllers and stale mounts.
#[tokio::test]
async fn the_node_plugin_counts_its_rpcs() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        node: NodeConfig {
            host_nqn: Some(
                "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000000a".into(),
            ),
            fabric: FabricMode::Loop,
            loop_root: Some(dir.path().to_owned()),
            ..NodeConfig::default()
        },
        ..Config::default()
    };
    let plugin = Plugin::start("node", dir.path(), config).await;
    let mut node = NodeClient::new(connect_unix(&plugin.socket).await.unwrap());
    node.node_get_info(NodeGetInfoRequest {}).await.unwrap();

    let text = scrape(&plugin.metrics).await;
    let series = r#"rds_csi_rpcs_total{method="NodeGetInfo",code="OK"}"#;
    assert_eq!(sample(&text, series), Some(1.0), "{text}");
    assert!(!text.contains("rds_csi_routeros_commands_total{"), "{text}");
    // The host's gauges: this machine's NVMe/TCP controllers (none in CI) and no stale mount
    // under a kubelet directory that holds nothing.
    assert!(
        sample(&text, r#"rds_csi_node_nvme_controllers{state="live"}"#).is_some(),
        "{text}"
    );
    assert!(
        text.contains("\n# TYPE rds_csi_node_stale_mounts gauge\n"),
        "{text}"
    );
}

//! The NVMe/TCP target inside the whole simulator: disks exported with `/disk add` are served, the
//! allow-list set by the CLI is enforced, live connections appear in the state read-out, and a
//! resize or a removal reaches the target.

use rds_sim::nvme::initiator::{ConnectParams, Initiator};
use rds_sim::nvme::pdu::Digests;
use rds_sim::server::{Options, RunningSim};
use rds_sim::sim::Sim;
use rds_sim::ssh::load_or_generate_host_key;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-1";
const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000000a";
const OTHER: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000000b";

/// Connects an admin queue as `host`; true when the target accepted the Connect.
fn admin_connect(addr: SocketAddr, host: &str) -> (Initiator<TcpStream>, bool) {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (mut initiator, _) = Initiator::handshake(stream, Digests::default()).unwrap();
    let accepted = initiator
        .fabrics_connect(&ConnectParams {
            qid: 0,
            sqsize: 31,
            kato_ms: 30_000,
            cntlid: 0xffff,
            subsys_nqn: NQN,
            host_nqn: host,
            host_id: [7; 16],
        })
        .unwrap()
        .cqe
        .status
        .is_success();
    (initiator, accepted)
}

async fn run(sim: &Arc<Sim>, line: &str) {
    let (session, _) = sim.open_session("admin", "127.0.0.1:1".parse().unwrap());
    match sim.exec(session, line).await {
        rds_sim::ssh::Reply::Output { text, .. } => assert_eq!(text, "", "{line}"),
        rds_sim::ssh::Reply::Hangup => panic!("{line}: hung up"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_disks_are_served_and_fenced_as_the_cli_says() {
    let dir = tempfile::tempdir().unwrap();
    let key = load_or_generate_host_key(&dir.path().join("id")).unwrap();
    let running = RunningSim::start(Options {
        nvme_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Options::loopback(dir.path().join("data"), key.public_key().clone(), 10 << 30)
    })
    .await
    .unwrap();
    let addr = running.nvme_addr.unwrap();
    let sim = running.sim.clone();
    run(
        &sim,
        &format!(
            r#"/disk add type=file file-path="storage-pool/csi/pvc-1.img" file-size=64M slot="pvc-1" nvme-tcp-export=yes nvme-tcp-server-port={} nvme-tcp-server-nqn="{NQN}" nvme-tcp-server-allow-host-name="{HOST}""#,
            addr.port()
        ),
    )
    .await;

    let (refused, accepted) = tokio::task::spawn_blocking(move || {
        let (_, refused) = admin_connect(addr, OTHER);
        let (initiator, accepted) = admin_connect(addr, HOST);
        (refused, (initiator, accepted))
    })
    .await
    .unwrap();
    assert!(!refused, "a host the allow-list does not name is refused");
    let (_initiator, accepted) = accepted;
    assert!(accepted, "the named host connects");
    let state = sim.state();
    assert_eq!(
        state.nvme_connections.len(),
        1,
        "{:?}",
        state.nvme_connections
    );
    assert_eq!(state.nvme_connections[0].host_nqn, HOST);
    assert_eq!(state.nvme_connections[0].subsys_nqn, NQN);

    // Unexported disks are not served at all.
    run(
        &sim,
        r#"/disk set [find where slot="pvc-1"] nvme-tcp-export=no"#,
    )
    .await;
    let accepted = tokio::task::spawn_blocking(move || admin_connect(addr, HOST).1)
        .await
        .unwrap();
    assert!(!accepted, "an unexported disk refuses every host");
    running.shutdown().await;
}

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

/// Connects queue `qid` of controller `cntlid` (0xffff: a new one) as `host`; the controller's
/// ID when the target accepted the Connect.
fn queue_connect(
    addr: SocketAddr,
    host: &str,
    qid: u16,
    cntlid: u16,
) -> (Initiator<TcpStream>, Option<u16>) {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (mut initiator, _) = Initiator::handshake(stream, Digests::default()).unwrap();
    let response = initiator
        .fabrics_connect(&ConnectParams {
            qid,
            sqsize: 31,
            kato_ms: if qid == 0 { 30_000 } else { 0 },
            cntlid,
            subsys_nqn: NQN,
            host_nqn: host,
            host_id: [7; 16],
        })
        .unwrap();
    let cntlid = response
        .cqe
        .status
        .is_success()
        .then(|| response.cqe.dw0() as u16);
    (initiator, cntlid)
}

/// Connects an admin queue as `host`; true when the target accepted the Connect.
fn admin_connect(addr: SocketAddr, host: &str) -> (Initiator<TcpStream>, bool) {
    let (initiator, cntlid) = queue_connect(addr, host, 0, 0xffff);
    (initiator, cntlid.is_some())
}

async fn run(sim: &Arc<Sim>, line: &str) {
    let (session, _) = sim.open_session("admin", "127.0.0.1:1".parse().unwrap());
    match sim.exec(session, line).await {
        rds_sim::ssh::Reply::Output { text, .. } => assert_eq!(text, "", "{line}"),
        rds_sim::ssh::Reply::Hangup => panic!("{line}: hung up"),
    }
}

/// The whole simulator with its NVMe/TCP target listening and disk `pvc-1` exported on it, open to
/// `allow` only when given; the directory holds its files and must outlive it.
async fn serve_pvc1(allow: Option<&str>) -> (tempfile::TempDir, RunningSim) {
    let dir = tempfile::tempdir().unwrap();
    let key = load_or_generate_host_key(&dir.path().join("id")).unwrap();
    let running = RunningSim::start(Options {
        nvme_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Options::loopback(dir.path().join("data"), key.public_key().clone(), 10 << 30)
    })
    .await
    .unwrap();
    let port = running.nvme_addr.unwrap().port();
    let allow = allow
        .map(|host| format!(r#" nvme-tcp-server-allow-host-name="{host}""#))
        .unwrap_or_default();
    run(
        &running.sim,
        &format!(
            r#"/disk add type=file file-path="storage-pool/csi/pvc-1.img" file-size=64M slot="pvc-1" nvme-tcp-export=yes nvme-tcp-server-port={port} nvme-tcp-server-nqn="{NQN}"{allow}"#
        ),
    )
    .await;
    (dir, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_disks_are_served_and_fenced_as_the_cli_says() {
    let (_dir, running) = serve_pvc1(Some(HOST)).await;
    let (addr, sim) = (running.nvme_addr.unwrap(), running.sim.clone());

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

/// The `allow-list` switch (REFERENCE.md §13.3): a two-host value admits both hosts when it is
/// read as a comma-separated list, and neither when it is read as one host name; a one-host value
/// admits that host in both positions, and a third host never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_admits_as_its_switch_reads_it() {
    const THIRD: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000000c";
    let (_dir, running) = serve_pvc1(Some(&format!("{HOST},{OTHER}"))).await;
    let (addr, sim) = (running.nvme_addr.unwrap(), running.sim.clone());
    let admitted = move |hosts: [&'static str; 3]| async move {
        tokio::task::spawn_blocking(move || hosts.map(|host| admin_connect(addr, host).1))
            .await
            .unwrap()
    };
    assert_eq!(admitted([HOST, OTHER, THIRD]).await, [true, true, false]);
    sim.set_quirk("allow-list", "single").unwrap();
    assert_eq!(
        admitted([HOST, OTHER, THIRD]).await,
        [false, false, false],
        "read as one host name, `<a>,<b>` names no host"
    );
    run(
        &sim,
        &format!(
            r#"/disk set [find where slot="pvc-1"] nvme-tcp-server-allow-host-name="{OTHER}""#
        ),
    )
    .await;
    assert_eq!(admitted([HOST, OTHER, THIRD]).await, [false, true, false]);
    sim.set_quirk("allow-list", "list").unwrap();
    assert_eq!(admitted([HOST, OTHER, THIRD]).await, [false, true, false]);
    running.shutdown().await;
}

/// `/disk monitor-traffic` counts the NVMe/TCP target's reads and writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_traffic_counts_nvme_io() {
    let (_dir, running) = serve_pvc1(None).await;
    let (addr, sim) = (running.nvme_addr.unwrap(), running.sim.clone());
    tokio::task::spawn_blocking(move || {
        let (mut admin, cntlid) = queue_connect(addr, HOST, 0, 0xffff);
        admin.enable().unwrap();
        let (mut io, accepted) = queue_connect(addr, HOST, 1, cntlid.unwrap());
        assert!(accepted.is_some());
        io.write(8, vec![0xa5; 8192]).unwrap();
        io.write(64, vec![0x5a; 512]).unwrap();
        assert_eq!(io.read(8, 16).unwrap(), vec![0xa5; 8192]);
    })
    .await
    .unwrap();

    let (session, _) = sim.open_session("admin", "127.0.0.1:1".parse().unwrap());
    let rds_sim::ssh::Reply::Output { text, .. } = sim
        .exec(
            session,
            r#"/disk monitor-traffic [find where slot="pvc-1"] once"#,
        )
        .await
    else {
        panic!("monitor-traffic hung up");
    };
    let counters: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    for expected in [
        ("read-ops", "1"),
        ("read-bytes", "8 192"),
        ("write-ops", "2"),
        ("write-bytes", "8 704"),
    ] {
        assert!(counters.contains(&expected), "{expected:?} not in\n{text}");
    }
    running.shutdown().await;
}

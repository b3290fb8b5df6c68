//! The NVMe/TCP target over real TCP on loopback, backed by a temporary file, driven by the
//! blocking initiator on a blocking thread.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rds_sim::nvme::command::Completion;
use rds_sim::nvme::identify::cns;
use rds_sim::nvme::initiator::{ConnectParams, Initiator, InitiatorError};
use rds_sim::nvme::log_page::lid;
use rds_sim::nvme::pdu::Digests;
use rds_sim::nvme::status::Status;
use rds_sim::nvme::{ConnectionFilter, DISCOVERY_NQN, Export, Exports, Target};

const NQN: &str = "nqn.2026-09.com.mikrotik:rds.pvc-1";
const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:0f0e0d0c-0b0a-0908-0706-050403020100";
const SIZE: u64 = 16 << 20;

struct Store {
    exports: Mutex<Vec<Export>>,
    port: Mutex<u16>,
}

impl Exports for Store {
    fn lookup(&self, nqn: &str, port: u16) -> Option<Export> {
        self.list(port).into_iter().find(|e| e.nqn == nqn)
    }
    fn list(&self, port: u16) -> Vec<Export> {
        if port == *self.port.lock().unwrap() {
            self.exports.lock().unwrap().clone()
        } else {
            Vec::new()
        }
    }
}

struct Fixture {
    target: Target,
    store: Arc<Store>,
    file: tempfile::NamedTempFile,
}

async fn fixture(allowed_hosts: &[&str]) -> Fixture {
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(SIZE).unwrap();
    let store = Arc::new(Store {
        exports: Mutex::new(Vec::new()),
        port: Mutex::new(0),
    });
    let target = Target::start("127.0.0.1:0".parse().unwrap(), store.clone())
        .await
        .unwrap();
    *store.port.lock().unwrap() = target.local_addr().port();
    store.exports.lock().unwrap().push(Export {
        slot: "disk".to_owned(),
        nqn: NQN.to_owned(),
        file: file.path().to_owned(),
        size: SIZE,
        uuid: *b"\x5e\x1f\x00\x01uuid-of-pvc1",
        serial: "5e1f0001deadbeef".to_owned(),
        allowed_hosts: allowed_hosts.iter().map(|s| s.to_string()).collect(),
    });
    Fixture {
        target,
        store,
        file,
    }
}

type Host = Initiator<TcpStream>;

fn open(addr: SocketAddr, digests: Digests) -> Host {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    Initiator::handshake(stream, digests).unwrap().0
}

fn connect(
    host: &mut Host,
    qid: u16,
    cntlid: u16,
    nqn: &str,
    kato_ms: u32,
    host_nqn: &str,
) -> Completion {
    let p = ConnectParams {
        qid,
        sqsize: if qid == 0 { 31 } else { 127 },
        kato_ms,
        cntlid,
        subsys_nqn: nqn,
        host_nqn,
        host_id: [7; 16],
    };
    host.fabrics_connect(&p).unwrap().cqe
}

/// An enabled admin queue and one I/O queue.
fn attach(addr: SocketAddr, digests: Digests) -> (Host, Host) {
    let mut admin = open(addr, digests);
    let c = connect(&mut admin, 0, 0xffff, NQN, 30_000, HOST);
    assert!(c.status.is_success(), "{c:?}");
    admin.enable().unwrap();
    let mut io = open(addr, digests);
    let c = connect(&mut io, 1, c.dw0() as u16, NQN, 0, HOST);
    assert!(c.status.is_success(), "{c:?}");
    (admin, io)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_write_read_flush_over_tcp() {
    let f = fixture(&[]).await;
    let addr = f.target.local_addr();
    let path = f.file.path().to_owned();
    let (admin, io) = blocking(move || {
        for digests in [
            Digests::default(),
            Digests {
                header: true,
                data: true,
            },
        ] {
            let (mut admin, mut io) = attach(addr, digests);
            let ns = admin.identify(cns::NAMESPACE, 1).unwrap();
            assert_eq!(u64::from_le_bytes(ns[0..8].try_into().unwrap()), SIZE / 512);
            // 1 MiB goes by R2T and H2CData; a page goes in the capsule.
            let big = pattern(1 << 20, digests.data as u8);
            io.write(4096, big.clone()).unwrap();
            io.write(0, pattern(4096, 9)).unwrap();
            io.flush().unwrap();
            assert_eq!(io.read(4096, 2048).unwrap(), big);
            let mut on_disk = vec![0; 1 << 20];
            std::fs::File::open(&path)
                .unwrap()
                .read_exact_at(&mut on_disk, 4096 * 512)
                .unwrap();
            assert_eq!(on_disk, big, "the host file holds what was written");
            // Several commands in flight on one queue complete independently.
            let cids: Vec<u16> = (0..16).map(|i| io.submit_read(i * 8, 8).unwrap()).collect();
            for cid in cids {
                assert_eq!(io.wait(cid).unwrap().data.len(), 4096);
            }
            if !digests.data {
                continue;
            }
            return (admin, io);
        }
        unreachable!()
    })
    .await;
    let conns = f.target.connections();
    let qids: Vec<u16> = conns
        .iter()
        .filter(|c| c.subsys_nqn == NQN)
        .map(|c| c.qid)
        .collect();
    assert!(qids.contains(&0) && qids.contains(&1), "{conns:?}");
    assert!(
        conns
            .iter()
            .all(|c| c.host_nqn == HOST && c.peer.ip().is_loopback())
    );
    drop((admin, io));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_expiry_closes_the_controllers_queues() {
    let f = fixture(&[]).await;
    let addr = f.target.local_addr();
    blocking(move || {
        let mut admin = open(addr, Digests::default());
        assert!(
            connect(&mut admin, 0, 0xffff, NQN, 1000, HOST)
                .status
                .is_success()
        );
        admin.enable().unwrap();
        let mut io = open(addr, Digests::default());
        assert!(connect(&mut io, 1, 1, NQN, 0, HOST).status.is_success());
        // The host goes silent: within two keep-alive periods the target closes both queues.
        assert!(matches!(admin.receive(), Err(InitiatorError::Closed)));
        assert!(matches!(io.receive(), Err(InitiatorError::Closed)));
    })
    .await;
    wait_until(|| f.target.connections().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_and_unknown_subsystems_are_refused_at_connect() {
    let f = fixture(&[HOST]).await;
    let addr = f.target.local_addr();
    blocking(move || {
        let mut stranger = open(addr, Digests::default());
        let c = connect(
            &mut stranger,
            0,
            0xffff,
            NQN,
            5000,
            "nqn.2014-08.org.nvmexpress:uuid:stranger",
        );
        assert_eq!(
            (c.status.sct(), c.status.sc(), c.status.dnr()),
            (1, 0x84, true)
        );
        let mut lost = open(addr, Digests::default());
        let c = connect(
            &mut lost,
            0,
            0xffff,
            "nqn.2026-09.com.mikrotik:rds.missing",
            5000,
            HOST,
        );
        assert_eq!(
            (c.status, c.dw0()),
            (Status::CONNECT_INVALID_PARAM, (1 << 16) | 256)
        );
        let mut known = open(addr, Digests::default());
        assert!(
            connect(&mut known, 0, 0xffff, NQN, 5000, HOST)
                .status
                .is_success()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_log_lists_the_exports_this_host_may_use() {
    let f = fixture(&[HOST]).await;
    let port = f.target.local_addr().port();
    let addr = f.target.local_addr();
    let nqn_in_log = |host_nqn: &'static str| {
        blocking(move || {
            let mut disc = open(addr, Digests::default());
            assert!(
                connect(&mut disc, 0, 0xffff, DISCOVERY_NQN, 0, host_nqn)
                    .status
                    .is_success()
            );
            disc.enable().unwrap();
            let log = disc.get_log_page(lid::DISCOVERY, 0, 3072).unwrap();
            let numrec = u64::from_le_bytes(log[8..16].try_into().unwrap());
            let text = |r: &[u8]| {
                String::from_utf8_lossy(r)
                    .trim_end_matches('\0')
                    .to_string()
            };
            let entries: Vec<(u8, String, String, String)> = (1..=numrec as usize)
                .map(|i| {
                    let e = &log[1024 * i..1024 * (i + 1)];
                    (
                        e[2],
                        text(&e[256..512]),
                        text(&e[512..768]),
                        text(&e[32..64]),
                    )
                })
                .collect();
            entries
        })
    };
    let listed = nqn_in_log(HOST).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[1],
        (2, NQN.to_owned(), "127.0.0.1".to_owned(), port.to_string())
    );
    let hidden = nqn_in_log("nqn.2014-08.org.nvmexpress:uuid:stranger").await;
    assert_eq!(
        hidden.len(),
        1,
        "only the discovery subsystem itself: {hidden:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_drop_refuse_stall_and_disconnect() {
    let f = fixture(&[]).await;
    let addr = f.target.local_addr();
    let (admin, io) = blocking(move || attach(addr, Digests::default())).await;
    assert_eq!(f.target.connections().len(), 2);

    f.target.drop_connections(ConnectionFilter::Host(
        "nqn.2014-08.org.nvmexpress:uuid:other".into(),
    ));
    assert_eq!(
        f.target.connections().len(),
        2,
        "no connection of that host"
    );
    f.target
        .drop_connections(ConnectionFilter::Host(HOST.into()));
    let (mut admin, mut io) = (admin, io);
    blocking(move || {
        assert!(matches!(io.receive(), Err(InitiatorError::Closed)));
        assert!(matches!(admin.receive(), Err(InitiatorError::Closed)));
    })
    .await;
    wait_until(|| f.target.connections().is_empty()).await;

    f.target.refuse_for(Duration::from_secs(3600));
    blocking(move || {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        assert!(
            Initiator::handshake(stream, Digests::default()).is_err(),
            "refused while down"
        );
    })
    .await;
    f.target.refuse_for(Duration::ZERO);

    // A stalled target completes admin commands but holds I/O until released.
    let (admin, io) = blocking(move || attach(addr, Digests::default())).await;
    f.target.stall_io(true);
    f.target.set_io_latency(Duration::from_millis(5));
    let (mut admin, mut io, cid) = blocking(move || {
        let mut admin = admin;
        let mut io = io;
        let cid = io.submit_read(0, 8).unwrap();
        admin.keep_alive().unwrap();
        (admin, io, cid)
    })
    .await;
    f.target.stall_io(false);
    let (admin, io) = blocking(move || {
        assert_eq!(io.wait(cid).unwrap().data.len(), 4096);
        admin.keep_alive().unwrap();
        (admin, io)
    })
    .await;
    f.target.set_io_latency(Duration::ZERO);

    // Growing the disk raises a namespace-changed event on the admin queue.
    let (mut admin, io, aer) = blocking(move || {
        let mut admin = admin;
        assert_eq!(admin.set_features(0x0b, 0x900).unwrap(), 0x900);
        let aer = admin.submit_async_event().unwrap();
        admin.keep_alive().unwrap();
        (admin, io, aer)
    })
    .await;
    f.store.exports.lock().unwrap()[0].size = 2 * SIZE;
    f.target.notify_resized(NQN);
    let (admin, mut io) = blocking(move || {
        assert_eq!(admin.wait(aer).unwrap().cqe.dw0(), 0x0004_0002);
        let ns = admin.identify(cns::NAMESPACE, 1).unwrap();
        assert_eq!(
            u64::from_le_bytes(ns[0..8].try_into().unwrap()),
            2 * SIZE / 512
        );
        let mut io = io;
        io.write(SIZE / 512, vec![3; 4096]).unwrap();
        (admin, io)
    })
    .await;

    f.target.disconnect_nqn(NQN);
    blocking(move || {
        assert!(matches!(io.receive(), Err(InitiatorError::Closed)));
        drop(admin);
    })
    .await;
    wait_until(|| f.target.connections().is_empty()).await;
}

/// Waits for a condition the target reaches asynchronously (a connection task finishing).
async fn wait_until(cond: impl Fn() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 10 s");
}

//! Throughput of the NVMe/TCP target on loopback: sequential writes then reads through a
//! number of I/O queues, each keeping several commands in flight. Prints MiB/s.
//!
//! `cargo run --release -p rds-sim --example nvme_bench -- [queues] [depth] [io KiB] [MiB per queue]`

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rds_sim::nvme::initiator::{ConnectParams, Initiator};
use rds_sim::nvme::pdu::Digests;
use rds_sim::nvme::{Export, Exports, Target};

const NQN: &str = "nqn.2026-09.com.mikrotik:bench";
const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:bench";

struct One(Mutex<Option<Export>>);

impl Exports for One {
    fn lookup(&self, nqn: &str, _port: u16) -> Option<Export> {
        self.0.lock().unwrap().clone().filter(|e| e.nqn == nqn)
    }
    fn list(&self, _port: u16) -> Vec<Export> {
        self.0.lock().unwrap().clone().into_iter().collect()
    }
}

fn queue(addr: SocketAddr, qid: u16, cntlid: u16) -> Initiator<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut q, _) = Initiator::handshake(stream, Digests::default()).unwrap();
    let p = ConnectParams {
        qid,
        sqsize: 127,
        kato_ms: if qid == 0 { 30_000 } else { 0 },
        cntlid,
        subsys_nqn: NQN,
        host_nqn: HOST,
        host_id: [1; 16],
    };
    q.fabrics_connect(&p).unwrap().ok().unwrap();
    q
}

/// Runs `ios` commands of `blocks` each on one queue with `depth` in flight.
fn stream_io(
    q: &mut Initiator<TcpStream>,
    base: u64,
    ios: u64,
    blocks: u32,
    depth: usize,
    write: bool,
) {
    let mut inflight = std::collections::VecDeque::new();
    let payload = vec![0x5au8; (blocks as usize) * 512];
    for i in 0..ios {
        let slba = base + i * u64::from(blocks);
        let cid = if write {
            q.submit_write(slba, payload.clone()).unwrap()
        } else {
            q.submit_read(slba, blocks).unwrap()
        };
        inflight.push_back(cid);
        if inflight.len() >= depth {
            q.wait(inflight.pop_front().unwrap()).unwrap().ok().unwrap();
        }
    }
    for cid in inflight {
        q.wait(cid).unwrap().ok().unwrap();
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let queues = *args.first().unwrap_or(&2) as u16;
    let depth = *args.get(1).unwrap_or(&16) as usize;
    let io_kib = *args.get(2).unwrap_or(&128);
    let mib_per_queue = *args.get(3).unwrap_or(&256);
    let blocks = (io_kib * 2) as u32;
    let ios = mib_per_queue * 1024 / io_kib;
    let size = (u64::from(queues) * mib_per_queue) << 20;

    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(size).unwrap();
    let exports = Arc::new(One(Mutex::new(Some(Export {
        nqn: NQN.to_owned(),
        slot: "bench".to_owned(),
        file: file.path().to_owned(),
        size,
        uuid: [9; 16],
        serial: "bench".to_owned(),
        allowed_hosts: Vec::new(),
    }))));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = rt
        .block_on(Target::start("127.0.0.1:0".parse().unwrap(), exports))
        .unwrap();
    let addr = target.local_addr();

    let mut admin = queue(addr, 0, 0xffff);
    admin.enable().unwrap();
    for (phase, write) in [true, false].into_iter().enumerate() {
        let start = Instant::now();
        let workers: Vec<_> = (0..queues)
            .map(|i| {
                std::thread::spawn(move || {
                    // Fresh queue IDs per phase: the target may not have seen the last close yet.
                    let mut q = queue(addr, 1 + i + phase as u16 * queues, 1);
                    let base = u64::from(i) * (mib_per_queue << 11);
                    stream_io(&mut q, base, ios, blocks, depth, write);
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        let mib = (u64::from(queues) * mib_per_queue) as f64;
        println!(
            "{:<5} queues={queues} depth={depth} io={io_kib}KiB total={mib}MiB: {:.0} MiB/s",
            if write { "write" } else { "read" },
            mib / secs
        );
    }
    admin.keep_alive().unwrap();
}

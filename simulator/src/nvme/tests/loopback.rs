//! An in-memory connection to a [`Queue`]: file operations run synchronously against a byte
//! vector, and every operation is checked to lie inside the namespace.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use crate::nvme::initiator::{ConnectParams, Initiator};
use crate::nvme::io::IoOp;
use crate::nvme::pdu::{Decoded, Digests, RecvBuffer};
use crate::nvme::queue::{Action, Env, IoRequest, IoResult, Queue, Session};
use crate::nvme::registry::Registry;
use crate::nvme::{Export, Exports};

pub const PORT: u16 = 4420;
pub const NQN: &str = "nqn.2014-08.org.example:sim-vol1";
pub const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
pub const HOST_ID: [u8; 16] = [
    0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
];
pub const UUID: [u8; 16] = [
    0xa1, 0xb2, 0xc3, 0xd4, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
];
pub const SIZE: u64 = 64 << 20;

#[derive(Default)]
pub struct MemExports(pub Mutex<Vec<Export>>);

impl Exports for MemExports {
    fn lookup(&self, nqn: &str, port: u16) -> Option<Export> {
        (port == PORT).then(|| {
            self.0
                .lock()
                .unwrap()
                .iter()
                .find(|e| e.nqn == nqn)
                .cloned()
        })?
    }
    fn list(&self, port: u16) -> Vec<Export> {
        if port == PORT {
            self.0.lock().unwrap().clone()
        } else {
            Vec::new()
        }
    }
}

pub fn export(nqn: &str, allowed: &[&str]) -> Export {
    Export {
        nqn: nqn.to_owned(),
        slot: nqn.to_owned(),
        file: format!("/nonexistent/{nqn}.img").into(),
        size: SIZE,
        uuid: UUID,
        serial: "b1d2c3e4f5a6b7c8".to_owned(),
        allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
    }
}

/// State shared by the loopback connections of one test: controllers, exports, the disk.
pub struct Harness {
    pub registry: Arc<Mutex<Registry>>,
    pub exports: Arc<MemExports>,
    pub disk: Arc<Mutex<Vec<u8>>>,
}

impl Harness {
    pub fn new() -> Self {
        let exports = MemExports::default();
        exports.0.lock().unwrap().push(export(NQN, &[]));
        Self {
            registry: Arc::default(),
            exports: Arc::new(exports),
            disk: Arc::new(Mutex::new(vec![0; SIZE as usize])),
        }
    }

    pub fn connection(&self) -> Loopback {
        Loopback {
            queue: Queue::new(),
            registry: Arc::clone(&self.registry),
            exports: Arc::clone(&self.exports),
            disk: Arc::clone(&self.disk),
            rb: RecvBuffer::default(),
            out: VecDeque::new(),
            sessions: Vec::new(),
            closed: false,
        }
    }

    /// A connected, enabled queue: `qid` 0 creates a controller, others join `cntlid`.
    pub fn queue(&self, qid: u16, cntlid: u16, digests: Digests) -> Initiator<Loopback> {
        let (mut init, _) = Initiator::handshake(self.connection(), digests).unwrap();
        let params = ConnectParams {
            qid,
            sqsize: if qid == 0 { 31 } else { 127 },
            kato_ms: if qid == 0 { 5000 } else { 0 },
            cntlid,
            subsys_nqn: NQN,
            host_nqn: HOST,
            host_id: HOST_ID,
        };
        init.fabrics_connect(&params).unwrap().ok().unwrap();
        if qid == 0 {
            init.enable().unwrap();
        }
        init
    }
}

pub struct Loopback {
    pub queue: Queue,
    registry: Arc<Mutex<Registry>>,
    exports: Arc<MemExports>,
    disk: Arc<Mutex<Vec<u8>>>,
    rb: RecvBuffer,
    out: VecDeque<u8>,
    pub sessions: Vec<Session>,
    pub closed: bool,
}

impl Loopback {
    fn env(&self) -> (Arc<Mutex<Registry>>, Arc<MemExports>) {
        (Arc::clone(&self.registry), Arc::clone(&self.exports))
    }

    /// Feeds bytes to the queue and runs everything it asks for.
    pub fn feed(&mut self, bytes: &[u8]) {
        let (registry, exports) = self.env();
        let env = Env {
            registry: &registry,
            exports: exports.as_ref(),
            port: PORT,
            traddr: "192.0.2.1",
        };
        let spare = self.rb.spare(self.rb.filled().len() + bytes.len(), 0);
        spare[..bytes.len()].copy_from_slice(bytes);
        self.rb.commit(bytes.len());
        let mut actions = Vec::new();
        while !self.queue.is_closed() {
            match self.queue.codec().decode(self.rb.filled()) {
                Ok(Decoded::Pdu(pdu, len)) => {
                    self.queue
                        .handle(pdu, &self.rb.filled()[..len], &env, &mut actions);
                    self.rb.consume(len);
                }
                Ok(Decoded::NeedMore(_)) => break,
                Err(e) => {
                    let head = self.rb.filled()[..self.rb.filled().len().min(128)].to_vec();
                    self.queue.decode_failed(&e, &head, &mut actions);
                }
            }
            self.run(&mut actions, &env);
        }
        self.run(&mut actions, &env);
    }

    /// Lets the queue send completions another party queued (asynchronous events).
    pub fn poll_events(&mut self) {
        let (registry, exports) = self.env();
        let env = Env {
            registry: &registry,
            exports: exports.as_ref(),
            port: PORT,
            traddr: "192.0.2.1",
        };
        let mut actions = Vec::new();
        self.queue.poll_events(&env, &mut actions);
        self.run(&mut actions, &env);
    }

    fn run(&mut self, actions: &mut Vec<Action>, env: &Env<'_>) {
        while !actions.is_empty() {
            for action in std::mem::take(actions) {
                match action {
                    Action::Send(f) => self.out.extend(f.to_bytes()),
                    Action::Close => self.closed = true,
                    Action::Attached(s) => self.sessions.push(s),
                    Action::Io(IoRequest { cid, op }) => {
                        let result = self.perform(op);
                        self.queue.io_done(cid, result, env, actions);
                    }
                }
            }
        }
    }

    fn perform(&self, op: IoOp) -> IoResult {
        let mut disk = self.disk.lock().unwrap();
        for (offset, len) in op.extents() {
            assert!(
                offset.checked_add(len).is_some_and(|end| end <= SIZE),
                "{op:?} leaves the namespace"
            );
        }
        match op {
            IoOp::Read { offset, len } => {
                IoResult::Read(disk[offset as usize..offset as usize + len].to_vec())
            }
            IoOp::Write { offset, data } => {
                disk[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                IoResult::Done
            }
            IoOp::WriteZeroes { offset, len } => {
                disk[offset as usize..(offset + len) as usize].fill(0);
                IoResult::Done
            }
            IoOp::Flush | IoOp::Deallocate { .. } => IoResult::Done,
        }
    }

    /// Bytes the queue sent and nobody read yet.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.out.drain(..).collect()
    }
}

impl Write for Loopback {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.feed(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Read for Loopback {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.out.len());
        for (dst, src) in buf.iter_mut().zip(self.out.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

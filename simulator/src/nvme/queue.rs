//! One NVMe/TCP connection, which carries one queue: connection setup, command capsules, the
//! R2T/H2CData flow for writes, C2HData for reads, completions with the SQ head pointer. Pure:
//! it turns decoded PDUs into [`Action`]s that the I/O edge carries out, and takes I/O results
//! back.

use std::collections::HashMap;
use std::sync::Mutex;

use super::command::{
    CONNECT_DATA_LEN, Command, Completion, ConnectData, SGL_IN_CAPSULE, SGL_TRANSPORT, admin,
    fabrics,
};
use super::controller::{AdminContext, Outcome, Reply, Subsystem};
use super::identify::{INLINE_DATA_SIZE, MAX_QUEUE_SIZE};
use super::io::{IoOp, IoPlan, plan};
use super::pdu::{Codec, DataHeader, Fes, IcReq, IcResp, PFV_1_0, Pdu, PduError, PduType, R2t};
use super::registry::{Attached, ConnectRequest, CtrlKey, Registry};
use super::status::Status;
use super::{DISCOVERY_NQN, Export, Exports};

/// The largest H2CData payload hosts may send (nvmet's NVMET_TCP_MAXH2CDATA).
pub const MAX_H2C_DATA: u32 = 4 * 1024 * 1024;
/// The largest data transfer one command may ask for; larger ones fail with
/// `SGL_INVALID_DATA` rather than make the target allocate without bound.
pub const MAX_TRANSFER: u32 = 32 * 1024 * 1024;

/// What a queue needs from outside: the shared controllers and the port's exports.
pub struct Env<'a> {
    pub registry: &'a Mutex<Registry>,
    pub exports: &'a dyn Exports,
    pub port: u16,
    /// The address hosts reach this port at, for discovery log records.
    pub traddr: &'a str,
}

/// The queue a connection carries once Connect succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub key: CtrlKey,
    pub qid: u16,
    pub host_nqn: String,
    /// The exported disk of an NVM subsystem; none for discovery.
    pub export: Option<Export>,
    pub kato_secs: u32,
}

/// A file operation the edge performs for command `cid`, then reports with [`Queue::io_done`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoRequest {
    pub cid: u16,
    pub op: IoOp,
}

/// The outcome of an [`IoRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoResult {
    Read(Vec<u8>),
    Done,
    Failed,
}

/// Work for the I/O edge, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Send(super::pdu::Frame),
    Io(IoRequest),
    Attached(Session),
    /// Close the connection once the frames before this are sent.
    Close,
}

#[derive(Debug)]
enum Inflight {
    /// Waiting for H2CData after an R2T.
    Receiving {
        cmd: Command,
        buf: Vec<u8>,
        total: usize,
    },
    /// A file operation is running.
    Executing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitIcReq,
    Ready,
    Closed,
}

#[derive(Debug)]
pub struct Queue {
    codec: Codec,
    state: State,
    attached: Option<Attached>,
    sqhd: u16,
    inflight: HashMap<u16, Inflight>,
}

impl Default for Queue {
    fn default() -> Self {
        Self::new()
    }
}

impl Queue {
    pub fn new() -> Self {
        Self {
            codec: Codec::initial(super::pdu::IC_LEN),
            state: State::AwaitIcReq,
            attached: None,
            sqhd: 0,
            inflight: HashMap::new(),
        }
    }

    /// The codec for the bytes this connection receives next.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The controller and queue ID once connected.
    pub fn attached(&self) -> Option<&Attached> {
        self.attached.as_ref()
    }

    /// The edge could not decode the input: terminate the connection.
    pub fn decode_failed(&mut self, err: &PduError, header: &[u8], out: &mut Vec<Action>) {
        match err.termination() {
            Some((fes, fei)) => self.fatal(fes, fei, header, out),
            None => self.close(out),
        }
    }

    fn close(&mut self, out: &mut Vec<Action>) {
        if self.state != State::Closed {
            self.state = State::Closed;
            out.push(Action::Close);
        }
    }

    fn fatal(&mut self, fes: Fes, fei: u32, header: &[u8], out: &mut Vec<Action>) {
        if self.state == State::Closed {
            return;
        }
        let hlen = header
            .len()
            .min(usize::from(header.get(2).copied().unwrap_or(0)).max(8));
        let frame = self
            .codec
            .term_req(PduType::C2hTermReq, fes, fei, &header[..hlen]);
        out.push(Action::Send(frame));
        self.close(out);
    }

    /// Handles one decoded PDU; `raw` is its bytes, quoted back in a termination request.
    pub fn handle(&mut self, pdu: Pdu<'_>, raw: &[u8], env: &Env<'_>, out: &mut Vec<Action>) {
        match (self.state, pdu) {
            (State::Closed, _) => {}
            (State::AwaitIcReq, Pdu::IcReq(req)) => self.ic_req(&req, raw, out),
            (State::AwaitIcReq, _) | (State::Ready, Pdu::IcReq(_)) => {
                self.fatal(Fes::SequenceError, 0, raw, out)
            }
            (State::Ready, Pdu::CapsuleCmd { sqe, data }) => {
                self.capsule(Command(*sqe), data, raw, env, out)
            }
            (State::Ready, Pdu::H2cData(h, data)) => self.h2c_data(&h, data, raw, env, out),
            (State::Ready, Pdu::H2cTermReq(_)) => self.close(out),
            (State::Ready, _) => self.fatal(Fes::InvalidHeaderField, 0, raw, out),
        }
    }

    fn ic_req(&mut self, req: &IcReq, raw: &[u8], out: &mut Vec<Action>) {
        if req.pfv != PFV_1_0 {
            return self.fatal(Fes::UnsupportedParameter, 8, raw, out);
        }
        if req.hpda != 0 {
            return self.fatal(Fes::UnsupportedParameter, 10, raw, out);
        }
        let resp = IcResp {
            pfv: PFV_1_0,
            cpda: 0,
            digests: req.digests,
            maxh2cdata: MAX_H2C_DATA,
        };
        out.push(Action::Send(self.codec.ic_resp(&resp)));
        self.codec = Codec {
            digests: req.digests,
            max_data: MAX_H2C_DATA as usize,
        };
        self.state = State::Ready;
    }

    fn capsule(
        &mut self,
        cmd: Command,
        data: &[u8],
        raw: &[u8],
        env: &Env<'_>,
        out: &mut Vec<Action>,
    ) {
        let limit = self
            .attached
            .as_ref()
            .map_or(usize::from(MAX_QUEUE_SIZE), |a| usize::from(a.queue_size))
            * 2;
        if self.inflight.len() >= limit {
            return self.fatal(Fes::SequenceError, 0, raw, out);
        }
        if self.inflight.contains_key(&cmd.cid()) {
            return self.fatal(Fes::SequenceError, 0, raw, out);
        }
        let sgl = cmd.sgl();
        if !data.is_empty() {
            let status = if !cmd.is_host_to_controller() {
                Some(Status::INVALID_FIELD)
            } else if data.len() > INLINE_DATA_SIZE {
                Some(Status::SGL_INVALID_OFFSET)
            } else if sgl.id != SGL_IN_CAPSULE || sgl.length as usize != data.len() {
                Some(Status::SGL_INVALID_DATA)
            } else {
                None
            };
            return match status {
                Some(status) => self.complete(&cmd, Reply::err(status), env, out),
                None => self.execute(cmd, data.to_vec(), env, out),
            };
        }
        if sgl.length > 0 && cmd.is_host_to_controller() {
            if sgl.id != SGL_TRANSPORT || sgl.length > MAX_TRANSFER {
                return self.complete(&cmd, Reply::err(Status::SGL_INVALID_DATA), env, out);
            }
            // Refuse before asking for data when the command cannot succeed.
            if let Some(a) = &self.attached
                && a.qid != 0
                && let Err(status) = self.plan_io(&cmd, env)
            {
                return self.complete(&cmd, Reply::err(status), env, out);
            }
            let total = sgl.length as usize;
            self.inflight.insert(
                cmd.cid(),
                Inflight::Receiving {
                    cmd,
                    buf: Vec::with_capacity(total),
                    total,
                },
            );
            let r2t = R2t {
                cccid: cmd.cid(),
                ttag: cmd.cid(),
                offset: 0,
                length: sgl.length,
            };
            out.push(Action::Send(self.codec.r2t(&r2t)));
            return;
        }
        self.execute(cmd, Vec::new(), env, out)
    }

    fn h2c_data(
        &mut self,
        h: &DataHeader,
        data: &[u8],
        raw: &[u8],
        env: &Env<'_>,
        out: &mut Vec<Action>,
    ) {
        let Some(Inflight::Receiving { buf, total, .. }) = self.inflight.get_mut(&h.cccid) else {
            return self.fatal(Fes::InvalidHeaderField, 8, raw, out);
        };
        if h.ttag != h.cccid {
            return self.fatal(Fes::InvalidHeaderField, 10, raw, out);
        }
        if h.offset as usize != buf.len() || buf.len() + data.len() > *total {
            return self.fatal(Fes::DataOutOfRange, 12, raw, out);
        }
        buf.extend_from_slice(data);
        if buf.len() < *total {
            return;
        }
        let Some(Inflight::Receiving { cmd, buf, .. }) = self.inflight.remove(&h.cccid) else {
            unreachable!("checked above")
        };
        self.execute(cmd, buf, env, out);
    }

    fn with_ctrl<T>(
        &self,
        env: &Env<'_>,
        f: impl FnOnce(&mut super::controller::Controller) -> T,
    ) -> Option<T> {
        let key = &self.attached.as_ref()?.key;
        let mut registry = env.registry.lock().expect("registry lock poisoned");
        registry.get_mut(key).map(f)
    }

    fn plan_io(&self, cmd: &Command, env: &Env<'_>) -> Result<IoPlan, Status> {
        self.with_ctrl(env, |c| {
            c.note_traffic();
            if !c.is_ready() {
                return Err(Status::CMD_SEQ_ERROR);
            }
            let Subsystem::Nvm(export) = &c.subsystem else {
                return Err(Status::INVALID_OPCODE);
            };
            plan(cmd, export.size)
        })
        .unwrap_or(Err(Status::CMD_SEQ_ERROR))
    }

    fn execute(&mut self, cmd: Command, data: Vec<u8>, env: &Env<'_>, out: &mut Vec<Action>) {
        let Some(attached) = self.attached.clone() else {
            let reply = self.connect(&cmd, &data, env, out);
            return match &self.attached {
                // The Connect that disables SQ flow control reports an SQ head of 0xffff.
                Some(a) if a.sqhd_disabled => {
                    let qid = a.qid;
                    self.send_reply(cmd.cid(), reply, qid, u16::MAX, true, out)
                }
                _ => self.complete(&cmd, reply, env, out),
            };
        };
        if attached.qid != 0 {
            let op = self.plan_io(&cmd, env).and_then(|p| p.with_data(data));
            return match op {
                Ok(op) => {
                    self.inflight.insert(cmd.cid(), Inflight::Executing);
                    out.push(Action::Io(IoRequest { cid: cmd.cid(), op }));
                }
                Err(status) => self.complete(&cmd, Reply::err(status), env, out),
            };
        }
        // The exports are read before the registry is locked: the store behind them has locks
        // of its own, and the target is never to hold one of its locks while taking another's.
        let listing =
            if cmd.opcode() == admin::GET_LOG_PAGE && attached.key.subsys_nqn == DISCOVERY_NQN {
                env.exports.list(env.port)
            } else {
                Vec::new()
            };
        let ctx = AdminContext {
            exports: &listing,
            port: env.port,
            traddr: env.traddr,
        };
        let outcome = self.with_ctrl(env, |c| {
            c.note_traffic();
            if !cmd.is_fabrics() {
                return c.admin(&cmd, &ctx);
            }
            Outcome::Reply(match cmd.fctype() {
                fabrics::PROPERTY_GET => c.property_get(&cmd),
                fabrics::PROPERTY_SET => c.property_set(&cmd),
                _ => Reply::err(Status::INVALID_OPCODE),
            })
        });
        match outcome {
            Some(Outcome::Reply(reply)) => self.complete(&cmd, reply, env, out),
            Some(Outcome::Held) => self.poll_events(env, out),
            None => self.close(out),
        }
    }

    fn connect(
        &mut self,
        cmd: &Command,
        data: &[u8],
        env: &Env<'_>,
        out: &mut Vec<Action>,
    ) -> Reply {
        if !cmd.is_fabrics() || cmd.fctype() != fabrics::CONNECT {
            return Reply::err(Status::INVALID_OPCODE);
        }
        if cmd.sgl().length as usize != CONNECT_DATA_LEN {
            return Reply::err(Status::SGL_INVALID_DATA);
        }
        let Some(connect_data) = ConnectData::decode(data) else {
            return Reply::err(Status::SGL_INVALID_DATA);
        };
        let req = ConnectRequest {
            recfmt: (cmd.cdw(10) & 0xffff) as u16,
            qid: (cmd.cdw(10) >> 16) as u16,
            sqsize: (cmd.cdw(11) & 0xffff) as u16,
            cattr: (cmd.cdw(11) >> 16) as u8,
            kato_ms: cmd.cdw(12),
            data: connect_data,
        };
        let subsystem = Registry::subsystem(req.data.subsys_nqn, env.exports, env.port);
        let mut registry = env.registry.lock().expect("registry lock poisoned");
        match registry.connect(&req, subsystem) {
            Ok(attached) => {
                let ctrl = registry.get(&attached.key).expect("just attached");
                let export = match &ctrl.subsystem {
                    Subsystem::Nvm(e) => Some(e.clone()),
                    Subsystem::Discovery => None,
                };
                out.push(Action::Attached(Session {
                    key: attached.key.clone(),
                    qid: attached.qid,
                    host_nqn: ctrl.host_nqn.clone(),
                    export,
                    kato_secs: ctrl.kato_secs(),
                }));
                let cntlid = attached.key.cntlid;
                self.attached = Some(attached);
                Reply::ok(u64::from(cntlid))
            }
            Err(reply) => reply,
        }
    }

    /// Sends the completion (and data) of a command.
    fn complete(&mut self, cmd: &Command, reply: Reply, env: &Env<'_>, out: &mut Vec<Action>) {
        if !reply.status.is_success() {
            let sqid = self.attached.as_ref().map_or(0, |a| a.qid);
            self.with_ctrl(env, |c| c.record_error(sqid, cmd, reply.status));
        }
        self.respond(cmd.cid(), reply, out);
    }

    fn respond(&mut self, cid: u16, reply: Reply, out: &mut Vec<Action>) {
        let (sq_id, sq_head, sqhd_disabled) = match &self.attached {
            Some(a) if a.sqhd_disabled => (a.qid, 0, true),
            Some(a) => {
                self.sqhd = (self.sqhd + 1) % a.queue_size;
                (a.qid, self.sqhd, false)
            }
            None => (0, 0, false),
        };
        self.send_reply(cid, reply, sq_id, sq_head, sqhd_disabled, out);
    }

    fn send_reply(
        &mut self,
        cid: u16,
        reply: Reply,
        sq_id: u16,
        sq_head: u16,
        sqhd_disabled: bool,
        out: &mut Vec<Action>,
    ) {
        if reply.status.is_success() && !reply.data.is_empty() {
            let h = DataHeader {
                cccid: cid,
                ttag: 0,
                offset: 0,
                length: reply.data.len() as u32,
                last: true,
                // Without SQ flow control a successful transfer needs no response capsule.
                success: sqhd_disabled,
            };
            out.push(Action::Send(self.codec.c2h_data(&h, reply.data)));
            if sqhd_disabled {
                return;
            }
        }
        let cqe = Completion {
            result: reply.result,
            sq_head,
            sq_id,
            cid,
            status: reply.status,
        };
        out.push(Action::Send(self.codec.capsule_resp(&cqe.encode())));
    }

    /// A file operation finished.
    pub fn io_done(&mut self, cid: u16, result: IoResult, env: &Env<'_>, out: &mut Vec<Action>) {
        if self.state == State::Closed || self.inflight.remove(&cid).is_none() {
            return;
        }
        let reply = match result {
            IoResult::Read(data) => Reply::data(data),
            IoResult::Done => Reply::ok(0),
            IoResult::Failed => Reply::err(Status::INTERNAL),
        };
        if !reply.status.is_success() {
            let sqid = self.attached.as_ref().map_or(0, |a| a.qid);
            self.with_ctrl(env, |c| {
                c.record_error(sqid, &Command::new(0, cid), reply.status)
            });
        }
        self.respond(cid, reply, out);
    }

    /// Completes held Asynchronous Event Requests for which the controller has events.
    pub fn poll_events(&mut self, env: &Env<'_>, out: &mut Vec<Action>) {
        if self.state == State::Closed || self.attached.as_ref().is_none_or(|a| a.qid != 0) {
            return;
        }
        let ready = self
            .with_ctrl(env, |c| c.take_ready_events())
            .unwrap_or_default();
        for (cid, result) in ready {
            self.respond(cid, Reply::ok(u64::from(result)), out);
        }
    }
}

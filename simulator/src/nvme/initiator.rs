//! A small blocking NVMe/TCP host over any byte stream: the tests' and benchmarks' stand-in for
//! the Linux initiator. It issues one command at a time, or several with [`Initiator::submit`]
//! and [`Initiator::wait`].

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};

use super::command::{
    Command, Completion, ConnectData, SGL_IN_CAPSULE, SGL_TRANSPORT, Sgl, admin, fabrics, io,
};
use super::identify::INLINE_DATA_SIZE;
use super::pdu::{
    Codec, DataHeader, Decoded, Digests, IcReq, IcResp, PFV_1_0, Pdu, PduError, RecvBuffer,
};
use super::status::Status;
use super::{LBA_SHIFT, NSID};

#[derive(Debug, thiserror::Error)]
pub enum InitiatorError {
    #[error("NVMe/TCP stream failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the target sent a malformed PDU: {0}")]
    Pdu(#[from] PduError),
    #[error("the target closed the connection")]
    Closed,
    #[error("protocol violation by the target: {0}")]
    Protocol(String),
    #[error("command {cid} failed with status {status} (result {result:#x})")]
    Status {
        cid: u16,
        status: Status,
        result: u64,
    },
}

pub type Result<T> = std::result::Result<T, InitiatorError>;

/// A completed command: its completion queue entry and the data the target sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub cqe: Completion,
    pub data: Vec<u8>,
}

impl Response {
    /// Fails unless the command succeeded.
    pub fn ok(self) -> Result<Self> {
        if self.cqe.status.is_success() {
            Ok(self)
        } else {
            Err(InitiatorError::Status {
                cid: self.cqe.cid,
                status: self.cqe.status,
                result: self.cqe.result,
            })
        }
    }
}

/// Something the target sent, as the initiator saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    Completion(Completion),
    Data(DataHeader, Vec<u8>),
    R2t(super::pdu::R2t),
    Terminated { fes: u16, fei: u32 },
}

pub struct Initiator<S> {
    stream: S,
    codec: Codec,
    rb: RecvBuffer,
    /// The target's MAXH2CDATA.
    pub maxh2cdata: u32,
    /// In-capsule data limit for writes on this queue.
    pub inline_limit: usize,
    next_cid: u16,
    /// Data received for commands not yet completed.
    data: HashMap<u16, Vec<u8>>,
    /// Write data awaiting an R2T.
    writes: HashMap<u16, Vec<u8>>,
    done: VecDeque<Response>,
}

/// The parameters of a Fabrics Connect.
#[derive(Clone, Debug)]
pub struct ConnectParams<'a> {
    pub qid: u16,
    /// Queue size, 0's based.
    pub sqsize: u16,
    pub kato_ms: u32,
    pub cntlid: u16,
    pub subsys_nqn: &'a str,
    pub host_nqn: &'a str,
    pub host_id: [u8; 16],
}

impl<S: Read + Write> Initiator<S> {
    /// Sends ICReq and reads ICResp.
    pub fn handshake(stream: S, digests: Digests) -> Result<(Self, IcResp)> {
        let mut me = Self {
            stream,
            codec: Codec::initial(super::pdu::IC_LEN),
            rb: RecvBuffer::default(),
            maxh2cdata: 0,
            inline_limit: INLINE_DATA_SIZE,
            next_cid: 0,
            data: HashMap::new(),
            writes: HashMap::new(),
            done: VecDeque::new(),
        };
        let req = IcReq {
            pfv: PFV_1_0,
            hpda: 0,
            digests,
            maxr2t: 0,
        };
        me.send_bytes(&me.codec.ic_req(&req).to_bytes())?;
        let resp = me.next_pdu(|pdu| match pdu {
            Pdu::IcResp(r) => Ok(r),
            other => Err(InitiatorError::Protocol(format!(
                "expected ICResp, got {other:?}"
            ))),
        })?;
        me.maxh2cdata = resp.maxh2cdata;
        me.codec = Codec {
            digests: resp.digests,
            max_data: 64 * 1024 * 1024,
        };
        Ok((me, resp))
    }

    fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()?;
        Ok(())
    }

    /// Sends raw bytes, for tests that feed the target malformed input.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.send_bytes(bytes)
    }

    /// The underlying stream.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The codec in use, for building PDUs by hand.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    fn next_pdu<T>(&mut self, f: impl FnOnce(Pdu<'_>) -> Result<T>) -> Result<T> {
        let mut need = 8;
        loop {
            if self.rb.filled().len() >= need {
                let decoded = self.codec.decode(self.rb.filled())?;
                match decoded {
                    Decoded::Pdu(pdu, len) => {
                        let out = f(pdu);
                        self.rb.consume(len);
                        return out;
                    }
                    Decoded::NeedMore(n) => need = n,
                }
                continue;
            }
            let n = self.stream.read(self.rb.spare(need, 64 * 1024))?;
            if n == 0 {
                return Err(InitiatorError::Closed);
            }
            self.rb.commit(n);
        }
    }

    /// Reads the next PDU from the target.
    pub fn receive(&mut self) -> Result<Received> {
        self.next_pdu(|pdu| {
            Ok(match pdu {
                Pdu::CapsuleResp(cqe) => Received::Completion(Completion::decode(cqe)),
                Pdu::C2hData(h, d) => Received::Data(h, d.to_vec()),
                Pdu::R2t(r) => Received::R2t(r),
                Pdu::C2hTermReq(t) => Received::Terminated {
                    fes: t.fes,
                    fei: t.fei,
                },
                other => {
                    return Err(InitiatorError::Protocol(format!(
                        "unexpected PDU {other:?}"
                    )));
                }
            })
        })
    }

    /// A fresh command ID.
    pub fn cid(&mut self) -> u16 {
        self.next_cid = self.next_cid.wrapping_add(1);
        self.next_cid
    }

    /// Sends a command; `write` data goes in the capsule when it fits, otherwise on R2T.
    /// Returns the command ID.
    pub fn submit(&mut self, cmd: Command, write: Option<Vec<u8>>) -> Result<u16> {
        let cid = cmd.cid();
        let frame = match write {
            Some(data) if data.len() <= self.inline_limit => {
                let sgl = Sgl {
                    addr: 0,
                    length: data.len() as u32,
                    id: SGL_IN_CAPSULE,
                };
                self.codec.capsule_cmd(&cmd.with_sgl(sgl).0, data)
            }
            Some(data) => {
                let sgl = Sgl {
                    addr: 0,
                    length: data.len() as u32,
                    id: SGL_TRANSPORT,
                };
                let frame = self.codec.capsule_cmd(&cmd.with_sgl(sgl).0, Vec::new());
                self.writes.insert(cid, data);
                frame
            }
            None => self.codec.capsule_cmd(&cmd.0, Vec::new()),
        };
        self.send_bytes(&frame.to_bytes())?;
        Ok(cid)
    }

    /// Waits for command `cid` to complete, serving R2Ts and collecting data meanwhile.
    pub fn wait(&mut self, cid: u16) -> Result<Response> {
        loop {
            if let Some(i) = self.done.iter().position(|r| r.cqe.cid == cid) {
                return Ok(self.done.remove(i).expect("position is valid"));
            }
            self.pump()?;
        }
    }

    /// Handles one PDU from the target.
    pub fn pump(&mut self) -> Result<()> {
        match self.receive()? {
            Received::Completion(cqe) => {
                let data = self.data.remove(&cqe.cid).unwrap_or_default();
                self.done.push_back(Response { cqe, data });
            }
            Received::Data(h, d) => {
                let buf = self.data.entry(h.cccid).or_default();
                if h.offset as usize != buf.len() {
                    return Err(InitiatorError::Protocol(format!(
                        "C2HData for {} at offset {}, expected {}",
                        h.cccid,
                        h.offset,
                        buf.len()
                    )));
                }
                buf.extend_from_slice(&d);
                if h.success {
                    let data = self.data.remove(&h.cccid).unwrap_or_default();
                    let cqe = Completion {
                        result: 0,
                        sq_head: 0,
                        sq_id: 0,
                        cid: h.cccid,
                        status: Status::SUCCESS,
                    };
                    self.done.push_back(Response { cqe, data });
                }
            }
            Received::R2t(r) => self.send_r2t_data(&r)?,
            Received::Terminated { fes, fei } => {
                return Err(InitiatorError::Protocol(format!(
                    "target terminated the connection: FES {fes:#x}, FEI {fei:#x}"
                )));
            }
        }
        Ok(())
    }

    fn send_r2t_data(&mut self, r: &super::pdu::R2t) -> Result<()> {
        let data = self.writes.remove(&r.cccid).ok_or_else(|| {
            InitiatorError::Protocol(format!("R2T for unknown command {}", r.cccid))
        })?;
        let (start, len) = (r.offset as usize, r.length as usize);
        if start + len > data.len() {
            return Err(InitiatorError::Protocol(format!(
                "R2T beyond the data: {r:?}"
            )));
        }
        let chunk = self.maxh2cdata.max(4096) as usize;
        let mut sent = start;
        while sent < start + len {
            let n = chunk.min(start + len - sent);
            let h = DataHeader {
                cccid: r.cccid,
                ttag: r.ttag,
                offset: sent as u32,
                length: n as u32,
                last: sent + n == start + len,
                success: false,
            };
            let frame = self.codec.h2c_data(&h, data[sent..sent + n].to_vec());
            self.send_bytes(&frame.to_bytes())?;
            sent += n;
        }
        Ok(())
    }

    /// Submits and waits.
    pub fn execute(&mut self, cmd: Command, write: Option<Vec<u8>>) -> Result<Response> {
        let cid = self.submit(cmd, write)?;
        self.wait(cid)
    }

    /// Fabrics Connect; returns the completion (controller ID in dword 0).
    pub fn fabrics_connect(&mut self, p: &ConnectParams<'_>) -> Result<Response> {
        let cid = self.cid();
        let cmd = Command::fabrics(fabrics::CONNECT, cid)
            .with_cdw(10, u32::from(p.qid) << 16)
            .with_cdw(11, u32::from(p.sqsize))
            .with_cdw(12, p.kato_ms);
        let data = ConnectData {
            host_id: p.host_id,
            cntlid: p.cntlid,
            subsys_nqn: p.subsys_nqn,
            host_nqn: p.host_nqn,
        };
        self.execute(cmd, Some(data.encode()))
    }

    pub fn property_get(&mut self, offset: u32, eight_bytes: bool) -> Result<u64> {
        let cid = self.cid();
        let cmd = Command::fabrics(fabrics::PROPERTY_GET, cid)
            .with_cdw(10, u32::from(eight_bytes))
            .with_cdw(11, offset);
        Ok(self.execute(cmd, None)?.ok()?.cqe.result)
    }

    pub fn property_set(&mut self, offset: u32, value: u32) -> Result<()> {
        let cid = self.cid();
        let cmd = Command::fabrics(fabrics::PROPERTY_SET, cid)
            .with_cdw(11, offset)
            .with_cdw(12, value);
        self.execute(cmd, None)?.ok().map(drop)
    }

    /// The transport SGL for `len` bytes from the target.
    fn data_in(cmd: Command, len: usize) -> Command {
        cmd.with_sgl(Sgl {
            addr: 0,
            length: len as u32,
            id: SGL_TRANSPORT,
        })
    }

    pub fn identify(&mut self, cns: u8, nsid: u32) -> Result<Vec<u8>> {
        let cid = self.cid();
        let cmd = Command::new(admin::IDENTIFY, cid)
            .with_nsid(nsid)
            .with_cdw(10, u32::from(cns));
        Ok(self.execute(Self::data_in(cmd, 4096), None)?.ok()?.data)
    }

    pub fn get_log_page(&mut self, lid: u8, nsid: u32, len: usize) -> Result<Vec<u8>> {
        let cid = self.cid();
        let numd = (len / 4 - 1) as u32;
        let cmd = Command::new(admin::GET_LOG_PAGE, cid)
            .with_nsid(nsid)
            .with_cdw(10, u32::from(lid) | (numd << 16))
            .with_cdw(11, numd >> 16);
        Ok(self.execute(Self::data_in(cmd, len), None)?.ok()?.data)
    }

    pub fn set_features(&mut self, fid: u8, value: u32) -> Result<u32> {
        let cid = self.cid();
        let cmd = Command::new(admin::SET_FEATURES, cid)
            .with_cdw(10, u32::from(fid))
            .with_cdw(11, value);
        Ok(self.execute(cmd, None)?.ok()?.cqe.dw0())
    }

    pub fn keep_alive(&mut self) -> Result<()> {
        let cid = self.cid();
        self.execute(Command::new(admin::KEEP_ALIVE, cid), None)?
            .ok()
            .map(drop)
    }

    /// Submits an Asynchronous Event Request; wait for it with [`Self::wait`].
    pub fn submit_async_event(&mut self) -> Result<u16> {
        let cid = self.cid();
        self.submit(Command::new(admin::ASYNC_EVENT, cid), None)
    }

    /// Enables the controller the way Linux does: CC with EN clear, then set.
    pub fn enable(&mut self) -> Result<()> {
        const CC: u32 = super::controller::property::CC;
        self.property_set(CC, 0x0046_0060)?;
        self.property_set(CC, 0x0046_0061)
    }

    fn rw(opcode: u8, cid: u16, slba: u64, blocks: u32) -> Command {
        Command::new(opcode, cid)
            .with_nsid(NSID)
            .with_cdw(10, slba as u32)
            .with_cdw(11, (slba >> 32) as u32)
            .with_cdw(12, blocks - 1)
    }

    /// Submits a read of `blocks` 512-byte blocks from `slba`.
    pub fn submit_read(&mut self, slba: u64, blocks: u32) -> Result<u16> {
        let cid = self.cid();
        let len = (blocks as usize) << LBA_SHIFT;
        self.submit(
            Self::data_in(Self::rw(io::READ, cid, slba, blocks), len),
            None,
        )
    }

    /// Submits a write of `data` (whole blocks) at `slba`.
    pub fn submit_write(&mut self, slba: u64, data: Vec<u8>) -> Result<u16> {
        let cid = self.cid();
        let blocks = (data.len() >> LBA_SHIFT) as u32;
        self.submit(Self::rw(io::WRITE, cid, slba, blocks), Some(data))
    }

    pub fn read(&mut self, slba: u64, blocks: u32) -> Result<Vec<u8>> {
        let cid = self.submit_read(slba, blocks)?;
        Ok(self.wait(cid)?.ok()?.data)
    }

    pub fn write(&mut self, slba: u64, data: Vec<u8>) -> Result<()> {
        let cid = self.submit_write(slba, data)?;
        self.wait(cid)?.ok().map(drop)
    }

    pub fn flush(&mut self) -> Result<()> {
        let cid = self.cid();
        let cmd = Command::new(io::FLUSH, cid).with_nsid(NSID);
        self.execute(cmd, None)?.ok().map(drop)
    }
}

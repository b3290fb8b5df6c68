//! Submission and completion queue entries: field access by the target, construction by the
//! test initiator. Offsets follow the NVMe Base Specification 2.0 and NVMe over Fabrics 1.1.

use super::status::Status;

/// Admin command opcodes.
pub mod admin {
    pub const GET_LOG_PAGE: u8 = 0x02;
    pub const IDENTIFY: u8 = 0x06;
    pub const SET_FEATURES: u8 = 0x09;
    pub const GET_FEATURES: u8 = 0x0a;
    pub const ASYNC_EVENT: u8 = 0x0c;
    pub const KEEP_ALIVE: u8 = 0x18;
}

/// NVM command set I/O opcodes.
pub mod io {
    pub const FLUSH: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
    pub const WRITE_ZEROES: u8 = 0x08;
    pub const DSM: u8 = 0x09;
}

/// The Fabrics command opcode and its command types.
pub mod fabrics {
    pub const OPCODE: u8 = 0x7f;
    pub const PROPERTY_SET: u8 = 0x00;
    pub const CONNECT: u8 = 0x01;
    pub const PROPERTY_GET: u8 = 0x04;
}

/// SGL identifier of data carried in the command capsule (data block, offset subtype).
pub const SGL_IN_CAPSULE: u8 = 0x01;
/// SGL identifier of data moved with R2T/H2CData or C2HData (transport data block).
pub const SGL_TRANSPORT: u8 = 0x5a;

/// The SGL descriptor of a command (bytes 24..40).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sgl {
    pub addr: u64,
    pub length: u32,
    pub id: u8,
}

/// A 64-byte submission queue entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Command(pub [u8; 64]);

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Command(opc={:#04x} cid={} nsid={} cdw10={:#x})",
            self.opcode(),
            self.cid(),
            self.nsid(),
            self.cdw(10)
        )
    }
}

impl Command {
    pub fn new(opcode: u8, cid: u16) -> Self {
        let mut raw = [0u8; 64];
        raw[0] = opcode;
        raw[2..4].copy_from_slice(&cid.to_le_bytes());
        Self(raw)
    }

    /// A Fabrics command of type `fctype`.
    pub fn fabrics(fctype: u8, cid: u16) -> Self {
        let mut c = Self::new(fabrics::OPCODE, cid);
        c.0[4] = fctype;
        c
    }

    pub fn opcode(&self) -> u8 {
        self.0[0]
    }

    pub fn cid(&self) -> u16 {
        u16::from_le_bytes([self.0[2], self.0[3]])
    }

    pub fn is_fabrics(&self) -> bool {
        self.opcode() == fabrics::OPCODE
    }

    /// The Fabrics command type (byte 4, where other commands hold the namespace ID).
    pub fn fctype(&self) -> u8 {
        self.0[4]
    }

    pub fn nsid(&self) -> u32 {
        self.dword_at(4)
    }

    pub fn with_nsid(mut self, nsid: u32) -> Self {
        self.0[4..8].copy_from_slice(&nsid.to_le_bytes());
        self
    }

    /// Command dword `n` (10..=15).
    pub fn cdw(&self, n: usize) -> u32 {
        self.dword_at(Self::cdw_offset(n))
    }

    pub fn with_cdw(mut self, n: usize, v: u32) -> Self {
        let at = Self::cdw_offset(n);
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
        self
    }

    fn cdw_offset(n: usize) -> usize {
        assert!(
            (10..=15).contains(&n),
            "command dword {n} is not one of CDW10..CDW15"
        );
        40 + 4 * (n - 10)
    }

    fn dword_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }

    pub fn sgl(&self) -> Sgl {
        Sgl {
            addr: u64::from_le_bytes(self.0[24..32].try_into().expect("8 bytes")),
            length: self.dword_at(32),
            id: self.0[39],
        }
    }

    pub fn with_sgl(mut self, sgl: Sgl) -> Self {
        self.0[24..32].copy_from_slice(&sgl.addr.to_le_bytes());
        self.0[32..36].copy_from_slice(&sgl.length.to_le_bytes());
        self.0[39] = sgl.id;
        self
    }

    /// Whether the command moves data from host to controller (bit 0 of the opcode, or of the
    /// command type for Fabrics commands).
    pub fn is_host_to_controller(&self) -> bool {
        let code = if self.is_fabrics() {
            self.fctype()
        } else {
            self.opcode()
        };
        code & 1 != 0
    }
}

/// The 1024-byte data of a Fabrics Connect command.
pub struct ConnectData<'a> {
    pub host_id: [u8; 16],
    pub cntlid: u16,
    pub subsys_nqn: &'a str,
    pub host_nqn: &'a str,
}

/// Byte offsets inside Connect data (for the IATTR/IPO of a Connect Invalid Parameters status).
pub mod connect_data_offset {
    pub const CNTLID: u32 = 16;
    pub const SUBNQN: u32 = 256;
    pub const HOSTNQN: u32 = 512;
}

/// Length of Connect data.
pub const CONNECT_DATA_LEN: usize = 1024;

impl<'a> ConnectData<'a> {
    pub fn encode(&self) -> Vec<u8> {
        let mut d = vec![0u8; CONNECT_DATA_LEN];
        d[0..16].copy_from_slice(&self.host_id);
        d[16..18].copy_from_slice(&self.cntlid.to_le_bytes());
        put_str(&mut d[256..512], self.subsys_nqn);
        put_str(&mut d[512..768], self.host_nqn);
        d
    }

    /// Parses Connect data; NQNs end at the first NUL. `None` when `d` is too short.
    pub fn decode(d: &'a [u8]) -> Option<Self> {
        if d.len() < CONNECT_DATA_LEN {
            return None;
        }
        Some(Self {
            host_id: d[0..16].try_into().ok()?,
            cntlid: u16::from_le_bytes([d[16], d[17]]),
            subsys_nqn: nul_terminated(&d[256..512]),
            host_nqn: nul_terminated(&d[512..768]),
        })
    }
}

fn put_str(field: &mut [u8], s: &str) {
    let n = s.len().min(field.len() - 1);
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
}

fn nul_terminated(field: &[u8]) -> &str {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end]).unwrap_or("")
}

/// A completion queue entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Dwords 0 and 1.
    pub result: u64,
    pub sq_head: u16,
    pub sq_id: u16,
    pub cid: u16,
    pub status: Status,
}

impl Completion {
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.result.to_le_bytes());
        b[8..10].copy_from_slice(&self.sq_head.to_le_bytes());
        b[10..12].copy_from_slice(&self.sq_id.to_le_bytes());
        b[12..14].copy_from_slice(&self.cid.to_le_bytes());
        b[14..16].copy_from_slice(&self.status.wire().to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; 16]) -> Self {
        Self {
            result: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            sq_head: u16::from_le_bytes([b[8], b[9]]),
            sq_id: u16::from_le_bytes([b[10], b[11]]),
            cid: u16::from_le_bytes([b[12], b[13]]),
            status: Status::from_wire(u16::from_le_bytes([b[14], b[15]])),
        }
    }

    pub fn dw0(&self) -> u32 {
        self.result as u32
    }

    pub fn dw1(&self) -> u32 {
        (self.result >> 32) as u32
    }
}

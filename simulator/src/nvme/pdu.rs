//! The NVMe/TCP PDU codec (NVMe/TCP Transport Specification 1.0, section 3.6): pure byte work, no
//! sockets. Decoding never panics: short input asks for more bytes, malformed input is a typed error.

use std::fmt;

/// PDU types (the first byte of every PDU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PduType {
    IcReq = 0x00,
    IcResp = 0x01,
    H2cTermReq = 0x02,
    C2hTermReq = 0x03,
    CapsuleCmd = 0x04,
    CapsuleResp = 0x05,
    H2cData = 0x06,
    C2hData = 0x07,
    R2t = 0x09,
}

impl PduType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x00 => Self::IcReq,
            0x01 => Self::IcResp,
            0x02 => Self::H2cTermReq,
            0x03 => Self::C2hTermReq,
            0x04 => Self::CapsuleCmd,
            0x05 => Self::CapsuleResp,
            0x06 => Self::H2cData,
            0x07 => Self::C2hData,
            0x09 => Self::R2t,
            _ => return None,
        })
    }

    /// The fixed header length (HLEN) of this type.
    pub fn hlen(self) -> usize {
        match self {
            Self::IcReq | Self::IcResp => IC_LEN,
            Self::CapsuleCmd => CAPSULE_CMD_HLEN,
            _ => 24,
        }
    }

    /// Whether header and data digests apply to this type once negotiated (not to the
    /// connection setup and termination PDUs).
    fn digested(self) -> bool {
        !matches!(
            self,
            Self::IcReq | Self::IcResp | Self::H2cTermReq | Self::C2hTermReq
        )
    }

    fn carries_data(self) -> bool {
        matches!(self, Self::CapsuleCmd | Self::H2cData | Self::C2hData)
    }
}

/// Length of ICReq and ICResp.
pub const IC_LEN: usize = 128;
/// Header length of a command capsule: 8-byte common header and the 64-byte SQE.
pub const CAPSULE_CMD_HLEN: usize = 72;
const TERM_HLEN: usize = 24;
/// A termination request carries at most this many bytes of the offending PDU header.
pub const TERM_MAX_DATA: usize = 128;

const FLAG_HDGST: u8 = 0x01;
const FLAG_DDGST: u8 = 0x02;
const FLAG_DATA_LAST: u8 = 0x04;
const FLAG_DATA_SUCCESS: u8 = 0x08;
const DIGEST_LEN: usize = 4;

/// NVMe/TCP protocol format version 1.0.
pub const PFV_1_0: u16 = 0;

/// Which digests a connection negotiated in ICReq/ICResp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digests {
    pub header: bool,
    pub data: bool,
}

impl Digests {
    fn from_bits(v: u8) -> Self {
        Self {
            header: v & 1 != 0,
            data: v & 2 != 0,
        }
    }

    fn bits(self) -> u8 {
        u8::from(self.header) | (u8::from(self.data) << 1)
    }
}

/// Initialize Connection Request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcReq {
    pub pfv: u16,
    pub hpda: u8,
    pub digests: Digests,
    pub maxr2t: u32,
}

/// Initialize Connection Response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcResp {
    pub pfv: u16,
    pub cpda: u8,
    pub digests: Digests,
    pub maxh2cdata: u32,
}

/// Fatal error status of a termination request (section 3.6.2.4, 3.6.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fes {
    InvalidHeaderField = 1,
    SequenceError = 2,
    HeaderDigest = 3,
    DataOutOfRange = 4,
    /// An H2CData PDU larger than MAXH2CDATA.
    DataLimitExceeded = 5,
    UnsupportedParameter = 6,
}

/// H2CTermReq or C2HTermReq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermReq<'a> {
    pub fes: u16,
    pub fei: u32,
    pub data: &'a [u8],
}

/// The header of H2CData and C2HData.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHeader {
    pub cccid: u16,
    pub ttag: u16,
    pub offset: u32,
    pub length: u32,
    pub last: bool,
    pub success: bool,
}

/// Ready to Transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct R2t {
    pub cccid: u16,
    pub ttag: u16,
    pub offset: u32,
    pub length: u32,
}

/// One decoded PDU, borrowing its payload from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pdu<'a> {
    IcReq(IcReq),
    IcResp(IcResp),
    H2cTermReq(TermReq<'a>),
    C2hTermReq(TermReq<'a>),
    CapsuleCmd { sqe: &'a [u8; 64], data: &'a [u8] },
    CapsuleResp(&'a [u8; 16]),
    H2cData(DataHeader, &'a [u8]),
    C2hData(DataHeader, &'a [u8]),
    R2t(R2t),
}

/// The result of decoding the front of a byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole PDU and the number of bytes it took.
    Pdu(Pdu<'a>, usize),
    /// The input holds only part of a PDU: at least this many bytes are needed in total.
    NeedMore(usize),
}

/// A malformed PDU. Every variant is fatal to the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("unknown PDU type {0:#04x}")]
    UnknownType(u8),
    #[error("{kind:?} PDU has header length {got}, the specification fixes {expected}")]
    HeaderLength {
        kind: PduType,
        got: u8,
        expected: usize,
    },
    #[error("{kind:?} PDU length {plen} does not fit its header and digests")]
    Length { kind: PduType, plen: u32 },
    #[error("{kind:?} PDU of {plen} bytes exceeds this connection's limit of {limit}")]
    TooLarge {
        kind: PduType,
        plen: u32,
        limit: usize,
    },
    #[error("{kind:?} PDU data offset {pdo} lies outside the PDU of {plen} bytes")]
    DataOffset { kind: PduType, pdo: u8, plen: u32 },
    #[error("{kind:?} PDU digest flags {flags:#04x} disagree with the negotiated digests")]
    DigestFlags { kind: PduType, flags: u8 },
    #[error(
        "header digest mismatch: PDU carries {received:#010x}, header hashes to {computed:#010x}"
    )]
    HeaderDigest { received: u32, computed: u32 },
    #[error("data digest mismatch: PDU carries {received:#010x}, data hashes to {computed:#010x}")]
    DataDigest { received: u32, computed: u32 },
    #[error("{kind:?} PDU says {field} data bytes but carries {actual}")]
    DataLength {
        kind: PduType,
        field: u32,
        actual: usize,
    },
}

impl PduError {
    /// The fatal error status and information a C2HTermReq reports for this error, or `None`
    /// when the connection is closed without one (data digest errors, as nvmet does).
    pub fn termination(&self) -> Option<(Fes, u32)> {
        match self {
            Self::UnknownType(_) => Some((Fes::InvalidHeaderField, 0)),
            Self::HeaderLength { .. } => Some((Fes::InvalidHeaderField, 2)),
            Self::TooLarge {
                kind: PduType::H2cData,
                ..
            } => Some((Fes::DataLimitExceeded, 0)),
            Self::Length { .. } | Self::TooLarge { .. } => Some((Fes::InvalidHeaderField, 4)),
            Self::DataOffset { .. } => Some((Fes::InvalidHeaderField, 3)),
            Self::DigestFlags { .. } => Some((Fes::InvalidHeaderField, 1)),
            Self::HeaderDigest { .. } => Some((Fes::HeaderDigest, 0)),
            Self::DataLength { .. } => Some((Fes::InvalidHeaderField, 16)),
            Self::DataDigest { .. } => None,
        }
    }
}

/// Bytes ready for the wire. The payload stays a separate buffer so large reads are never
/// copied into a header buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub header: Vec<u8>,
    pub data: Vec<u8>,
    pub data_digest: Option<[u8; 4]>,
}

impl Frame {
    pub fn wire_len(&self) -> usize {
        self.header.len() + self.data.len() + self.data_digest.map_or(0, |d| d.len())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.wire_len());
        v.extend_from_slice(&self.header);
        v.extend_from_slice(&self.data);
        if let Some(d) = self.data_digest {
            v.extend_from_slice(&d);
        }
        v
    }
}

/// Per-connection codec settings: negotiated digests and the largest payload accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    pub digests: Digests,
    /// Largest data section a received PDU may carry.
    pub max_data: usize,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Codec {
    /// The codec before ICReq/ICResp: no digests.
    pub fn initial(max_data: usize) -> Self {
        Self {
            digests: Digests::default(),
            max_data,
        }
    }

    fn header_digest_len(&self, kind: PduType) -> usize {
        if kind.digested() && self.digests.header {
            DIGEST_LEN
        } else {
            0
        }
    }

    /// Decodes the PDU at the front of `buf`.
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<Decoded<'a>, PduError> {
        if buf.len() < 8 {
            return Ok(Decoded::NeedMore(8));
        }
        let kind = PduType::from_u8(buf[0]).ok_or(PduError::UnknownType(buf[0]))?;
        let flags = buf[1];
        let hlen = usize::from(buf[2]);
        let pdo = usize::from(buf[3]);
        let plen32 = le32(buf, 4);
        let plen = plen32 as usize;
        if hlen != kind.hlen() {
            return Err(PduError::HeaderLength {
                kind,
                got: buf[2],
                expected: kind.hlen(),
            });
        }
        let hdgst = self.header_digest_len(kind);
        if kind.digested() && (flags & FLAG_HDGST != 0) != (hdgst != 0) {
            return Err(PduError::DigestFlags { kind, flags });
        }
        let fixed = hlen + hdgst;
        let limit = match kind {
            PduType::IcReq | PduType::IcResp => IC_LEN,
            PduType::H2cTermReq | PduType::C2hTermReq => TERM_HLEN + TERM_MAX_DATA,
            k if k.carries_data() => fixed + self.max_data + DIGEST_LEN,
            _ => fixed,
        };
        if plen < fixed || (matches!(kind, PduType::IcReq | PduType::IcResp) && plen != IC_LEN) {
            return Err(PduError::Length { kind, plen: plen32 });
        }
        if plen > limit {
            return Err(PduError::TooLarge {
                kind,
                plen: plen32,
                limit,
            });
        }
        if buf.len() < plen {
            return Ok(Decoded::NeedMore(plen));
        }
        let pdu = &buf[..plen];
        if hdgst != 0 {
            let received = le32(pdu, hlen);
            let computed = crc32c::crc32c(&pdu[..hlen]);
            if received != computed {
                return Err(PduError::HeaderDigest { received, computed });
            }
        }
        let data = if kind.carries_data() && plen > fixed {
            let ddgst = if self.digests.data { DIGEST_LEN } else { 0 };
            if (flags & FLAG_DDGST != 0) != (ddgst != 0) {
                return Err(PduError::DigestFlags { kind, flags });
            }
            if pdo < fixed || pdo + ddgst > plen {
                return Err(PduError::DataOffset {
                    kind,
                    pdo: buf[3],
                    plen: plen32,
                });
            }
            let data = &pdu[pdo..plen - ddgst];
            if ddgst != 0 {
                let received = le32(pdu, plen - ddgst);
                let computed = crc32c::crc32c(data);
                if received != computed {
                    return Err(PduError::DataDigest { received, computed });
                }
            }
            data
        } else if kind.carries_data() || plen == fixed {
            &[][..]
        } else if matches!(kind, PduType::H2cTermReq | PduType::C2hTermReq) {
            &pdu[fixed..]
        } else {
            return Err(PduError::Length { kind, plen: plen32 });
        };
        Ok(Decoded::Pdu(parse(kind, flags, pdu, data)?, plen))
    }

    fn frame(&self, kind: PduType, flags: u8, specific: &[u8], data: Vec<u8>) -> Frame {
        let hlen = kind.hlen();
        let hdgst = self.header_digest_len(kind);
        let ddgst = kind.digested() && self.digests.data && !data.is_empty();
        let mut flags = flags;
        if hdgst != 0 {
            flags |= FLAG_HDGST;
        }
        if ddgst {
            flags |= FLAG_DDGST;
        }
        let pdo = if data.is_empty() || !kind.carries_data() {
            0
        } else {
            hlen + hdgst
        };
        let plen = hlen + hdgst + data.len() + if ddgst { DIGEST_LEN } else { 0 };
        let mut header = Vec::with_capacity(hlen + hdgst);
        header.extend_from_slice(&[kind as u8, flags, hlen as u8, pdo as u8]);
        header.extend_from_slice(&(plen as u32).to_le_bytes());
        header.extend_from_slice(specific);
        header.resize(hlen, 0);
        if hdgst != 0 {
            let d = crc32c::crc32c(&header);
            header.extend_from_slice(&d.to_le_bytes());
        }
        let data_digest = ddgst.then(|| crc32c::crc32c(&data).to_le_bytes());
        Frame {
            header,
            data,
            data_digest,
        }
    }

    pub fn ic_req(&self, r: &IcReq) -> Frame {
        let mut s = [0u8; 8];
        s[0..2].copy_from_slice(&r.pfv.to_le_bytes());
        s[2] = r.hpda;
        s[3] = r.digests.bits();
        s[4..8].copy_from_slice(&r.maxr2t.to_le_bytes());
        self.frame(PduType::IcReq, 0, &s, Vec::new())
    }

    pub fn ic_resp(&self, r: &IcResp) -> Frame {
        let mut s = [0u8; 8];
        s[0..2].copy_from_slice(&r.pfv.to_le_bytes());
        s[2] = r.cpda;
        s[3] = r.digests.bits();
        s[4..8].copy_from_slice(&r.maxh2cdata.to_le_bytes());
        self.frame(PduType::IcResp, 0, &s, Vec::new())
    }

    /// A termination request carrying (a prefix of) the offending header.
    pub fn term_req(&self, kind: PduType, fes: Fes, fei: u32, offending: &[u8]) -> Frame {
        let mut s = [0u8; 6];
        s[0..2].copy_from_slice(&(fes as u16).to_le_bytes());
        s[2..6].copy_from_slice(&fei.to_le_bytes());
        let mut f = self.frame(kind, 0, &s, Vec::new());
        let extra = &offending[..offending.len().min(TERM_MAX_DATA)];
        f.header.extend_from_slice(extra);
        let plen = (TERM_HLEN + extra.len()) as u32;
        f.header[4..8].copy_from_slice(&plen.to_le_bytes());
        f
    }

    pub fn capsule_cmd(&self, sqe: &[u8; 64], data: Vec<u8>) -> Frame {
        self.frame(PduType::CapsuleCmd, 0, sqe, data)
    }

    pub fn capsule_resp(&self, cqe: &[u8; 16]) -> Frame {
        self.frame(PduType::CapsuleResp, 0, cqe, Vec::new())
    }

    fn data_pdu(&self, kind: PduType, h: &DataHeader, data: Vec<u8>) -> Frame {
        let mut s = [0u8; 16];
        s[0..2].copy_from_slice(&h.cccid.to_le_bytes());
        s[2..4].copy_from_slice(&h.ttag.to_le_bytes());
        s[4..8].copy_from_slice(&h.offset.to_le_bytes());
        s[8..12].copy_from_slice(&h.length.to_le_bytes());
        let mut flags = 0;
        if h.last {
            flags |= FLAG_DATA_LAST;
        }
        if h.success {
            flags |= FLAG_DATA_SUCCESS;
        }
        self.frame(kind, flags, &s, data)
    }

    pub fn h2c_data(&self, h: &DataHeader, data: Vec<u8>) -> Frame {
        self.data_pdu(PduType::H2cData, h, data)
    }

    pub fn c2h_data(&self, h: &DataHeader, data: Vec<u8>) -> Frame {
        self.data_pdu(PduType::C2hData, h, data)
    }

    pub fn r2t(&self, r: &R2t) -> Frame {
        let mut s = [0u8; 16];
        s[0..2].copy_from_slice(&r.cccid.to_le_bytes());
        s[2..4].copy_from_slice(&r.ttag.to_le_bytes());
        s[4..8].copy_from_slice(&r.offset.to_le_bytes());
        s[8..12].copy_from_slice(&r.length.to_le_bytes());
        self.frame(PduType::R2t, 0, &s, Vec::new())
    }
}

fn parse<'a>(kind: PduType, flags: u8, pdu: &'a [u8], data: &'a [u8]) -> Result<Pdu<'a>, PduError> {
    let data_header = || {
        let h = DataHeader {
            cccid: le16(pdu, 8),
            ttag: le16(pdu, 10),
            offset: le32(pdu, 12),
            length: le32(pdu, 16),
            last: flags & FLAG_DATA_LAST != 0,
            success: flags & FLAG_DATA_SUCCESS != 0,
        };
        if h.length as usize != data.len() {
            return Err(PduError::DataLength {
                kind,
                field: h.length,
                actual: data.len(),
            });
        }
        Ok(h)
    };
    let term = || TermReq {
        fes: le16(pdu, 8),
        fei: le32(pdu, 10),
        data,
    };
    Ok(match kind {
        PduType::IcReq => Pdu::IcReq(IcReq {
            pfv: le16(pdu, 8),
            hpda: pdu[10],
            digests: Digests::from_bits(pdu[11]),
            maxr2t: le32(pdu, 12),
        }),
        PduType::IcResp => Pdu::IcResp(IcResp {
            pfv: le16(pdu, 8),
            cpda: pdu[10],
            digests: Digests::from_bits(pdu[11]),
            maxh2cdata: le32(pdu, 12),
        }),
        PduType::H2cTermReq => Pdu::H2cTermReq(term()),
        PduType::C2hTermReq => Pdu::C2hTermReq(term()),
        PduType::CapsuleCmd => Pdu::CapsuleCmd {
            sqe: pdu[8..72].try_into().expect("header length checked"),
            data,
        },
        PduType::CapsuleResp => {
            Pdu::CapsuleResp(pdu[8..24].try_into().expect("header length checked"))
        }
        PduType::H2cData => Pdu::H2cData(data_header()?, data),
        PduType::C2hData => Pdu::C2hData(data_header()?, data),
        PduType::R2t => Pdu::R2t(R2t {
            cccid: le16(pdu, 8),
            ttag: le16(pdu, 10),
            offset: le32(pdu, 12),
            length: le32(pdu, 16),
        }),
    })
}

/// A receive buffer for a byte stream of PDUs: the reader appends at the end, the decoder
/// consumes from the front.
#[derive(Default)]
pub struct RecvBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RecvBuffer {
    /// The received bytes not yet consumed.
    pub fn filled(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space to read into, large enough that the buffer can hold `total` unconsumed bytes
    /// and at least `chunk` bytes more than it holds now.
    pub fn spare(&mut self, total: usize, chunk: usize) -> &mut [u8] {
        let held = self.end - self.start;
        let want = total.max(held + chunk);
        if self.start > 0 && self.start + want > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = held;
        }
        if self.start + want > self.buf.len() {
            self.buf.resize(self.start + want, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of the spare space as received.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }
}

impl fmt::Debug for RecvBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecvBuffer({} bytes held)", self.end - self.start)
    }
}

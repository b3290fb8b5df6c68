//! NVMe completion status values (NVMe Base Specification 2.0, section 4.6.1.2), kept as Linux
//! writes them: status code type in bits 10:8, status code in bits 7:0, Do Not Retry in bit 14.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(u16);

const DNR: u16 = 0x4000;

impl Status {
    pub const SUCCESS: Self = Self(0);
    pub const INVALID_OPCODE: Self = Self(0x01 | DNR);
    pub const INVALID_FIELD: Self = Self(0x02 | DNR);
    pub const INTERNAL: Self = Self(0x06 | DNR);
    pub const INVALID_NS: Self = Self(0x0b | DNR);
    pub const CMD_SEQ_ERROR: Self = Self(0x0c | DNR);
    pub const SGL_INVALID_DATA: Self = Self(0x0f | DNR);
    pub const SGL_INVALID_OFFSET: Self = Self(0x16 | DNR);
    pub const LBA_RANGE: Self = Self(0x80 | DNR);
    pub const INVALID_QID: Self = Self(0x101 | DNR);
    pub const ASYNC_LIMIT: Self = Self(0x105 | DNR);
    pub const CONNECT_FORMAT: Self = Self(0x180 | DNR);
    pub const CONNECT_INVALID_PARAM: Self = Self(0x182 | DNR);
    pub const CONNECT_INVALID_HOST: Self = Self(0x184 | DNR);

    /// From the 16-bit status word of a completion queue entry (bit 0 is the phase tag).
    pub fn from_wire(word: u16) -> Self {
        Self(word >> 1)
    }

    /// The 16-bit status word of a completion queue entry, phase tag clear.
    pub fn wire(self) -> u16 {
        self.0 << 1
    }

    pub fn is_success(self) -> bool {
        self.sct() == 0 && self.sc() == 0
    }

    /// Status Code Type.
    pub fn sct(self) -> u8 {
        ((self.0 >> 8) & 0x7) as u8
    }

    /// Status Code.
    pub fn sc(self) -> u8 {
        (self.0 & 0xff) as u8
    }

    /// Do Not Retry.
    pub fn dnr(self) -> bool {
        self.0 & DNR != 0
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sct{}/sc{:#04x}{}",
            self.sct(),
            self.sc(),
            if self.dnr() { " dnr" } else { "" }
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

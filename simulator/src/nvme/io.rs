//! NVM command set I/O commands turned into bounded file operations. Every byte range this
//! module produces lies inside the namespace: that check is the only thing standing between a
//! host and the rest of the backing file.

use super::command::{Command, io};
use super::status::Status;
use super::{LBA_SHIFT, NSID};

/// A file operation on the namespace's backing file, in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoOp {
    Read {
        offset: u64,
        len: usize,
    },
    Write {
        offset: u64,
        data: Vec<u8>,
    },
    Flush,
    WriteZeroes {
        offset: u64,
        len: u64,
    },
    /// Deallocate these (offset, length) ranges; none for a hint-only Dataset Management.
    Deallocate {
        ranges: Vec<(u64, u64)>,
    },
}

impl IoOp {
    /// The byte ranges (offset, length) the operation touches.
    pub fn extents(&self) -> Vec<(u64, u64)> {
        match self {
            Self::Read { offset, len } => vec![(*offset, *len as u64)],
            Self::Write { offset, data } => vec![(*offset, data.len() as u64)],
            Self::WriteZeroes { offset, len } => vec![(*offset, *len)],
            Self::Deallocate { ranges } => ranges.clone(),
            Self::Flush => Vec::new(),
        }
    }
}

/// A validated I/O command that may still need its data from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoPlan {
    Read {
        offset: u64,
        len: usize,
    },
    Write {
        offset: u64,
        len: usize,
    },
    Flush,
    WriteZeroes {
        offset: u64,
        len: u64,
    },
    Dsm {
        ranges: usize,
        deallocate: bool,
        blocks: u64,
    },
}

const DSM_RANGE_LEN: usize = 16;
const DSM_ATTR_DEALLOCATE: u32 = 1 << 2;

fn expect_transfer(cmd: &Command, len: usize) -> Result<(), Status> {
    if cmd.sgl().length as usize == len {
        Ok(())
    } else {
        Err(Status::SGL_INVALID_DATA)
    }
}

/// The byte range of `nlb` blocks from `slba`, if it lies within `blocks`.
fn byte_range(slba: u64, nlb: u64, blocks: u64) -> Result<(u64, u64), Status> {
    match slba.checked_add(nlb) {
        Some(end) if end <= blocks => Ok((slba << LBA_SHIFT, nlb << LBA_SHIFT)),
        _ => Err(Status::LBA_RANGE),
    }
}

/// Checks an I/O command against a namespace of `ns_bytes`, in nvmet's order: namespace,
/// opcode, transfer length, LBA range.
pub fn plan(cmd: &Command, ns_bytes: u64) -> Result<IoPlan, Status> {
    if cmd.nsid() != NSID {
        return Err(Status::INVALID_NS);
    }
    let blocks = ns_bytes >> LBA_SHIFT;
    let slba = u64::from(cmd.cdw(10)) | (u64::from(cmd.cdw(11)) << 32);
    let nlb = u64::from(cmd.cdw(12) & 0xffff) + 1;
    match cmd.opcode() {
        io::READ | io::WRITE => {
            let len = (nlb << LBA_SHIFT) as usize;
            expect_transfer(cmd, len)?;
            let (offset, _) = byte_range(slba, nlb, blocks)?;
            Ok(if cmd.opcode() == io::READ {
                IoPlan::Read { offset, len }
            } else {
                IoPlan::Write { offset, len }
            })
        }
        io::FLUSH => {
            expect_transfer(cmd, 0)?;
            Ok(IoPlan::Flush)
        }
        io::WRITE_ZEROES => {
            expect_transfer(cmd, 0)?;
            let (offset, len) = byte_range(slba, nlb, blocks)?;
            Ok(IoPlan::WriteZeroes { offset, len })
        }
        io::DSM => {
            let ranges = (cmd.cdw(10) & 0xff) as usize + 1;
            // Linux sends room for all 256 ranges whatever NR says; nvmet accepts any transfer
            // that holds the ranges and reads only those.
            if (cmd.sgl().length as usize) < ranges * DSM_RANGE_LEN {
                return Err(Status::SGL_INVALID_DATA);
            }
            Ok(IoPlan::Dsm {
                ranges,
                deallocate: cmd.cdw(11) == DSM_ATTR_DEALLOCATE,
                blocks,
            })
        }
        _ => Err(Status::INVALID_OPCODE),
    }
}

impl IoPlan {
    /// Completes the plan with the data the host sent (empty for commands without any).
    pub fn with_data(self, data: Vec<u8>) -> Result<IoOp, Status> {
        match self {
            Self::Read { offset, len } => Ok(IoOp::Read { offset, len }),
            Self::Write { offset, len } if data.len() == len => Ok(IoOp::Write { offset, data }),
            Self::Write { .. } => Err(Status::SGL_INVALID_DATA),
            Self::Flush => Ok(IoOp::Flush),
            Self::WriteZeroes { offset, len } => Ok(IoOp::WriteZeroes { offset, len }),
            Self::Dsm {
                ranges,
                deallocate,
                blocks,
            } => {
                if data.len() < ranges * DSM_RANGE_LEN {
                    return Err(Status::SGL_INVALID_DATA);
                }
                if !deallocate {
                    return Ok(IoOp::Deallocate { ranges: Vec::new() });
                }
                let mut out = Vec::with_capacity(ranges);
                for r in data[..ranges * DSM_RANGE_LEN].chunks_exact(DSM_RANGE_LEN) {
                    let nlb = u64::from(u32::from_le_bytes(r[4..8].try_into().expect("4 bytes")));
                    let slba = u64::from_le_bytes(r[8..16].try_into().expect("8 bytes"));
                    let range = byte_range(slba, nlb, blocks)?;
                    if nlb > 0 {
                        out.push(range);
                    }
                }
                Ok(IoOp::Deallocate { ranges: out })
            }
        }
    }
}

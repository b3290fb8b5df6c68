//! File operations on a namespace's backing file: positioned reads and writes, so queues never
//! share a file cursor. Runs on blocking threads. The ranges come from [`super::io`], which
//! keeps them inside the namespace.

use std::fs::File;
use std::os::unix::fs::FileExt;

use rustix::fs::{FallocateFlags, fallocate};

use super::io::IoOp;
use super::queue::IoResult;

/// Zeroes written per call when the file system cannot zero a range itself.
const ZERO_CHUNK: u64 = 1 << 20;

pub fn perform(file: &File, op: IoOp) -> IoResult {
    let done = match op {
        IoOp::Read { offset, len } => return read(file, offset, len),
        IoOp::Write { offset, data } => file.write_all_at(&data, offset),
        IoOp::Flush => file.sync_data(),
        IoOp::WriteZeroes { offset, len } => zero(file, offset, len),
        IoOp::Deallocate { ranges } => {
            // Deallocation is advisory: a file system without hole punching keeps the data.
            for (offset, len) in ranges {
                let _ = fallocate(file, punch_hole(), offset, len);
            }
            Ok(())
        }
    };
    match done {
        Ok(()) => IoResult::Done,
        Err(e) => {
            tracing::warn!(error = %e, "NVMe namespace file operation failed");
            IoResult::Failed
        }
    }
}

/// Reads `len` bytes; the part past the end of a short (sparse) file reads as zeroes.
fn read(file: &File, offset: u64, len: usize) -> IoResult {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, offset, len, "NVMe namespace read failed");
                return IoResult::Failed;
            }
        }
    }
    IoResult::Read(buf)
}

fn punch_hole() -> FallocateFlags {
    FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE
}

fn zero(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    let zero_range = FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE;
    if fallocate(file, zero_range, offset, len).is_ok()
        || fallocate(file, punch_hole(), offset, len).is_ok()
    {
        return Ok(());
    }
    let zeroes = vec![0u8; ZERO_CHUNK.min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = ZERO_CHUNK.min(len - done) as usize;
        file.write_all_at(&zeroes[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

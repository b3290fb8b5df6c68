//! Data copies for `copy-from`: a reflink (FICLONE) where the file system supports it, else a copy
//! that keeps holes, so a mostly-empty 1 GiB disk does not become 1 GiB of zeros.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// What `/disk add copy-from=` does with a file disk. RouterOS documents `copy-from` only as
/// "copy this item's settings"; the roadmap assumes a data copy. Both are modeled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CopySemantics {
    /// An independent copy of the data, not exported unless asked (the roadmap's assumption).
    #[default]
    Data,
    /// A new empty file of the same size that inherits export, port, NQN and comment.
    Settings,
}

impl std::str::FromStr for CopySemantics {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "data" => Ok(CopySemantics::Data),
            "settings" => Ok(CopySemantics::Settings),
            _ => Err(format!(
                "copy-from semantics must be data or settings, not {s:?}"
            )),
        }
    }
}

const CHUNK: usize = 1 << 20;

pub fn clone_or_copy(src: &Path, dst: &Path) -> io::Result<()> {
    let from = File::open(src)?;
    let to = File::create_new(dst)?;
    // SAFETY: FICLONE takes two open file descriptors and touches no memory of ours.
    let rc = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) };
    if rc == 0 {
        return Ok(());
    }
    sparse_copy(from, to)
}

/// Copies only the data extents (SEEK_DATA/SEEK_HOLE), so holes stay holes and are never read.
fn sparse_copy(mut from: File, mut to: File) -> io::Result<()> {
    let len = from.metadata()?.len();
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < len {
        let Some(start) = seek_data(&from, off)? else {
            break;
        };
        let end = seek_hole(&from, start)?.min(len);
        from.seek(SeekFrom::Start(start))?;
        to.seek(SeekFrom::Start(start))?;
        let mut pos = start;
        while pos < end {
            let n = ((end - pos) as usize).min(CHUNK);
            from.read_exact(&mut buf[..n])?;
            to.write_all(&buf[..n])?;
            pos += n as u64;
        }
        off = end;
    }
    to.set_len(len)
}

fn lseek(f: &File, off: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    // SAFETY: lseek on an open descriptor; no memory is passed.
    let r = unsafe { libc::lseek(f.as_raw_fd(), off as libc::off_t, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(e)
    }
}

fn seek_data(f: &File, off: u64) -> io::Result<Option<u64>> {
    lseek(f, off, libc::SEEK_DATA)
}

fn seek_hole(f: &File, off: u64) -> io::Result<u64> {
    Ok(lseek(f, off, libc::SEEK_HOLE)?.unwrap_or(off))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copy_is_independent_and_keeps_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.img");
        let dst = dir.path().join("b.img");
        let f = File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        let mut f = f;
        f.seek(SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(b"pattern").unwrap();
        drop(f);
        clone_or_copy(&src, &dst).unwrap();
        let data = std::fs::read(&dst).unwrap();
        assert_eq!(data.len(), 64 << 20);
        assert_eq!(&data[5 << 20..(5 << 20) + 7], b"pattern");
        // Allocated blocks stay far below the apparent size (a reflink or a hole-keeping copy).
        assert!(std::fs::metadata(&dst).unwrap().blocks() * 512 < 8 << 20);
        // Writing to the copy leaves the source alone.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&dst)
            .unwrap()
            .write_all(b"XXXX")
            .unwrap();
        assert_eq!(&std::fs::read(&src).unwrap()[..4], &[0, 0, 0, 0]);
    }
}

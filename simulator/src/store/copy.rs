//! Data copies for `copy-from`: a reflink (FICLONE) where the file system supports it, else a copy
//! that keeps holes, so a mostly-empty 1 GiB disk does not become 1 GiB of zeros.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
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

/// Copies `len` bytes of `src` from `src_off` into `dst` at `dst_off`, as a block copy does: the
/// range of `dst` ends up equal to the range of `src`. Data extents are read and written; holes of
/// `src` become holes in `dst` (punched, so old data there is gone) instead of written zeros.
/// Works in pieces of at most `piece` bytes and calls `progress` with the bytes done after each;
/// when it answers `false` the copy stops there. Returns whether it ran to the end.
pub fn copy_range(
    src: &File,
    dst: &File,
    (src_off, dst_off, len): (u64, u64, u64),
    piece: u64,
    progress: &mut dyn FnMut(u64) -> bool,
) -> io::Result<bool> {
    let piece = piece.max(1);
    let mut buf = vec![0u8; piece.min(CHUNK as u64) as usize];
    let mut done = 0u64;
    while done < len {
        let at = src_off + done;
        let data_at = seek_data(src, at)?.unwrap_or(src_off + len);
        let (is_data, extent_end) = if data_at > at {
            (false, data_at)
        } else {
            (true, seek_hole(src, at)?)
        };
        let n = extent_end
            .min(src_off + len)
            .saturating_sub(at)
            .clamp(1, piece);
        if is_data {
            let mut copied = 0u64;
            while copied < n {
                let m = (n - copied).min(buf.len() as u64) as usize;
                src.read_exact_at(&mut buf[..m], at + copied)?;
                dst.write_all_at(&buf[..m], dst_off + done + copied)?;
                copied += m as u64;
            }
        } else {
            zero_range(dst, dst_off + done, n, &mut buf)?;
        }
        done += n;
        if !progress(done) {
            return Ok(done == len);
        }
    }
    Ok(true)
}

/// Makes a range of `f` read as zeros: a punched hole, or written zeros where the file system
/// cannot punch.
fn zero_range(f: &File, off: u64, len: u64, buf: &mut [u8]) -> io::Result<()> {
    // SAFETY: fallocate on an open descriptor; no memory is passed.
    let rc = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    buf.fill(0);
    let mut written = 0u64;
    while written < len {
        let m = (len - written).min(buf.len() as u64) as usize;
        f.write_all_at(&buf[..m], off + written)?;
        written += m as u64;
    }
    Ok(())
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

    #[test]
    fn copy_range_makes_the_range_equal_and_keeps_holes_and_stops_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("a"), dir.path().join("b"));
        let mut f = File::create(&src).unwrap();
        f.set_len(16 << 20).unwrap();
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(b"data").unwrap();
        drop(f);
        // The destination holds old data where the source has a hole: it must become zeros.
        std::fs::write(&dst, vec![0xAAu8; 20 << 20]).unwrap();
        let (from, to) = (
            File::open(&src).unwrap(),
            std::fs::OpenOptions::new().write(true).open(&dst).unwrap(),
        );
        let mut seen = Vec::new();
        let whole = copy_range(&from, &to, (0, 1 << 20, 16 << 20), 1 << 20, &mut |d| {
            seen.push(d);
            true
        })
        .unwrap();
        assert!(whole);
        assert_eq!(seen.last(), Some(&(16 << 20)));
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        let out = std::fs::read(&dst).unwrap();
        assert_eq!(out.len(), 20 << 20, "the destination keeps its size");
        assert!(
            out[..1 << 20].iter().all(|b| *b == 0xAA),
            "before the range"
        );
        assert_eq!(&out[(4 << 20)..(4 << 20) + 4], b"data");
        assert!(
            out[(1 << 20)..(4 << 20)].iter().all(|b| *b == 0),
            "hole → zeros"
        );
        assert!(
            out[(17 << 20)..].iter().all(|b| *b == 0xAA),
            "after the range"
        );
        // A stop request ends the copy early.
        let stopped =
            copy_range(&from, &to, (0, 0, 16 << 20), 1 << 20, &mut |d| d < 2 << 20).unwrap();
        assert!(!stopped);
    }
}

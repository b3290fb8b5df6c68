//! Space a set of files really takes on the host: reflinked copies (`copy-from`, Btrfs snapshots
//! on a reflink-capable data dir) share extents, and a shared extent takes its space once. FIEMAP
//! reports each file's extents with their physical place and a SHARED flag.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FiemapExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

/// `struct fiemap` without its extent array, for the ioctl number.
#[repr(C)]
struct FiemapHeader {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
}

const BATCH: usize = 64;

#[repr(C)]
struct Fiemap {
    header: FiemapHeader,
    extents: [FiemapExtent; BATCH],
}

const FS_IOC_FIEMAP: libc::Ioctl = libc::_IOWR::<FiemapHeader>(b'f' as u32, 11);
const FIEMAP_EXTENT_LAST: u32 = 0x1;
const FIEMAP_EXTENT_SHARED: u32 = 0x2000;

/// The extents of `path` that it shares with other files, as (physical offset, length). Empty
/// where the file system has no FIEMAP or shares nothing.
pub fn shared_extents(path: &Path) -> Vec<(u64, u64)> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut map = Fiemap {
        header: FiemapHeader {
            start: 0,
            length: 0,
            flags: 0,
            mapped_extents: 0,
            extent_count: 0,
            reserved: 0,
        },
        extents: [FiemapExtent::default(); BATCH],
    };
    let mut start = 0u64;
    loop {
        map.header.start = start;
        map.header.length = u64::MAX - start;
        map.header.extent_count = BATCH as u32;
        map.header.mapped_extents = 0;
        // SAFETY: FS_IOC_FIEMAP fills at most `extent_count` extents of the buffer we own.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut map) };
        let mapped = map.header.mapped_extents as usize;
        if rc != 0 || mapped == 0 {
            return out;
        }
        let extents = &map.extents[..mapped.min(BATCH)];
        out.extend(
            extents
                .iter()
                .filter(|e| e.flags & FIEMAP_EXTENT_SHARED != 0)
                .map(|e| (e.physical, e.length)),
        );
        let last = extents[extents.len() - 1];
        if last.flags & FIEMAP_EXTENT_LAST != 0 {
            return out;
        }
        start = last.logical + last.length;
    }
}

/// The length of the union of byte ranges (offset, length).
pub fn union_len(ranges: &mut [(u64, u64)]) -> u64 {
    ranges.sort_unstable();
    let mut total = 0u64;
    let mut covered_to = 0u64;
    for &(start, len) in ranges.iter() {
        let end = start.saturating_add(len);
        if end > covered_to {
            total += end - start.max(covered_to);
            covered_to = end;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_counts_overlapping_ranges_once() {
        assert_eq!(union_len(&mut []), 0);
        assert_eq!(union_len(&mut [(0, 10), (0, 10)]), 10);
        assert_eq!(union_len(&mut [(5, 10), (0, 10), (30, 5)]), 20);
        assert_eq!(union_len(&mut [(0, 100), (10, 5)]), 100);
    }

    #[test]
    fn a_file_sharing_nothing_has_no_shared_extents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        std::fs::write(&path, vec![1u8; 1 << 20]).unwrap();
        assert!(shared_extents(&path).is_empty());
    }
}

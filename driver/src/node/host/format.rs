//! File systems on a volume's device: what is there (read from the superblock, like `blkid -p`)
//! and making one (mkfs.ext4, mkfs.xfs). A device that holds anything is never formatted, except
//! what the node's own interrupted mkfs left for the same volume.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{HostError, command};

/// The file systems the node makes and mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }

    /// The program that makes this file system and the options every volume gets (an xfs one
    /// also gets its UUID, [`fs_uuid`]; an ext4 one its size, [`EXT4_GAP`] short of the
    /// device's); public so benchmarks time the command the node runs.
    pub fn mkfs_command(self) -> (&'static str, &'static [&'static str]) {
        match self {
            // lazy init: a fresh volume is usable at once; the kernel zeroes tables in the
            // background.
            FsType::Ext4 => (
                "mkfs.ext4",
                &["-F", "-q", "-E", "lazy_itable_init=1,lazy_journal_init=1"],
            ),
            FsType::Xfs => ("mkfs.xfs", &["-q"]),
        }
    }
}

impl FsType {
    /// The options to mount this file system with, given the ones the volume asks for. XFS
    /// refuses to mount a second file system with the UUID of one already mounted on the host,
    /// and a restored snapshot or a clone carries its source's UUID: without `nouuid` a pod
    /// could not mount a restore on the node where its source is mounted.
    pub fn mount_options(self, requested: &[String]) -> Vec<String> {
        let mut options = requested.to_vec();
        let asked = |name: &str| {
            options
                .iter()
                .flat_map(|o| o.split(','))
                .any(|o| o.trim() == name)
        };
        if self == FsType::Xfs && !asked("nouuid") {
            options.push("nouuid".to_owned());
        }
        options
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FsType {
    type Err = String;

    fn from_str(text: &str) -> Result<FsType, String> {
        match text {
            "ext4" => Ok(FsType::Ext4),
            "xfs" => Ok(FsType::Xfs),
            other => Err(format!(
                "file system {other:?} is not supported; use ext4 or xfs"
            )),
        }
    }
}

/// What the head of a volume's device holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Zeros: nothing to keep.
    Blank,
    /// A file system.
    Fs(FsType),
    /// This volume's file system as an mkfs the node started left it: that mkfs was
    /// interrupted, and nothing in it was ever mountable, so it is made again.
    Unfinished(FsType),
}

/// Probing and making file systems.
pub trait Format: Send + Sync {
    /// What `device`, the device of `volume_id`, holds. Data that is not a file system this
    /// driver makes is an error ([`HostError::ForeignData`]), so it is never formatted over.
    fn probe(&self, device: &Path, volume_id: &str) -> Result<Found, HostError>;
    /// Makes `fs` for `volume_id` on a device the probe found blank, or, with `over_unfinished`,
    /// holding that volume's [`Found::Unfinished`] file system.
    fn make(
        &self,
        device: &Path,
        fs: FsType,
        volume_id: &str,
        over_unfinished: bool,
    ) -> Result<(), HostError>;
}

/// What mkfs.ext4 leaves out at the end of the device, for the node's intent record. mke2fs
/// writes its superblock last, and nothing before it names the volume: without the record, what
/// an interrupted mke2fs leaves (its metadata, no superblock) is foreign data. mke2fs discards
/// and wipes only within the file system, so the record, in its last 4 KiB, outlives any kill
/// until the node clears it after mkfs. The first NodeExpandVolume that finds the device grown
/// grows the file system over the gap too.
pub const EXT4_GAP: u64 = 64 * 1024;

/// The intent record's size, at the very end of the device.
const RECORD_BYTES: usize = 4096;

const RECORD_PREFIX: &[u8] = b"rds-csi: mkfs.ext4 in progress for volume ";

/// The intent record the node writes before mkfs.ext4 of `volume_id`.
fn intent(volume_id: &str) -> Vec<u8> {
    let mut record = [RECORD_PREFIX, volume_id.as_bytes(), b"\n"].concat();
    record.resize(RECORD_BYTES, 0);
    record
}

/// The UUID of the file system the node makes for `volume_id`. mkfs.xfs writes its superblock,
/// marked in progress, among its first writes and clears the mark last; the UUID in it is what
/// tells the node's own interrupted mkfs from someone else's half-made or damaged file system.
pub fn fs_uuid(volume_id: &str) -> Uuid {
    let digest = Sha256::digest(format!("rds-csi file system of {volume_id}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // Version 8 (vendor-specific), so it never passes for a random one.
    Uuid::new_v8(bytes)
}

/// The real implementation: superblock magic numbers and the mkfs tools.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mkfs;

/// How much of the device the probe reads: past the btrfs superblock at 64 KiB.
const PROBE_BYTES: usize = 68 * 1024;

impl Format for Mkfs {
    fn probe(&self, device: &Path, volume_id: &str) -> Result<Found, HostError> {
        let what = || {
            format!(
                "reading the first {PROBE_BYTES} bytes of {}",
                device.display()
            )
        };
        let mut file = File::open(device).map_err(HostError::io(what()))?;
        let mut head = Vec::with_capacity(PROBE_BYTES);
        (&mut file)
            .take(PROBE_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(HostError::io(what()))?;
        let mut tail = vec![0; RECORD_BYTES];
        let size = file.seek(SeekFrom::End(0)).map_err(HostError::io(what()))?;
        if let Some(at) = size.checked_sub(RECORD_BYTES as u64) {
            file.read_exact_at(&mut tail, at)
                .map_err(HostError::io(format!(
                    "reading the end of {}",
                    device.display()
                )))?;
        }
        identify(&head, &tail, volume_id).map_err(|what| HostError::ForeignData {
            device: device.to_owned(),
            what,
        })
    }

    fn make(
        &self,
        device: &Path,
        fs: FsType,
        volume_id: &str,
        over_unfinished: bool,
    ) -> Result<(), HostError> {
        let (program, options) = fs.mkfs_command();
        let mut args: Vec<String> = options.iter().map(|&o| o.to_owned()).collect();
        let path = device.to_string_lossy().into_owned();
        let record = match fs {
            FsType::Xfs => {
                args.extend(["-m".to_owned(), format!("uuid={}", fs_uuid(volume_id))]);
                // mkfs.xfs refuses any signature it finds, the one it left itself included.
                if over_unfinished {
                    args.push("-f".to_owned());
                }
                args.push(path);
                None
            }
            FsType::Ext4 => {
                let (file, size) = open_end(device)?;
                let at = size.saturating_sub(RECORD_BYTES as u64);
                write_synced(&file, &intent(volume_id), at, device)?;
                args.extend([path, format!("{}k", size.saturating_sub(EXT4_GAP) / 1024)]);
                Some((file, at))
            }
        };
        command::run(
            program,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
        match record {
            Some((file, at)) => write_synced(&file, &[0; RECORD_BYTES], at, device),
            None => Ok(()),
        }
    }
}

/// `device` open for writing, and its size.
fn open_end(device: &Path) -> Result<(File, u64), HostError> {
    let what = || {
        format!(
            "opening {} to write the mkfs intent record",
            device.display()
        )
    };
    let mut file = OpenOptions::new()
        .write(true)
        .open(device)
        .map_err(HostError::io(what()))?;
    let size = file.seek(SeekFrom::End(0)).map_err(HostError::io(what()))?;
    Ok((file, size))
}

/// Writes `bytes` at `offset` of `device` and waits until the device has them: the record must
/// be on the device before mkfs starts, and gone before the file system is mounted.
fn write_synced(file: &File, bytes: &[u8], offset: u64, device: &Path) -> Result<(), HostError> {
    let what = || {
        format!(
            "writing the mkfs intent record at the end of {}",
            device.display()
        )
    };
    file.write_all_at(bytes, offset)
        .map_err(HostError::io(what()))?;
    file.sync_all().map_err(HostError::io(what()))
}

/// The size in bytes of the ext4 file system whose superblock is in `head`, the first 2 KiB of
/// its device.
pub fn ext4_bytes(head: &[u8]) -> Option<u64> {
    let sb = head.get(1024..2048)?;
    let word = |at: usize| u64::from(u32::from_le_bytes(sb[at..at + 4].try_into().unwrap()));
    if sb[56..58] != [0x53, 0xEF] {
        return None;
    }
    const INCOMPAT_64BIT: u64 = 0x80;
    let high = if word(0x60) & INCOMPAT_64BIT != 0 {
        word(0x150)
    } else {
        0
    };
    Some(((high << 32) | word(0x04)) << (10 + word(0x18)))
}

/// Where XFS keeps its UUID and the flag mkfs sets until it is done, in the superblock at 0.
const XFS_UUID: usize = 32;
const XFS_IN_PROGRESS: usize = 126;

/// What the device of `volume_id` holds, from its first bytes and its last 4 KiB: a known file
/// system, nothing, what the node's interrupted mkfs for this volume left, or something else.
pub fn identify(head: &[u8], tail: &[u8], volume_id: &str) -> Result<Found, String> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"XFSB") {
        if head.get(XFS_IN_PROGRESS).is_none_or(|&flag| flag == 0) {
            return Ok(Found::Fs(FsType::Xfs));
        }
        if at(XFS_UUID, fs_uuid(volume_id).as_bytes()) {
            return Ok(Found::Unfinished(FsType::Xfs));
        }
        return Err(
            "an xfs file system marked as being made or changed offline, and not \
                    by this node for this volume"
                .to_owned(),
        );
    }
    // ext2/3/4 share the magic; ext4 mounts all three.
    if at(1024 + 56, &[0x53, 0xEF]) {
        return Ok(Found::Fs(FsType::Ext4));
    }
    if at(0x10040, b"_BHRfS_M") {
        return Err("a btrfs file system".to_owned());
    }
    if at(510, &[0x55, 0xAA]) || at(512, b"EFI PART") {
        return Err("a partition table".to_owned());
    }
    if tail.starts_with(RECORD_PREFIX) {
        if tail == intent(volume_id) {
            return Ok(Found::Unfinished(FsType::Ext4));
        }
        return Err("an mkfs.ext4 of another volume that never finished".to_owned());
    }
    match head.iter().position(|&b| b != 0) {
        None => Ok(Found::Blank),
        Some(offset) => Err(format!("non-zero data at byte {offset}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOLUME: &str = "pvc-0123";

    fn blank() -> Vec<u8> {
        vec![0; PROBE_BYTES]
    }

    fn id(head: &[u8]) -> Result<Found, String> {
        identify(head, &[0; RECORD_BYTES], VOLUME)
    }

    #[test]
    fn superblocks_are_recognised() {
        let mut xfs = blank();
        xfs[..4].copy_from_slice(b"XFSB");
        assert_eq!(id(&xfs), Ok(Found::Fs(FsType::Xfs)));
        let mut ext4 = blank();
        ext4[1080..1082].copy_from_slice(&[0x53, 0xEF]);
        ext4[0] = 1;
        assert_eq!(id(&ext4), Ok(Found::Fs(FsType::Ext4)));
        assert_eq!(id(&blank()), Ok(Found::Blank));
    }

    /// The superblock mkfs.xfs writes among its first writes, with the in-progress flag it
    /// clears last (as `LIBXFS_DEBUG_WRITE_CRASH` interruptions of mkfs.xfs 6.1 leave it).
    #[test]
    fn an_xfs_mkfs_that_never_finished_is_remade_only_when_it_was_this_volumes() {
        let mut xfs = blank();
        xfs[..4].copy_from_slice(b"XFSB");
        xfs[XFS_IN_PROGRESS] = 1;
        xfs[XFS_UUID..XFS_UUID + 16].copy_from_slice(fs_uuid(VOLUME).as_bytes());
        assert_eq!(id(&xfs), Ok(Found::Unfinished(FsType::Xfs)));
        xfs[XFS_UUID] = 8;
        assert!(id(&xfs).unwrap_err().contains("not by this node"));
    }

    /// What mke2fs 1.47 leaves when killed part way on a 64 MiB device: its reserved group
    /// descriptor blocks from byte 3072 on, no superblock yet; the intent record at the end.
    #[test]
    fn an_ext4_mkfs_that_never_finished_is_remade_only_when_it_was_this_volumes() {
        let mut head = blank();
        head[3072] = 2;
        assert_eq!(
            identify(&head, &intent(VOLUME), VOLUME),
            Ok(Found::Unfinished(FsType::Ext4))
        );
        assert_eq!(
            identify(&blank(), &intent(VOLUME), VOLUME),
            Ok(Found::Unfinished(FsType::Ext4)),
            "killed before its first write"
        );
        assert!(
            identify(&head, &intent("pvc-0124"), VOLUME)
                .unwrap_err()
                .contains("another volume")
        );
        assert_eq!(id(&head), Err("non-zero data at byte 3072".to_owned()));
        let mut ext4 = head.clone();
        ext4[1080..1082].copy_from_slice(&[0x53, 0xEF]);
        assert_eq!(
            identify(&ext4, &intent(VOLUME), VOLUME),
            Ok(Found::Fs(FsType::Ext4)),
            "a finished file system whose record the node had no time to clear"
        );
    }

    #[test]
    fn the_size_of_an_ext4_file_system_is_read_from_its_superblock() {
        let mut head = blank();
        assert_eq!(ext4_bytes(&head), None);
        let sb = 1024;
        head[sb + 56..sb + 58].copy_from_slice(&[0x53, 0xEF]);
        head[sb + 4..sb + 8].copy_from_slice(&65472u32.to_le_bytes());
        assert_eq!(ext4_bytes(&head), Some(65472 * 1024), "1 KiB blocks");
        head[sb + 0x18] = 2;
        head[sb + 0x60] = 0x80;
        head[sb + 0x150] = 1;
        assert_eq!(
            ext4_bytes(&head),
            Some(((1 << 32) + 65472) * 4096),
            "64bit, 4 KiB blocks"
        );
    }

    #[test]
    fn each_volume_has_its_own_version_8_uuid() {
        assert_eq!(fs_uuid("pvc-0123").get_version_num(), 8);
        assert_eq!(fs_uuid("pvc-0123"), fs_uuid("pvc-0123"));
        assert_ne!(fs_uuid("pvc-0123"), fs_uuid("pvc-0124"));
    }

    #[test]
    fn anything_else_is_refused() {
        let mut mbr = blank();
        mbr[510..512].copy_from_slice(&[0x55, 0xAA]);
        assert_eq!(id(&mbr), Err("a partition table".to_owned()));
        let mut btrfs = blank();
        btrfs[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        assert!(id(&btrfs).unwrap_err().contains("btrfs"));
        let mut data = blank();
        data[4096] = 7;
        assert_eq!(id(&data), Err("non-zero data at byte 4096".to_owned()));
    }

    #[test]
    fn fs_types_parse_and_print() {
        assert_eq!("xfs".parse::<FsType>(), Ok(FsType::Xfs));
        assert_eq!(
            FsType::Xfs.mount_options(&["noatime".to_owned()]),
            ["noatime", "nouuid"],
            "a clone or restore of an xfs volume mounts beside its source"
        );
        assert_eq!(
            FsType::Xfs.mount_options(&["noatime,nouuid".to_owned()]),
            ["noatime,nouuid"]
        );
        assert_eq!(
            FsType::Ext4.mount_options(&["noatime".to_owned()]),
            ["noatime"]
        );
        assert_eq!(FsType::Ext4.to_string(), "ext4");
        assert!("zfs".parse::<FsType>().unwrap_err().contains("ext4 or xfs"));
    }
}

//! File systems on a volume's device: what is there (read from the superblock, like `blkid -p`)
//! and making one (mkfs.ext4, mkfs.xfs). A device that holds anything is never formatted.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

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

    /// The program that makes this file system and its arguments before the device; public so
    /// benchmarks time the very command the node runs.
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

/// Probing and making file systems.
pub trait Format: Send + Sync {
    /// The file system on `device`; `None` when the device is blank. Data that is not a file
    /// system this driver makes is an error ([`HostError::ForeignData`]), so it is never
    /// formatted over.
    fn probe(&self, device: &Path) -> Result<Option<FsType>, HostError>;
    fn make(&self, device: &Path, fs: FsType) -> Result<(), HostError>;
}

/// The real implementation: superblock magic numbers and the mkfs tools.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mkfs;

/// How much of the device the probe reads: past the btrfs superblock at 64 KiB.
const PROBE_BYTES: usize = 68 * 1024;

impl Format for Mkfs {
    fn probe(&self, device: &Path) -> Result<Option<FsType>, HostError> {
        let what = || {
            format!(
                "reading the first {PROBE_BYTES} bytes of {}",
                device.display()
            )
        };
        let mut head = Vec::with_capacity(PROBE_BYTES);
        File::open(device)
            .map_err(HostError::io(what()))?
            .take(PROBE_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(HostError::io(what()))?;
        identify(&head).map_err(|what| HostError::ForeignData {
            device: device.to_owned(),
            what,
        })
    }

    fn make(&self, device: &Path, fs: FsType) -> Result<(), HostError> {
        let device = device.to_string_lossy();
        let (program, options) = fs.mkfs_command();
        command::run(program, &[options, &[&*device]].concat())
    }
}

/// What the first bytes of a device hold: a known file system, nothing, or something else.
pub fn identify(head: &[u8]) -> Result<Option<FsType>, String> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"XFSB") {
        return Ok(Some(FsType::Xfs));
    }
    // ext2/3/4 share the magic; ext4 mounts all three.
    if at(1024 + 56, &[0x53, 0xEF]) {
        return Ok(Some(FsType::Ext4));
    }
    if at(0x10040, b"_BHRfS_M") {
        return Err("a btrfs file system".to_owned());
    }
    if at(510, &[0x55, 0xAA]) || at(512, b"EFI PART") {
        return Err("a partition table".to_owned());
    }
    match head.iter().position(|&b| b != 0) {
        None => Ok(None),
        Some(offset) => Err(format!("non-zero data at byte {offset}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> Vec<u8> {
        vec![0; PROBE_BYTES]
    }

    #[test]
    fn superblocks_are_recognised() {
        let mut xfs = blank();
        xfs[..4].copy_from_slice(b"XFSB");
        assert_eq!(identify(&xfs), Ok(Some(FsType::Xfs)));
        let mut ext4 = blank();
        ext4[1080..1082].copy_from_slice(&[0x53, 0xEF]);
        ext4[0] = 1;
        assert_eq!(identify(&ext4), Ok(Some(FsType::Ext4)));
        assert_eq!(identify(&blank()), Ok(None));
    }

    #[test]
    fn anything_else_is_refused() {
        let mut mbr = blank();
        mbr[510..512].copy_from_slice(&[0x55, 0xAA]);
        assert_eq!(identify(&mbr), Err("a partition table".to_owned()));
        let mut btrfs = blank();
        btrfs[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        assert!(identify(&btrfs).unwrap_err().contains("btrfs"));
        let mut data = blank();
        data[4096] = 7;
        assert_eq!(
            identify(&data),
            Err("non-zero data at byte 4096".to_owned())
        );
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

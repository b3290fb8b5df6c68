//! Growing a mounted file system to its device's new size, online.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::format::{EXT4_GAP, ext4_bytes};
use super::{FsType, HostError, command};

pub trait Resize: Send + Sync {
    /// Grows the file system `fs` on `device`, mounted at `mount_point`, to fill the device.
    fn grow(&self, device: &Path, mount_point: &Path, fs: FsType) -> Result<(), HostError>;
}

/// resize2fs for ext4 (given the device), xfs_growfs for xfs (given the mount point).
#[derive(Debug, Clone, Copy, Default)]
pub struct ResizeTools;

impl Resize for ResizeTools {
    fn grow(&self, device: &Path, mount_point: &Path, fs: FsType) -> Result<(), HostError> {
        match fs {
            // The node makes ext4 EXT4_GAP short of its device; a device that has not grown
            // since is left as it is, since resize2fs would grow the file system over the gap,
            // which needs CAP_SYS_RESOURCE for a few KiB the CO never asked for.
            FsType::Ext4 if !ext4_outgrown(device)? => Ok(()),
            FsType::Ext4 => command::run("resize2fs", &[&device.to_string_lossy()]),
            FsType::Xfs => command::run("xfs_growfs", &[&mount_point.to_string_lossy()]),
        }
    }
}

/// Whether `device` holds more than its ext4 file system and the gap after it.
fn ext4_outgrown(device: &Path) -> Result<bool, HostError> {
    let what = || format!("reading the ext4 superblock of {}", device.display());
    let mut file = File::open(device).map_err(HostError::io(what()))?;
    let mut head = [0u8; 2048];
    file.read_exact(&mut head).map_err(HostError::io(what()))?;
    let size = file.seek(SeekFrom::End(0)).map_err(HostError::io(what()))?;
    Ok(ext4_bytes(&head).is_none_or(|fs| fs + EXT4_GAP < size))
}

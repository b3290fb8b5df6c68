//! Growing a mounted file system to its device's new size, online.

use std::path::Path;

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
            FsType::Ext4 => command::run("resize2fs", &[&device.to_string_lossy()]),
            FsType::Xfs => command::run("xfs_growfs", &[&mount_point.to_string_lossy()]),
        }
    }
}

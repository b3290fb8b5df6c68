//! The node's view of the host, behind small traits so the CSI logic above it can be tested with
//! fakes: [`Fabric`] attaches a volume's block device (kernel NVMe/TCP, or a loop device where the
//! kernel has no nvme-tcp), [`Mounts`] mounts and reads the mount table, [`Format`] probes and
//! makes file systems, [`Resize`] grows them.

mod command;
pub mod fabric;
pub mod format;
pub mod loopctl;
pub mod mount;
pub mod nvme_admin;
pub mod options;
pub mod resize;
pub mod views;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

pub use fabric::kernel::KernelFabric;
pub use fabric::loopdev::LoopFabric;
pub use fabric::{Attached, Device, Fabric, Target, Tunables, Unhealthy};
pub use format::{Format, Found, FsType, Mkfs};
pub use mount::{LinuxMounts, MountEntry, Mounts, Usage};
pub use options::MountOptions;
pub use resize::{Resize, ResizeTools};
pub use views::{LoopViews, Views};

/// The host operations the node service uses.
#[derive(Clone)]
pub struct Host {
    pub fabric: Arc<dyn Fabric>,
    pub mounts: Arc<dyn Mounts>,
    pub format: Arc<dyn Format>,
    pub resize: Arc<dyn Resize>,
    pub views: Arc<dyn Views>,
}

impl Host {
    /// The real host, attaching with `fabric`.
    pub fn linux(fabric: Arc<dyn Fabric>) -> Host {
        Host {
            fabric,
            mounts: Arc::new(LinuxMounts),
            format: Arc::new(Mkfs),
            resize: Arc::new(ResizeTools),
            views: Arc::new(LoopViews::default()),
        }
    }
}

/// A block device number, `major:minor` as sysfs and mountinfo print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl FromStr for DevNum {
    type Err = String;

    fn from_str(text: &str) -> Result<DevNum, String> {
        let bad = || format!("{text:?} is not a device number of the form major:minor");
        let (major, minor) = text.trim().split_once(':').ok_or_else(bad)?;
        Ok(DevNum {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

/// Why a host operation failed. Each message names what was being done and to which device or
/// path.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error(
        "`{command}` did not finish within {} s and was killed; the device may be hung: check \
         the node's kernel log, then retry",
        limit.as_secs()
    )]
    Timeout {
        command: String,
        limit: std::time::Duration,
    },
    #[error(
        "{0} does not exist: the kernel has no NVMe over Fabrics initiator loaded; run \
         `modprobe nvme-tcp` on the node (or set node.fabric = \"loop\" where the kernel has none)"
    )]
    NoFabrics(PathBuf),
    #[error(
        "the block device of {what} did not appear within {waited_ms} ms after connecting; is \
         the volume exported to this node's host NQN (ControllerPublishVolume) and reachable?"
    )]
    DeviceTimeout { what: String, waited_ms: u128 },
    #[error(
        "the backing file {0} does not exist: in loop mode node.loopRoot must be rds-sim's \
         <data-dir>/files and the volume must exist on the simulator"
    )]
    BackingFileMissing(PathBuf),
    #[error("{0}")]
    BadTarget(String),
    #[error("{0} is no longer attached to this node")]
    Gone(String),
    #[error(
        "{device} holds data that is no ext4 or xfs file system the node can use ({what}); \
         refusing to format it. Wipe it on purpose (wipefs) if it really is unused"
    )]
    ForeignData { device: PathBuf, what: String },
    #[error(
        "{device} already holds a {found} file system, not the {wanted} the volume asks for; it \
         is never reformatted"
    )]
    FsMismatch {
        device: PathBuf,
        found: FsType,
        wanted: FsType,
    },
}

impl HostError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HostError {
        let what = what.into();
        move |source| HostError::Io { what, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_read_as_sysfs_prints_them() {
        let dev: DevNum = "259:3\n".parse().unwrap();
        assert_eq!(
            dev,
            DevNum {
                major: 259,
                minor: 3
            }
        );
        assert_eq!(dev.to_string(), "259:3");
        assert!("259".parse::<DevNum>().unwrap_err().contains("major:minor"));
    }
}

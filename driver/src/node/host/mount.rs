//! Mounts and device nodes: mount(2) and umount2(2) through rustix, the mount table from
//! `/proc/self/mountinfo`, usage from statvfs(3), device nodes with mknod(2).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode};
use rustix::mount::{MountFlags, UnmountFlags};

use super::options::MountOptions;
use super::{DevNum, FsType, HostError};

/// One line of `/proc/self/mountinfo`, the fields the node uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The device of the mounted file system (`st_dev` of files in it).
    pub dev: DevNum,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub readonly: bool,
}

/// File-system usage, from statvfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub used_bytes: u64,
    pub total_inodes: u64,
    pub free_inodes: u64,
    pub used_inodes: u64,
}

/// The mount operations the node needs.
pub trait Mounts: Send + Sync {
    /// The mount table.
    fn list(&self) -> Result<Vec<MountEntry>, HostError>;
    /// Mounts file system `fs_type` (ext4 or xfs) on `device` at `target`, with mount(8)-style
    /// `options`.
    fn mount(
        &self,
        device: &Path,
        target: &Path,
        fs_type: &str,
        options: &[String],
    ) -> Result<(), HostError>;
    /// Bind-mounts `source` at `target` with the source's mount flags changed by `options`
    /// (its flags only: a bind mount shares the source's file system and its options).
    fn bind(&self, source: &Path, target: &Path, options: &MountOptions) -> Result<(), HostError>;
    fn unmount(&self, target: &Path) -> Result<(), HostError>;
    /// Usage of the file system at `path`; the raw error tells a stale mount (ESTALE, EIO,
    /// ENOTCONN) from a missing path.
    fn usage(&self, path: &Path) -> io::Result<Usage>;
    /// Creates a block device node for `dev` at `path`.
    fn make_device_node(&self, path: &Path, dev: DevNum) -> Result<(), HostError>;
    /// The device a block device node at `path` refers to; `None` when `path` is no such node.
    fn device_node(&self, path: &Path) -> Result<Option<DevNum>, HostError>;
    /// Whether the kernel has a block device `dev` with data now (a dead mount keeps the
    /// number of a device that is gone).
    fn is_block_device(&self, dev: DevNum) -> bool;
}

/// Whether `error` is what a dead file system answers (as opposed to "no such path").
pub fn is_stale(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ESTALE | libc::EIO | libc::ENOTCONN | libc::ENXIO | libc::ENODEV)
    )
}

/// The Linux implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxMounts;

impl Mounts for LinuxMounts {
    fn list(&self) -> Result<Vec<MountEntry>, HostError> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(HostError::io("reading /proc/self/mountinfo"))?;
        Ok(parse_mountinfo(&text))
    }

    fn mount(
        &self,
        device: &Path,
        target: &Path,
        fs_type: &str,
        options: &[String],
    ) -> Result<(), HostError> {
        let fs: FsType = fs_type.parse().map_err(HostError::BadTarget)?;
        let options = MountOptions::parse(options, fs).map_err(HostError::BadTarget)?;
        let flags = options.applied_to(MountFlags::empty());
        let data = std::ffi::CString::new(options.data())
            .map_err(|_| HostError::BadTarget("a mount option holds a NUL character".to_owned()))?;
        rustix::mount::mount(device, target, fs.as_str(), flags, data.as_c_str()).map_err(|e| {
            HostError::io(format!(
                "mounting {} ({fs}) at {}",
                device.display(),
                target.display()
            ))(e.into())
        })
    }

    fn bind(&self, source: &Path, target: &Path, options: &MountOptions) -> Result<(), HostError> {
        let what = || format!("bind-mounting {} at {}", source.display(), target.display());
        // A bind mount starts with its source's flags but takes new ones only on a remount, and
        // a remount sets every flag: without the source's, a read-only publish of a
        // nosuid,nodev,noexec staging mount would lose those three.
        let inherited = mount_flags(source).map_err(HostError::io(what()))?;
        let wanted = options.applied_to(inherited);
        rustix::mount::mount_bind(source, target).map_err(|e| HostError::io(what())(e.into()))?;
        if wanted != inherited {
            let remount = rustix::mount::mount_remount(target, MountFlags::BIND | wanted, "");
            if let Err(e) = remount {
                let _ = rustix::mount::unmount(target, UnmountFlags::empty());
                return Err(HostError::io(format!("{} with flags {wanted:?}", what()))(
                    e.into(),
                ));
            }
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), HostError> {
        rustix::mount::unmount(target, UnmountFlags::empty())
            .map_err(|e| HostError::io(format!("unmounting {}", target.display()))(e.into()))
    }

    fn usage(&self, path: &Path) -> io::Result<Usage> {
        let s = rustix::fs::statvfs(path)?;
        let block = s.f_frsize;
        Ok(Usage {
            total_bytes: s.f_blocks * block,
            available_bytes: s.f_bavail * block,
            used_bytes: s.f_blocks.saturating_sub(s.f_bfree) * block,
            total_inodes: s.f_files,
            free_inodes: s.f_ffree,
            used_inodes: s.f_files.saturating_sub(s.f_ffree),
        })
    }

    fn make_device_node(&self, path: &Path, dev: DevNum) -> Result<(), HostError> {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            FileType::BlockDevice,
            Mode::from_raw_mode(0o660),
            rustix::fs::makedev(dev.major, dev.minor),
        )
        .map_err(|e| {
            HostError::io(format!(
                "creating block device node {dev} at {}",
                path.display()
            ))(e.into())
        })
    }

    fn device_node(&self, path: &Path) -> Result<Option<DevNum>, HostError> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_block_device() => {
                let rdev = meta.rdev();
                Ok(Some(DevNum {
                    major: rustix::fs::major(rdev),
                    minor: rustix::fs::minor(rdev),
                }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostError::io(format!("inspecting {}", path.display()))(e)),
        }
    }

    fn is_block_device(&self, dev: DevNum) -> bool {
        // A loop device exists unbound too, with no capacity.
        let size = Path::new("/sys/dev/block")
            .join(dev.to_string())
            .join("size");
        std::fs::read_to_string(size).is_ok_and(|sectors| sectors.trim() != "0")
    }
}

/// The per-mount flags of the mount that holds `path`, as statvfs(3) reports them.
fn mount_flags(path: &Path) -> io::Result<MountFlags> {
    use rustix::fs::StatVfsMountFlags as St;
    let reported = rustix::fs::statvfs(path)?.f_flag;
    // ST_NOSYMFOLLOW (Linux 5.10), which rustix does not name.
    const ST_NOSYMFOLLOW: u64 = 0x2000;
    let pairs = [
        (St::RDONLY, MountFlags::RDONLY),
        (St::NOSUID, MountFlags::NOSUID),
        (St::NODEV, MountFlags::NODEV),
        (St::NOEXEC, MountFlags::NOEXEC),
        (St::NOATIME, MountFlags::NOATIME),
        (St::NODIRATIME, MountFlags::NODIRATIME),
        (St::RELATIME, MountFlags::RELATIME),
        (
            St::from_bits_retain(ST_NOSYMFOLLOW),
            MountFlags::NOSYMFOLLOW,
        ),
    ];
    Ok(pairs
        .into_iter()
        .filter(|(st, _)| reported.contains(*st))
        .fold(MountFlags::empty(), |flags, (_, flag)| flags | flag))
}

/// Parses mountinfo; lines it cannot read are skipped (the format is the kernel's, stable).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root mount-point options [optional…] - fstype source super-options
    let (head, tail) = line.split_once(" - ")?;
    let head: Vec<&str> = head.split(' ').collect();
    let tail: Vec<&str> = tail.split(' ').collect();
    let dev = head.get(2)?.parse().ok()?;
    let mount_point = PathBuf::from(unescape(head.get(4)?));
    let readonly = head.get(5)?.split(',').any(|o| o == "ro");
    Some(MountEntry {
        dev,
        mount_point,
        fs_type: (*tail.first()?).to_owned(),
        source: unescape(tail.get(1)?),
        readonly,
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
95 22 7:3 / /var/lib/kubelet/plugins/x/globalmount rw,relatime shared:50 - xfs /dev/loop3 rw,attr2
96 22 7:3 / /var/lib/kubelet/pods/p/volumes/my\\040vol/mount ro,relatime shared:50 - xfs /dev/loop3 rw
bogus line
";

    #[test]
    fn mountinfo_gives_device_mount_point_type_and_readonly() {
        let entries = parse_mountinfo(MOUNTINFO);
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[1],
            MountEntry {
                dev: DevNum { major: 7, minor: 3 },
                mount_point: "/var/lib/kubelet/plugins/x/globalmount".into(),
                fs_type: "xfs".into(),
                source: "/dev/loop3".into(),
                readonly: false,
            }
        );
        assert_eq!(
            entries[2].mount_point,
            PathBuf::from("/var/lib/kubelet/pods/p/volumes/my vol/mount")
        );
        assert!(entries[2].readonly);
    }

    #[test]
    fn stale_errors_are_told_from_missing_paths() {
        assert!(is_stale(&io::Error::from_raw_os_error(libc::ESTALE)));
        assert!(is_stale(&io::Error::from_raw_os_error(libc::ENOTCONN)));
        assert!(!is_stale(&io::Error::from_raw_os_error(libc::ENOENT)));
    }
}

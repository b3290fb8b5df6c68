//! mount(8)-style options, read the way mount(8) reads them: each is a mount(2) flag set or
//! cleared, an option only mount(8) or fstab acts on (dropped, knowingly: nothing here would act
//! on it), or data for the file system. Anything else is refused before the host is touched: an
//! option the kernel would reject fails the mount only after the device was attached and
//! formatted.

use rustix::mount::MountFlags;

use super::FsType;

/// Options read: the flags to set and to clear, in the order given (the last word wins, as in
/// mount(8)), and the file system's own options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub set: MountFlags,
    pub clear: MountFlags,
    pub data: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> MountOptions {
        MountOptions {
            set: MountFlags::empty(),
            clear: MountFlags::empty(),
            data: Vec::new(),
        }
    }
}

/// The access-time flags: setting one replaces the others.
const ATIME: MountFlags = MountFlags::NOATIME
    .union(MountFlags::RELATIME)
    .union(MountFlags::STRICTATIME);

/// The flag options: (name, flag, whether the name sets it).
const FLAGS: &[(&str, MountFlags, bool)] = &[
    ("ro", MountFlags::RDONLY, true),
    ("rw", MountFlags::RDONLY, false),
    ("nosuid", MountFlags::NOSUID, true),
    ("suid", MountFlags::NOSUID, false),
    ("nodev", MountFlags::NODEV, true),
    ("dev", MountFlags::NODEV, false),
    ("noexec", MountFlags::NOEXEC, true),
    ("exec", MountFlags::NOEXEC, false),
    ("sync", MountFlags::SYNCHRONOUS, true),
    ("async", MountFlags::SYNCHRONOUS, false),
    ("dirsync", MountFlags::DIRSYNC, true),
    ("noatime", MountFlags::NOATIME, true),
    ("atime", MountFlags::NOATIME, false),
    ("nodiratime", MountFlags::NODIRATIME, true),
    ("diratime", MountFlags::NODIRATIME, false),
    ("relatime", MountFlags::RELATIME, true),
    ("norelatime", MountFlags::RELATIME, false),
    ("strictatime", MountFlags::STRICTATIME, true),
    ("nostrictatime", MountFlags::STRICTATIME, false),
    ("lazytime", MountFlags::LAZYTIME, true),
    ("nolazytime", MountFlags::LAZYTIME, false),
    ("nosymfollow", MountFlags::NOSYMFOLLOW, true),
    ("silent", MountFlags::SILENT, true),
    ("loud", MountFlags::SILENT, false),
];

/// Options that only mount(8) or fstab read (`defaults` is the absence of options; `nomand`
/// the kernel's only behaviour since 5.15): the mount(2) call has nothing to do with them.
const USER_SPACE: &[&str] = &[
    "defaults", "auto", "noauto", "nouser", "_netdev", "nofail", "nomand",
];

/// Options the node cannot honour, and why.
const REFUSED: &[(&str, &str)] = &[
    (
        "user",
        "lets ordinary users mount an fstab entry; for its effect ask for nosuid,nodev,noexec",
    ),
    (
        "users",
        "lets ordinary users mount an fstab entry; for its effect ask for nosuid,nodev,noexec",
    ),
    (
        "owner",
        "lets a device's owner mount an fstab entry; for its effect ask for nosuid,nodev",
    ),
    (
        "group",
        "lets a device's group mount an fstab entry; for its effect ask for nosuid,nodev",
    ),
    ("mand", "mandatory locking was removed from Linux in 5.15"),
    ("bind", "the node makes its own bind mounts"),
    ("rbind", "the node makes its own bind mounts"),
    ("remount", "the node mounts each volume once"),
    ("move", "the node mounts each volume once"),
    ("loop", "the node attaches the volume itself"),
];

/// Options for any file system: the security module's labels.
const ANY_FS_DATA: &[&str] = &["context=", "fscontext=", "defcontext=", "rootcontext="];

/// ext4's options (Documentation/filesystems/ext4.rst); `=` ends a name that takes a value.
const EXT4_DATA: &[&str] = &[
    "acl",
    "noacl",
    "user_xattr",
    "nouser_xattr",
    "journal_checksum",
    "nojournal_checksum",
    "journal_async_commit",
    "barrier",
    "nobarrier",
    "barrier=",
    "commit=",
    "data=",
    "data_err=",
    "errors=",
    "discard",
    "nodiscard",
    "delalloc",
    "nodelalloc",
    "dioread_nolock",
    "dioread_lock",
    "noload",
    "norecovery",
    "inode_readahead_blks=",
    "stripe=",
    "max_batch_time=",
    "min_batch_time=",
    "journal_ioprio=",
    "auto_da_alloc",
    "noauto_da_alloc",
    "auto_da_alloc=",
    "init_itable",
    "init_itable=",
    "noinit_itable",
    "block_validity",
    "noblock_validity",
    "nombcache",
    "quota",
    "noquota",
    "usrquota",
    "grpquota",
    "prjquota",
    "usrjquota=",
    "grpjquota=",
    "jqfmt=",
    "resgid=",
    "resuid=",
    "sb=",
    "grpid",
    "bsdgroups",
    "nogrpid",
    "sysvgroups",
    "bsddf",
    "minixdf",
    "nouid32",
    "dax",
    "dax=",
    "inlinecrypt",
    "prefetch_block_bitmaps",
    "no_prefetch_block_bitmaps",
    "mb_optimize_scan=",
    "journal_dev=",
    "journal_path=",
];

/// XFS's options (Documentation/admin-guide/xfs.rst).
const XFS_DATA: &[&str] = &[
    "allocsize=",
    "attr2",
    "noattr2",
    "dax",
    "dax=",
    "discard",
    "nodiscard",
    "grpid",
    "bsdgroups",
    "nogrpid",
    "sysvgroups",
    "filestreams",
    "ikeep",
    "noikeep",
    "inode32",
    "inode64",
    "largeio",
    "nolargeio",
    "logbufs=",
    "logbsize=",
    "logdev=",
    "rtdev=",
    "noalign",
    "norecovery",
    "nouuid",
    "noquota",
    "uquota",
    "usrquota",
    "quota",
    "uqnoenforce",
    "qnoenforce",
    "gquota",
    "grpquota",
    "gqnoenforce",
    "pquota",
    "prjquota",
    "pqnoenforce",
    "sunit=",
    "swidth=",
    "swalloc",
    "wsync",
];

impl MountOptions {
    /// Reads `options` (each may hold several, comma-separated) for mounting `fs`; the message
    /// of a refusal names the option and what to do instead.
    pub fn parse(options: &[String], fs: FsType) -> Result<MountOptions, String> {
        let mut read = MountOptions::default();
        for option in options.iter().flat_map(|o| o.split(',')).map(str::trim) {
            if option.is_empty() || is_user_space(option) {
                continue;
            }
            if let Some(&(_, flag, sets)) = FLAGS.iter().find(|(name, ..)| *name == option) {
                read.toggle(flag, sets);
            } else if let Some((_, why)) = REFUSED.iter().find(|(name, _)| *name == option) {
                return Err(format!(
                    "mount option {option:?} is not supported: it {why}"
                ));
            } else if takes(ANY_FS_DATA, option) || takes(data_options(fs), option) {
                read.data.push(option.to_owned());
            } else {
                return Err(format!(
                    "mount option {option:?} is neither a mount flag nor an option of {fs}; \
                     remove it from the StorageClass's mountOptions (or the PV's)"
                ));
            }
        }
        Ok(read)
    }

    /// These options, made read-only when `readonly`.
    pub fn read_only(mut self, readonly: bool) -> MountOptions {
        if readonly {
            self.toggle(MountFlags::RDONLY, true);
        }
        self
    }

    fn toggle(&mut self, flag: MountFlags, sets: bool) {
        if sets {
            if ATIME.contains(flag) {
                self.set.remove(ATIME);
            }
            self.set.insert(flag);
            self.clear.remove(flag);
        } else {
            self.clear.insert(flag);
            self.set.remove(flag);
        }
    }

    /// The flags of a mount that had `base` and gets these options on top.
    pub fn applied_to(&self, base: MountFlags) -> MountFlags {
        let mut flags = base;
        if self.set.intersects(ATIME) {
            flags.remove(ATIME);
        }
        (flags | self.set) - self.clear
    }

    /// The file-system data string mount(2) takes.
    pub fn data(&self) -> String {
        self.data.join(",")
    }
}

fn is_user_space(option: &str) -> bool {
    // x-* and X-* are for user-space helpers (systemd, udisks); comment= is fstab's.
    USER_SPACE.contains(&option)
        || option.starts_with("x-")
        || option.starts_with("X-")
        || option.starts_with("comment=")
}

fn data_options(fs: FsType) -> &'static [&'static str] {
    match fs {
        FsType::Ext4 => EXT4_DATA,
        FsType::Xfs => XFS_DATA,
    }
}

/// Whether `option` is one of `known`: a bare name, or `name=` followed by a value.
fn takes(known: &[&str], option: &str) -> bool {
    known.iter().any(|name| match name.strip_suffix('=') {
        Some(key) => option
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
            .is_some_and(|value| !value.is_empty()),
        None => *name == option,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(options: &[&str], fs: FsType) -> Result<MountOptions, String> {
        let options: Vec<String> = options.iter().map(|&o| o.to_owned()).collect();
        MountOptions::parse(&options, fs)
    }

    #[test]
    fn flags_data_and_user_space_options_are_told_apart() {
        let read = parse(
            &[
                "noatime,ro",
                "discard",
                "nosuid,_netdev,nofail,nouser,x-systemd.device-timeout=5",
            ],
            FsType::Ext4,
        )
        .unwrap();
        assert_eq!(
            read.set,
            MountFlags::NOATIME | MountFlags::RDONLY | MountFlags::NOSUID
        );
        assert_eq!(read.data(), "discard");
        let xfs = parse(
            &["nouuid", "logbufs=8", "context=system_u:object_r:x:s0"],
            FsType::Xfs,
        )
        .unwrap();
        assert_eq!(
            xfs.data(),
            "nouuid,logbufs=8,context=system_u:object_r:x:s0"
        );
        assert_eq!(parse(&[], FsType::Ext4).unwrap(), MountOptions::default());
    }

    #[test]
    fn exec_suid_and_dev_clear_their_flags_and_the_last_word_wins() {
        let read = parse(&["noexec,exec", "suid", "dev", "rw"], FsType::Ext4).unwrap();
        assert_eq!(read.set, MountFlags::empty());
        let base = MountFlags::NOEXEC | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::RDONLY;
        assert_eq!(read.applied_to(base), MountFlags::empty());
        let read = parse(&["exec,noexec"], FsType::Ext4).unwrap();
        assert_eq!(read.applied_to(MountFlags::empty()), MountFlags::NOEXEC);
    }

    #[test]
    fn an_access_time_flag_replaces_the_others() {
        let read = parse(&["noatime,strictatime"], FsType::Xfs).unwrap();
        assert_eq!(read.set, MountFlags::STRICTATIME);
        let base = MountFlags::RELATIME | MountFlags::NOSUID;
        assert_eq!(
            read.applied_to(base),
            MountFlags::STRICTATIME | MountFlags::NOSUID
        );
    }

    #[test]
    fn unknown_misplaced_and_unsupported_options_are_refused_by_name() {
        for (options, fs, says) in [
            (&["user"][..], FsType::Ext4, "nosuid,nodev,noexec"),
            (&["bind"], FsType::Ext4, "bind mounts"),
            (&["nouuid"], FsType::Ext4, "option of ext4"),
            (&["data=ordered"], FsType::Xfs, "option of xfs"),
            (&["commit"], FsType::Ext4, "\"commit\""),
            (&["no-such-thing"], FsType::Xfs, "mountOptions"),
        ] {
            let message = parse(options, fs).unwrap_err();
            assert!(message.contains(says), "{options:?}: {message}");
        }
        assert!(parse(&["commit=5", "data=ordered"], FsType::Ext4).is_ok());
    }
}

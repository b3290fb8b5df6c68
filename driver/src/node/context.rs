//! What a Node request carries, checked: required fields, the volume capability, and the
//! attachment target from the publish context (written by ControllerPublishVolume) and the
//! volume context (StorageClass parameters, written by CreateVolume).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use tonic::Status;

use super::host::{FsType, MountOptions, Target, Tunables};
use crate::contract::capability;
use crate::contract::{
    ADDRESS, CTRL_LOSS_TMO, FILE_PATH, FS_TYPE, KEEP_ALIVE_TMO, NQN, NR_IO_QUEUES, PORT,
    RECONNECT_DELAY,
};
use crate::csi::v1::VolumeCapability;
use crate::csi::v1::volume_capability::access_mode::Mode;
use crate::csi::v1::volume_capability::{AccessMode, AccessType};

pub use crate::contract::require;

/// A required path field, as the kernel names it in the mount table (see [`resolve`]), under
/// `root` (`node.kubeletDir`) when the node has one.
pub fn require_path(field: &str, value: &str, root: Option<&Path>) -> Result<PathBuf, Status> {
    require(field, value)?;
    resolve(Path::new(value), root)
        .map_err(|why| Status::invalid_argument(format!("{field} {value:?} {why}")))
}

/// `path` as mountinfo names it, refused unless it lies under `root` (either as given or as
/// the kernel resolves it: the kubelet's root directory may itself be a symlink, the admin's
/// choice) and holds no symlink below it. Kubelet makes plain directories; a symlink there was
/// made by someone else, and following it would have the node mount on, or remove, whatever it
/// names. `.` and `..` are resolved by name, which with no symlinks is what the kernel does.
/// Compared as given, a path with `..` never matches its mount, so a retry would mount again on
/// top (and unpublish could never remove the first).
pub fn resolve(path: &Path, root: Option<&Path>) -> Result<PathBuf, String> {
    if !path.is_absolute() {
        return Err("is not an absolute path".to_owned());
    }
    let mut normal = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => normal.push(name),
            Component::ParentDir => {
                normal.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let root = root.unwrap_or(Path::new("/"));
    let real_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let below = [root, real_root.as_path()]
        .into_iter()
        .find_map(|base| normal.strip_prefix(base).ok())
        .ok_or_else(|| {
            format!(
                "is outside the kubelet's directory {} (node.kubeletDir); the node touches \
                 nothing else",
                root.display()
            )
        })?
        .to_path_buf();
    let mut real = real_root;
    for name in below.components() {
        real.push(name);
        // A path that cannot be read (a dead mount) is a mount point, not a symlink.
        if std::fs::symlink_metadata(&real).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!(
                "goes through the symlink {}; the node follows no symlink it did not make",
                real.display()
            ));
        }
    }
    Ok(real)
}

/// How the volume is used on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Block,
    Mount { fs: FsType, flags: Vec<String> },
}

/// The checked capability: how it is accessed and in which mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub access: Access,
    pub mode: Mode,
}

impl Use {
    /// Whether the access mode lets only one publication exist on the node.
    pub fn single_writer(&self) -> bool {
        self.mode == Mode::SingleNodeSingleWriter
    }

    pub fn read_only_mode(&self) -> bool {
        self.mode == Mode::SingleNodeReaderOnly
    }
}

/// INVALID_ARGUMENT when the capability is missing or not supported; the file system comes from
/// the capability, else the volume context's `fsType`, else ext4.
pub fn volume_use(
    capability: Option<&VolumeCapability>,
    volume_context: &HashMap<String, String>,
) -> Result<Use, Status> {
    let capability =
        capability.ok_or_else(|| Status::invalid_argument("volume_capability is required"))?;
    capability::check(capability)?;
    let mode = capability
        .access_mode
        .as_ref()
        .map(AccessMode::mode)
        .unwrap_or(Mode::Unknown);
    let access = match &capability.access_type {
        Some(AccessType::Mount(mount)) => {
            let named = [mount.fs_type.as_str(), context_fs(volume_context)]
                .into_iter()
                .find(|fs| !fs.is_empty())
                .unwrap_or("ext4");
            let fs = named.parse().map_err(Status::invalid_argument)?;
            // Read now, so that an option the kernel would refuse fails the request before
            // anything is attached or formatted.
            MountOptions::parse(&mount.mount_flags, fs).map_err(Status::invalid_argument)?;
            Access::Mount {
                fs,
                flags: mount.mount_flags.clone(),
            }
        }
        _ => Access::Block,
    };
    Ok(Use { access, mode })
}

fn context_fs(volume_context: &HashMap<String, String>) -> &str {
    volume_context.get(FS_TYPE).map_or("", String::as_str)
}

/// The attachment target of a stage request. `defaults` are the node's tunables, which the
/// volume context (StorageClass parameters) overrides.
pub fn target(
    volume_id: &str,
    host_nqn: &str,
    publish_context: &HashMap<String, String>,
    volume_context: &HashMap<String, String>,
    defaults: Tunables,
) -> Result<Target, Status> {
    let field = |key: &str| {
        publish_context
            .get(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "publish_context lacks {key:?}: ControllerPublishVolume of this driver \
                     provides it"
                ))
            })
    };
    let port = field(PORT)?
        .parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "publish_context port {:?} is not a port",
                publish_context[PORT]
            ))
        })?;
    let mut tunables = defaults;
    if let Some(value) = volume_context.get(CTRL_LOSS_TMO) {
        tunables.ctrl_loss_tmo = value
            .parse::<i32>()
            .ok()
            .filter(|&s| s == -1 || s > 0)
            .ok_or_else(|| bad_context(CTRL_LOSS_TMO, value, "seconds, or -1"))?;
    }
    for (key, slot) in [
        (RECONNECT_DELAY, &mut tunables.reconnect_delay),
        (KEEP_ALIVE_TMO, &mut tunables.keep_alive_tmo),
    ] {
        if let Some(value) = volume_context.get(key) {
            *slot = positive(key, value)?;
        }
    }
    if let Some(value) = volume_context.get(NR_IO_QUEUES) {
        tunables.nr_io_queues = Some(positive(NR_IO_QUEUES, value)?);
    }
    let nqn = field(NQN)?.clone();
    let file_path = publish_context.get(FILE_PATH).cloned();
    names_the_volume(volume_id, &nqn, file_path.as_deref())?;
    Ok(Target {
        volume_id: volume_id.to_owned(),
        nqn,
        address: field(ADDRESS)?.clone(),
        port,
        host_nqn: host_nqn.to_owned(),
        file_path,
        tunables,
    })
}

/// INVALID_ARGUMENT unless the publish context names `volume_id`'s own subsystem and file: the
/// node attaches what the context names, so a context copied from another volume (a hand-made
/// VolumeAttachment, a stale PV) would otherwise hand a pod someone else's data under this
/// volume's name. The controller exports a volume as `<prefix>:<id>` in `<dir>/<id>.img` or
/// `<id>/volume.img` (see `ids`).
fn names_the_volume(volume_id: &str, nqn: &str, file_path: Option<&str>) -> Result<(), Status> {
    if nqn.rsplit_once(':').map(|(_, id)| id) != Some(volume_id) {
        return Err(Status::invalid_argument(format!(
            "publish_context nqn {nqn:?} is not volume {volume_id}'s subsystem (it ends in              :{volume_id}); the context belongs to another volume"
        )));
    }
    let mut names = file_path.map(|path| path.trim_end_matches('/').rsplit('/'));
    let ours = names.as_mut().is_none_or(|names| match names.next() {
        Some("volume.img") => names.next() == Some(volume_id),
        Some(file) => file.strip_suffix(".img") == Some(volume_id),
        None => false,
    });
    if !ours {
        return Err(Status::invalid_argument(format!(
            "publish_context {FILE_PATH} {:?} is not volume {volume_id}'s file ({volume_id}.img \
             or {volume_id}/volume.img); the context belongs to another volume",
            file_path.unwrap_or_default()
        )));
    }
    Ok(())
}

fn positive(key: &str, value: &str) -> Result<u32, Status> {
    value
        .parse::<u32>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| bad_context(key, value, "a positive whole number"))
}

fn bad_context(key: &str, value: &str, rule: &str) -> Status {
    Status::invalid_argument(format!(
        "volume_context {key}={value:?} must be {rule} (the StorageClass parameter of that name)"
    ))
}

/// Whether `path` exists at all (a dangling or dead mount point counts as existing).
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csi::v1::volume_capability::{BlockVolume, MountVolume};

    fn publish() -> HashMap<String, String> {
        HashMap::from([
            ("address".into(), "10.0.0.5".into()),
            ("port".into(), "4420".into()),
            ("nqn".into(), "nqn.2000-02.com.mikrotik:pvc-a".into()),
            ("filePath".into(), "storage-pool/csi/pvc-a.img".into()),
        ])
    }

    #[test]
    fn paths_resolve_to_what_mountinfo_names() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let root = real.join("kubelet");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("link")).unwrap();
        // The kubelet's directory through a symlink of the admin's.
        std::os::unix::fs::symlink(&root, real.join("var-kubelet")).unwrap();
        let given_root = real.join("var-kubelet");
        for (given, wanted) in [
            ("kubelet/a/b/../b/./", "a/b"),
            ("kubelet/a/b/not/yet", "a/b/not/yet"),
            ("kubelet/a/../new", "new"),
            ("kubelet/missing/../a", "a"),
        ] {
            for base in [&root, &given_root] {
                assert_eq!(
                    resolve(&real.join(given), Some(base)).unwrap(),
                    root.join(wanted),
                    "{given} under {}",
                    base.display()
                );
            }
        }
        assert_eq!(
            resolve(&given_root.join("a/b"), Some(&given_root)).unwrap(),
            root.join("a/b")
        );
        for (given, why) in [
            ("kubelet/link/b", "symlink"),
            ("kubelet/link", "symlink"),
            ("kubelet/../elsewhere", "outside"),
            ("other/x", "outside"),
        ] {
            let message = resolve(&real.join(given), Some(&root)).unwrap_err();
            assert!(message.contains(why), "{given}: {message}");
        }
        let message = resolve(Path::new("relative/x"), None).unwrap_err();
        assert!(message.contains("absolute"), "{message}");
        let status = require_path("target_path", &format!("{}/x", real.display()), Some(&root));
        assert_eq!(status.unwrap_err().code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn the_volume_context_overrides_the_node_tunables() {
        let context = HashMap::from([
            ("ctrlLossTmo".to_owned(), "-1".to_owned()),
            ("nrIoQueues".to_owned(), "2".to_owned()),
        ]);
        let target = target("pvc-a", "nqn.h", &publish(), &context, Tunables::default()).unwrap();
        assert_eq!(target.tunables.ctrl_loss_tmo, -1);
        assert_eq!(target.tunables.nr_io_queues, Some(2));
        assert_eq!(
            target.tunables.reconnect_delay,
            Tunables::default().reconnect_delay
        );
        assert_eq!(target.port, 4420);
        assert_eq!(
            target.file_path.as_deref(),
            Some("storage-pool/csi/pvc-a.img")
        );
    }

    #[test]
    fn bad_contexts_are_invalid_arguments_naming_the_key() {
        let mut no_nqn = publish();
        no_nqn.remove("nqn");
        let status = target("v", "h", &no_nqn, &HashMap::new(), Tunables::default()).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("\"nqn\""), "{}", status.message());
        let context = HashMap::from([("keepAliveTmo".to_owned(), "0".to_owned())]);
        let status = target("v", "h", &publish(), &context, Tunables::default()).unwrap_err();
        assert!(
            status.message().contains("keepAliveTmo"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn a_context_of_another_volume_is_refused() {
        let defaults = Tunables::default();
        let none = HashMap::new();
        let status = target("pvc-b", "h", &publish(), &none, defaults).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("nqn"), "{}", status.message());
        let mut moved = publish();
        moved.insert("filePath".into(), "storage-pool/csi/pvc-b.img".into());
        let status = target("pvc-a", "h", &moved, &none, defaults).unwrap_err();
        assert!(
            status.message().contains("filePath"),
            "{}",
            status.message()
        );
        for path in ["pool/pvc-a/volume.img", "pool/pvc-a.img"] {
            moved.insert("filePath".into(), path.into());
            target("pvc-a", "h", &moved, &none, defaults).unwrap();
        }
        moved.insert("filePath".into(), "pool/pvc-b/volume.img".into());
        target("pvc-a", "h", &moved, &none, defaults).unwrap_err();
    }

    #[test]
    fn the_file_system_comes_from_the_capability_then_the_context() {
        let mount = |fs: &str| VolumeCapability {
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter.into(),
            }),
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: fs.into(),
                mount_flags: vec!["noatime".into()],
                ..MountVolume::default()
            })),
        };
        let xfs_context = HashMap::from([("fsType".to_owned(), "xfs".to_owned())]);
        let fs = |cap: &VolumeCapability, context: &HashMap<String, String>| match volume_use(
            Some(cap),
            context,
        )
        .unwrap()
        .access
        {
            Access::Mount { fs, .. } => fs,
            Access::Block => panic!("block"),
        };
        let empty = HashMap::new();
        assert_eq!(fs(&mount(""), &empty), FsType::Ext4);
        assert_eq!(fs(&mount(""), &xfs_context), FsType::Xfs);
        assert_eq!(fs(&mount("ext4"), &xfs_context), FsType::Ext4);
        let block = VolumeCapability {
            access_type: Some(AccessType::Block(BlockVolume {})),
            ..mount("")
        };
        assert_eq!(
            volume_use(Some(&block), &HashMap::new()).unwrap().access,
            Access::Block
        );
        let status = volume_use(Some(&mount("zfs")), &HashMap::new()).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let status = volume_use(None, &HashMap::new()).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}

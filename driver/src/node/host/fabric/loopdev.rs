//! Loop mode: a volume's backing file in rds-sim's data directory behind a loop device, for
//! machines whose kernel has no nvme-tcp. The node learns where the file is from two explicit
//! facts: `node.loopRoot` (rds-sim's `<data-dir>/files`, the root of its `/file` tree) and the
//! disk's `file-path`, which ControllerPublishVolume puts in the publish context (`filePath`).
//!
//! Loop devices are set up with `LOOP_CONFIGURE` (Linux 5.8+) and found again through
//! `/sys/block/loopN/loop/backing_file`, so the node keeps no state of its own.

use std::fs::{self, File};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::{Attached, Device, Fabric, Target, Unhealthy, wait_for};
use crate::node::host::{DevNum, HostError, loopctl};

/// Loop devices over the files under `root`.
#[derive(Debug, Clone)]
pub struct LoopFabric {
    /// rds-sim's `<data-dir>/files`.
    pub root: PathBuf,
    pub sys: PathBuf,
    pub dev: PathBuf,
}

/// What the kernel appends to a loop device's backing file name once the file is unlinked.
const DELETED: &str = " (deleted)";

impl LoopFabric {
    pub fn new(root: PathBuf) -> LoopFabric {
        LoopFabric {
            root,
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }

    /// The backing file of `target`, which must lie under the root.
    fn backing_file(&self, target: &Target) -> Result<PathBuf, HostError> {
        let relative = target.file_path.as_deref().ok_or_else(|| {
            HostError::BadTarget(format!(
                "loop mode needs the disk's file path, but the publish context of {} has no \
                 filePath; publish the volume with this version of the controller",
                target.volume_id
            ))
        })?;
        let relative = Path::new(relative.trim_start_matches('/'));
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(HostError::BadTarget(format!(
                "filePath {relative:?} is not a plain relative path"
            )));
        }
        let path = self.root.join(relative);
        if !path.is_file() {
            return Err(HostError::BackingFileMissing(path));
        }
        let real = fs::canonicalize(&path)
            .map_err(HostError::io(format!("resolving {}", path.display())))?;
        // A plain relative path can still leave the root through a symlink inside it.
        let root = fs::canonicalize(&self.root)
            .map_err(HostError::io(format!("resolving {}", self.root.display())))?;
        if !real.starts_with(&root) {
            return Err(HostError::BadTarget(format!(
                "filePath {relative:?} leads out of the loop root {} (to {})",
                root.display(),
                real.display()
            )));
        }
        Ok(real)
    }

    /// Every configured loop device: its name and backing file as the kernel reports it.
    fn loops(&self) -> Result<Vec<(String, String)>, HostError> {
        loopctl::bound(&self.sys)
    }

    fn device_of(&self, name: &str) -> Result<Device, HostError> {
        let dir = self.sys.join("block").join(name);
        let read = |file: &str| {
            fs::read_to_string(dir.join(file))
                .map_err(HostError::io(format!("reading {}/{file}", dir.display())))
        };
        let dev: DevNum = read("dev")?.parse().map_err(HostError::BadTarget)?;
        let sectors: u64 = read("size")?.trim().parse().unwrap_or(0);
        Ok(Device {
            path: self.dev.join(name),
            dev,
            size: sectors * 512,
        })
    }

    fn attached(&self, name: String) -> Result<Attached, HostError> {
        Ok(Attached {
            device: Some(self.device_of(&name)?),
            controllers: vec![name],
        })
    }

    fn loop_for(&self, file: &Path) -> Result<Option<String>, HostError> {
        let file = file.to_string_lossy();
        Ok(self
            .loops()?
            .into_iter()
            .find(|(_, backing)| backing == file.as_ref())
            .map(|(name, _)| name))
    }

    fn open(&self, name: &str) -> Result<File, HostError> {
        let path = self.dev.join(name);
        File::open(&path).map_err(HostError::io(format!("opening {}", path.display())))
    }
}

impl Fabric for LoopFabric {
    fn connect(&self, target: &Target) -> Result<(), HostError> {
        let file = self.backing_file(target)?;
        if self.loop_for(&file)?.is_some() {
            return Ok(());
        }
        let name = loopctl::attach(&self.dev, &file, false)?;
        tracing::info!(device = name, file = %file.display(), "loop device set up");
        Ok(())
    }

    fn device(&self, target: &Target) -> Result<Device, HostError> {
        let file = self.backing_file(target)?;
        let wait = Duration::from_secs(10);
        let found = wait_for(wait, || {
            let Some(name) = self.loop_for(&file)? else {
                return Ok(None);
            };
            let device = self.device_of(&name)?;
            Ok(device.path.exists().then_some(device))
        })?;
        found.ok_or_else(|| HostError::DeviceTimeout {
            what: file.display().to_string(),
            waited_ms: wait.as_millis(),
        })
    }

    fn find(&self, volume_id: &str) -> Result<Option<Attached>, HostError> {
        let root = fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        let found = self.loops()?.into_iter().find(|(_, backing)| {
            let path = Path::new(backing.strip_suffix(DELETED).unwrap_or(backing));
            path.starts_with(&root) && backs(path, volume_id)
        });
        found.map(|(name, _)| self.attached(name)).transpose()
    }

    fn disconnect(&self, attached: &Attached) -> Result<(), HostError> {
        for name in &attached.controllers {
            let device = match self.open(name) {
                Ok(device) => device,
                Err(HostError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            match loopctl::clear(&device) {
                // ENXIO: nothing is bound to it any more.
                Err(e) if e.raw_os_error() != Some(libc::ENXIO) => {
                    return Err(HostError::io(format!("LOOP_CLR_FD on /dev/{name}"))(e));
                }
                _ => {}
            }
            drop(device);
            // While anyone (udev probing after a write) holds the device open, the kernel only
            // marks it to clear on the last close; wait a little for that.
            let gone = wait_for(Duration::from_secs(5), || {
                Ok(self.loops()?.iter().all(|(n, _)| n != name).then_some(()))
            })?;
            if gone.is_none() {
                tracing::warn!(
                    device = name,
                    "still open elsewhere; it detaches on last close"
                );
            }
        }
        Ok(())
    }

    fn rescan(&self, attached: &Attached) -> Result<u64, HostError> {
        let name = attached
            .controllers
            .first()
            .ok_or_else(|| HostError::Gone("the loop device".to_owned()))?;
        loopctl::set_capacity(&self.open(name)?)
            .map_err(HostError::io(format!("LOOP_SET_CAPACITY on /dev/{name}")))?;
        Ok(self.device_of(name)?.size)
    }

    fn health(&self, attached: &Attached) -> Result<(), Unhealthy> {
        let loops = self.loops().map_err(|e| Unhealthy::Broken(e.to_string()))?;
        for name in &attached.controllers {
            match loops.iter().find(|(n, _)| n == name) {
                None => {
                    return Err(Unhealthy::Broken(format!(
                        "loop device {name} is no longer set up"
                    )));
                }
                Some((_, backing)) if backing.ends_with(DELETED) => {
                    return Err(Unhealthy::Broken(format!(
                        "the backing file of {name} was deleted: the disk no longer exists on \
                         the (simulated) RDS"
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Whether `file` is the backing file of `volume_id` in either layout the controller makes: a
/// disk's `<pool>/<id>.img`, or a subvolume's `<pool>/<id>/volume.img` (StorageClass
/// `layout: subvolume`).
fn backs(file: &Path, volume_id: &str) -> bool {
    let parent = file.parent().and_then(Path::file_name);
    match file.file_name().and_then(|n| n.to_str()) {
        Some("volume.img") => parent.is_some_and(|p| p == volume_id),
        Some(file_name) => file_name.strip_suffix(".img") == Some(volume_id),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::host::fabric::Tunables;

    fn target(file_path: Option<&str>) -> Target {
        Target {
            volume_id: "pvc-a".into(),
            nqn: "nqn.2000-02.com.mikrotik:pvc-a".into(),
            address: "127.0.0.1".into(),
            port: 4420,
            host_nqn: "nqn.2014-08.org.nvmexpress:uuid:1".into(),
            file_path: file_path.map(str::to_owned),
            tunables: Tunables::default(),
        }
    }

    #[test]
    fn the_backing_file_comes_from_the_root_and_the_file_path() {
        let dir = tempfile::tempdir().unwrap();
        let fabric = LoopFabric::new(dir.path().to_owned());
        fs::create_dir_all(dir.path().join("storage-pool/csi")).unwrap();
        fs::write(dir.path().join("storage-pool/csi/pvc-a.img"), "").unwrap();
        let file = fabric
            .backing_file(&target(Some("/storage-pool/csi/pvc-a.img")))
            .unwrap();
        assert!(file.ends_with("storage-pool/csi/pvc-a.img"), "{file:?}");

        let missing = fabric.backing_file(&target(Some("storage-pool/csi/pvc-b.img")));
        assert!(matches!(missing, Err(HostError::BackingFileMissing(_))));
        let message = fabric.backing_file(&target(None)).unwrap_err().to_string();
        assert!(message.contains("filePath"), "{message}");
        let escape = fabric.backing_file(&target(Some("storage-pool/../../etc/passwd")));
        assert!(matches!(escape, Err(HostError::BadTarget(_))));
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::os::unix::fs::symlink(
            outside.path(),
            dir.path().join("storage-pool/csi/pvc-l.img"),
        )
        .unwrap();
        let escape = fabric.backing_file(&target(Some("storage-pool/csi/pvc-l.img")));
        assert!(matches!(escape, Err(HostError::BadTarget(_))), "{escape:?}");
    }

    #[test]
    fn loops_are_found_by_the_volume_id_in_their_backing_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("files");
        let sys = dir.path().join("sys");
        for (name, backing, dev) in [
            ("loop0", "/elsewhere/pvc-a.img".to_owned(), "7:0"),
            (
                "loop1",
                format!("{}/pool/csi/pvc-a.img{DELETED}", root.display()),
                "7:1",
            ),
            (
                "loop2",
                format!("{}/pool/pvc-s/volume.img", root.display()),
                "7:2",
            ),
        ] {
            fs::create_dir_all(sys.join("block").join(name).join("loop")).unwrap();
            fs::write(
                sys.join("block").join(name).join("loop/backing_file"),
                format!("{backing}\n"),
            )
            .unwrap();
            fs::write(sys.join("block").join(name).join("dev"), dev).unwrap();
            fs::write(sys.join("block").join(name).join("size"), "2048").unwrap();
        }
        fs::create_dir_all(sys.join("block/sda")).unwrap();
        fs::create_dir_all(&root).unwrap();
        let fabric = LoopFabric {
            root: root.clone(),
            sys,
            dev: dir.path().join("dev"),
        };
        let attached = fabric.find("pvc-a").unwrap().unwrap();
        assert_eq!(attached.controllers, ["loop1"]);
        assert_eq!(attached.device.as_ref().unwrap().size, 1 << 20);
        let message = fabric.health(&attached).unwrap_err().to_string();
        assert!(message.contains("was deleted"), "{message}");
        assert_eq!(fabric.find("pvc-b").unwrap(), None);
        let subvolume = fabric.find("pvc-s").unwrap().unwrap();
        assert_eq!(
            subvolume.controllers,
            ["loop2"],
            "the subvolume layout was not found"
        );
        assert_eq!(fabric.find("pool").unwrap(), None);
    }
}

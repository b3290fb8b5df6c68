//! A fake host for the node logic's unit tests: attachments, mounts, file systems and device
//! nodes are kept in memory; the paths themselves are real directories in a temporary directory,
//! so the logic's own file operations (creating and removing target paths) run for real.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::mount::MountFlags;

use super::host::*;

#[derive(Debug, Clone)]
pub struct FakeAttachment {
    pub controller: String,
    pub device: Device,
    pub live: bool,
    pub device_present: bool,
}

#[derive(Debug, Default)]
pub struct State {
    pub attached: BTreeMap<String, FakeAttachment>,
    pub mounts: Vec<MountEntry>,
    pub filesystems: HashMap<PathBuf, FsType>,
    /// Devices whose data the probe refuses, and what it says they hold.
    pub foreign: HashMap<PathBuf, String>,
    pub device_nodes: HashMap<PathBuf, DevNum>,
    pub stale: HashSet<PathBuf>,
    pub connects: u32,
    pub disconnects: Vec<String>,
    pub mkfs: Vec<(PathBuf, FsType)>,
    pub grown: Vec<(PathBuf, FsType)>,
    /// The size a rescan finds.
    pub exported_size: u64,
    /// Read-only views: view → the device it shows.
    pub views: BTreeMap<DevNum, DevNum>,
}

/// One shared state behind every trait.
#[derive(Clone, Default)]
pub struct Fake {
    state: Arc<Mutex<State>>,
}

pub const SIZE: u64 = 1 << 30;

impl Fake {
    pub fn host(&self) -> Host {
        Host {
            fabric: Arc::new(self.clone()),
            mounts: Arc::new(self.clone()),
            format: Arc::new(self.clone()),
            resize: Arc::new(self.clone()),
            views: Arc::new(self.clone()),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// The kernel drops the block device of `volume_id`, as after a connection lost for good.
    pub fn lose_device(&self, volume_id: &str) {
        self.state()
            .attached
            .get_mut(volume_id)
            .expect("attached")
            .device_present = false;
    }

    fn attached(&self, volume_id: &str) -> Option<Attached> {
        self.state().attached.get(volume_id).map(|a| Attached {
            controllers: vec![a.controller.clone()],
            device: a.device_present.then(|| a.device.clone()),
        })
    }
}

fn einval(what: &str) -> HostError {
    HostError::Io {
        what: what.to_owned(),
        source: io::Error::from_raw_os_error(libc::EINVAL),
    }
}

impl Fabric for Fake {
    fn connect(&self, target: &Target) -> Result<(), HostError> {
        let mut state = self.state();
        if state.attached.contains_key(&target.volume_id) {
            return Ok(());
        }
        state.connects += 1;
        let n = state.connects;
        state.attached.insert(
            target.volume_id.clone(),
            FakeAttachment {
                controller: format!("nvme{n}"),
                device: Device {
                    path: PathBuf::from(format!("/dev/nvme{n}n1")),
                    dev: DevNum {
                        major: 259,
                        minor: n,
                    },
                    size: SIZE,
                },
                live: true,
                device_present: true,
            },
        );
        Ok(())
    }

    fn device(&self, target: &Target) -> Result<Device, HostError> {
        self.attached(&target.volume_id)
            .and_then(|a| a.device)
            .ok_or_else(|| HostError::DeviceTimeout {
                what: target.nqn.clone(),
                waited_ms: 0,
            })
    }

    fn find(&self, volume_id: &str) -> Result<Option<Attached>, HostError> {
        Ok(self.attached(volume_id))
    }

    fn disconnect(&self, attached: &Attached) -> Result<(), HostError> {
        let mut state = self.state();
        state
            .attached
            .retain(|_, a| !attached.controllers.contains(&a.controller));
        state
            .disconnects
            .extend(attached.controllers.iter().cloned());
        Ok(())
    }

    fn rescan(&self, attached: &Attached) -> Result<u64, HostError> {
        let mut state = self.state();
        let size = state.exported_size.max(SIZE);
        for a in state.attached.values_mut() {
            if attached.controllers.contains(&a.controller) {
                a.device.size = size;
            }
        }
        Ok(size)
    }

    fn health(&self, attached: &Attached) -> Result<(), Unhealthy> {
        let state = self.state();
        let live = state
            .attached
            .values()
            .any(|a| attached.controllers.contains(&a.controller) && a.live);
        if live {
            Ok(())
        } else {
            Err(Unhealthy::Reconnecting(format!(
                "NVMe controller {} is connecting",
                attached.controllers.join(", ")
            )))
        }
    }
}

impl Mounts for Fake {
    fn list(&self) -> Result<Vec<MountEntry>, HostError> {
        Ok(self.state().mounts.clone())
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
        let mut state = self.state();
        let dev = state
            .attached
            .values()
            .find(|a| a.device.path == device)
            .map(|a| a.device.dev)
            .ok_or_else(|| einval("no such device"))?;
        state.mounts.push(MountEntry {
            dev,
            mount_point: target.to_owned(),
            fs_type: fs.as_str().to_owned(),
            source: device.display().to_string(),
            readonly: options.set.contains(MountFlags::RDONLY),
        });
        Ok(())
    }

    /// Like the kernel's: the bind starts with the source's flags, changed by `options`.
    fn bind(&self, source: &Path, target: &Path, options: &MountOptions) -> Result<(), HostError> {
        let mut state = self.state();
        let mut entry = state
            .mounts
            .iter()
            .rfind(|m| m.mount_point == source)
            .cloned()
            .ok_or_else(|| einval("bind of a path that is not a mount"))?;
        let inherited = if entry.readonly {
            MountFlags::RDONLY
        } else {
            MountFlags::empty()
        };
        entry.mount_point = target.to_owned();
        entry.readonly = options.applied_to(inherited).contains(MountFlags::RDONLY);
        state.mounts.push(entry);
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), HostError> {
        let mut state = self.state();
        let at = state
            .mounts
            .iter()
            .rposition(|m| m.mount_point == target)
            .ok_or_else(|| einval("not mounted"))?;
        state.mounts.remove(at);
        Ok(())
    }

    fn usage(&self, path: &Path) -> io::Result<Usage> {
        if self.state().stale.contains(path) {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        Ok(Usage {
            total_bytes: 1000,
            available_bytes: 600,
            used_bytes: 400,
            total_inodes: 100,
            free_inodes: 90,
            used_inodes: 10,
        })
    }

    fn make_device_node(&self, path: &Path, dev: DevNum) -> Result<(), HostError> {
        std::fs::write(path, "").map_err(HostError::io("fake device node"))?;
        self.state().device_nodes.insert(path.to_owned(), dev);
        Ok(())
    }

    /// A node made here, or a hard link of one (the same inode).
    fn device_node(&self, path: &Path) -> Result<Option<DevNum>, HostError> {
        use std::os::unix::fs::MetadataExt;
        let Ok(wanted) = std::fs::metadata(path) else {
            return Ok(None);
        };
        let same = |node: &PathBuf| std::fs::metadata(node).is_ok_and(|m| m.ino() == wanted.ino());
        Ok(self
            .state()
            .device_nodes
            .iter()
            .find(|(node, _)| same(node))
            .map(|(_, dev)| *dev))
    }

    /// The devices of attached volumes whose device is present.
    fn is_block_device(&self, dev: DevNum) -> bool {
        self.state()
            .attached
            .values()
            .any(|a| a.device_present && a.device.dev == dev)
            || self.state().views.contains_key(&dev)
    }
}

/// Views get loop numbers from 7:100 up.
impl Views for Fake {
    fn view(&self, device: &Device) -> Result<DevNum, HostError> {
        if let Some(view) = self.views_of(device.dev)?.first() {
            return Ok(*view);
        }
        let mut state = self.state();
        let view = DevNum {
            major: 7,
            minor: 100 + state.views.len() as u32,
        };
        state.views.insert(view, device.dev);
        Ok(view)
    }

    fn viewed(&self, dev: DevNum) -> Result<Option<DevNum>, HostError> {
        Ok(self.state().views.get(&dev).copied())
    }

    fn views_of(&self, device: DevNum) -> Result<Vec<DevNum>, HostError> {
        let state = self.state();
        Ok(state
            .views
            .iter()
            .filter(|(_, shown)| **shown == device)
            .map(|(view, _)| *view)
            .collect())
    }

    fn resize(&self, _device: DevNum) -> Result<(), HostError> {
        Ok(())
    }

    fn remove(&self, view: DevNum) -> Result<(), HostError> {
        self.state().views.remove(&view);
        Ok(())
    }
}

impl Format for Fake {
    fn probe(&self, device: &Path, _volume_id: &str) -> Result<Found, HostError> {
        let state = self.state();
        if let Some(what) = state.foreign.get(device) {
            return Err(HostError::ForeignData {
                device: device.to_owned(),
                what: what.clone(),
            });
        }
        Ok(state
            .filesystems
            .get(device)
            .map_or(Found::Blank, |&fs| Found::Fs(fs)))
    }

    fn make(
        &self,
        device: &Path,
        fs: FsType,
        _volume_id: &str,
        _over_unfinished: bool,
    ) -> Result<(), HostError> {
        let mut state = self.state();
        state.filesystems.insert(device.to_owned(), fs);
        state.mkfs.push((device.to_owned(), fs));
        Ok(())
    }
}

impl Resize for Fake {
    fn grow(&self, device: &Path, _mount_point: &Path, fs: FsType) -> Result<(), HostError> {
        self.state().grown.push((device.to_owned(), fs));
        Ok(())
    }
}

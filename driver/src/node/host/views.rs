//! Read-only views of block devices. A raw block volume published read-only gets the device
//! node of a read-only loop device over the volume's device rather than of the device itself,
//! so the kernel refuses every write whatever permissions the container runtime gives the node
//! (the volume's own device cannot be made read-only while its other publications write). Views
//! are found again from the kernel's state (a loop device's backing device number), so the node
//! keeps none.

use std::fs::{self, File};
use std::path::PathBuf;

use super::{DevNum, Device, HostError, loopctl};

/// Read-only views of block devices.
pub trait Views: Send + Sync {
    /// The read-only view of `device`, made when it has none.
    fn view(&self, device: &Device) -> Result<DevNum, HostError>;
    /// The device `dev` is a read-only view of, if it is one.
    fn viewed(&self, dev: DevNum) -> Result<Option<DevNum>, HostError>;
    /// The views of `device`.
    fn views_of(&self, device: DevNum) -> Result<Vec<DevNum>, HostError>;
    /// Makes every view of `device` take the device's size now.
    fn resize(&self, device: DevNum) -> Result<(), HostError>;
    /// Removes the view `view`; gone already is success.
    fn remove(&self, view: DevNum) -> Result<(), HostError>;
}

/// Views as read-only loop devices.
#[derive(Debug, Clone)]
pub struct LoopViews {
    pub sys: PathBuf,
    pub dev: PathBuf,
}

impl Default for LoopViews {
    fn default() -> LoopViews {
        LoopViews {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

impl LoopViews {
    /// The kernel name of block device `dev` when it is a loop device.
    fn loop_name(&self, dev: DevNum) -> Option<String> {
        let link = fs::read_link(self.sys.join("dev/block").join(dev.to_string())).ok()?;
        let name = link.file_name()?.to_str()?.to_owned();
        name.starts_with("loop").then_some(name)
    }

    /// Opens loop device `name`; `None` when it does not exist.
    fn open(&self, name: &str) -> Result<Option<File>, HostError> {
        let path = self.dev.join(name);
        match File::open(&path) {
            Ok(device) => Ok(Some(device)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostError::io(format!("opening {}", path.display()))(e)),
        }
    }

    /// The device loop device `name` is a read-only view of.
    fn status(&self, name: &str) -> Result<Option<DevNum>, HostError> {
        let Some(device) = self.open(name)? else {
            return Ok(None);
        };
        let status = loopctl::status(&device)
            .map_err(HostError::io(format!("LOOP_GET_STATUS64 on /dev/{name}")))?;
        Ok(status.and_then(|(backing, read_only)| read_only.then_some(backing)))
    }

    /// The loop devices that are views of `device`: name and device number.
    fn of(&self, device: DevNum) -> Result<Vec<(String, DevNum)>, HostError> {
        let mut views = Vec::new();
        for (name, _) in loopctl::bound(&self.sys)? {
            let dev_file = self.sys.join("block").join(&name).join("dev");
            let dev = fs::read_to_string(dev_file)
                .ok()
                .and_then(|text| text.parse().ok());
            if let Some(dev) = dev
                && self.status(&name)? == Some(device)
            {
                views.push((name, dev));
            }
        }
        Ok(views)
    }
}

impl Views for LoopViews {
    fn view(&self, device: &Device) -> Result<DevNum, HostError> {
        if let Some((_, view)) = self.of(device.dev)?.first() {
            return Ok(*view);
        }
        let name = loopctl::attach(&self.dev, &device.path, true)?;
        let dev_file = self.sys.join("block").join(&name).join("dev");
        fs::read_to_string(&dev_file)
            .map_err(HostError::io(format!("reading {}", dev_file.display())))?
            .parse()
            .map_err(HostError::BadTarget)
    }

    fn viewed(&self, dev: DevNum) -> Result<Option<DevNum>, HostError> {
        match self.loop_name(dev) {
            Some(name) => self.status(&name),
            None => Ok(None),
        }
    }

    fn views_of(&self, device: DevNum) -> Result<Vec<DevNum>, HostError> {
        Ok(self.of(device)?.into_iter().map(|(_, dev)| dev).collect())
    }

    fn resize(&self, device: DevNum) -> Result<(), HostError> {
        for (name, _) in self.of(device)? {
            if let Some(view) = self.open(&name)? {
                loopctl::set_capacity(&view)
                    .map_err(HostError::io(format!("LOOP_SET_CAPACITY on /dev/{name}")))?;
            }
        }
        Ok(())
    }

    fn remove(&self, view: DevNum) -> Result<(), HostError> {
        let Some(name) = self.loop_name(view) else {
            return Ok(());
        };
        let Some(device) = self.open(&name)? else {
            return Ok(());
        };
        match loopctl::clear(&device) {
            // ENXIO: nothing is bound to it any more.
            Err(e) if e.raw_os_error() != Some(libc::ENXIO) => {
                Err(HostError::io(format!("LOOP_CLR_FD on /dev/{name}"))(e))
            }
            _ => Ok(()),
        }
    }
}

//! The node plugin's gauges, read from the host when `/metrics` is scraped: the kernel's
//! NVMe/TCP controllers by state, and mounts under the kubelet directory whose device is gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the node's host state is read.
#[derive(Debug, Clone)]
pub struct NodeProbe {
    /// `/sys` (a test's directory elsewhere).
    pub sysfs: PathBuf,
    /// `/proc/self/mountinfo`.
    pub mountinfo: PathBuf,
    /// The kubelet's root: only mounts below it are the driver's.
    pub kubelet_dir: Option<PathBuf>,
}

impl NodeProbe {
    pub fn host(kubelet_dir: Option<PathBuf>) -> NodeProbe {
        NodeProbe {
            sysfs: PathBuf::from("/sys"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            kubelet_dir,
        }
    }

    /// NVMe controllers over TCP, by their `state` (`live`, `connecting`, `resetting`,
    /// `deleting`, …).
    pub fn tcp_controllers(&self) -> BTreeMap<String, i64> {
        let mut states = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(self.sysfs.join("class/nvme")) else {
            return states;
        };
        for entry in entries.flatten() {
            let read = |name: &str| {
                std::fs::read_to_string(entry.path().join(name))
                    .map(|text| text.trim().to_owned())
                    .unwrap_or_default()
            };
            if read("transport") == "tcp" {
                *states.entry(read("state")).or_default() += 1;
            }
        }
        states
    }

    /// Mounts under the kubelet directory whose source device no longer exists: a volume whose
    /// NVMe/TCP controller was given up (ctrlLossTmo ran out) or whose loop device went away.
    pub fn stale_mounts(&self) -> i64 {
        let text = std::fs::read_to_string(&self.mountinfo).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let point = line.split(' ').nth(4)?;
                let source = line.split(" - ").nth(1)?.split(' ').nth(1)?;
                Some((point, source))
            })
            .filter(|(point, _)| {
                self.kubelet_dir
                    .as_ref()
                    .is_none_or(|dir| Path::new(point).starts_with(dir))
            })
            .filter(|(_, source)| source.starts_with("/dev/") && !Path::new(source).exists())
            .count() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_are_counted_by_state_and_only_over_tcp() {
        let sys = tempfile::tempdir().unwrap();
        for (name, transport, state) in [
            ("nvme0", "tcp", "live"),
            ("nvme1", "tcp", "connecting"),
            ("nvme2", "tcp", "live"),
            ("nvme3", "pcie", "live"),
        ] {
            let dir = sys.path().join("class/nvme").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("transport"), format!("{transport}\n")).unwrap();
            std::fs::write(dir.join("state"), format!("{state}\n")).unwrap();
        }
        let probe = NodeProbe {
            sysfs: sys.path().to_path_buf(),
            ..NodeProbe::host(None)
        };
        assert_eq!(
            probe.tcp_controllers(),
            BTreeMap::from([("connecting".to_owned(), 1), ("live".to_owned(), 2)])
        );
    }

    #[test]
    fn a_mount_under_the_kubelet_directory_without_its_device_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let mountinfo = dir.path().join("mountinfo");
        let line = |id: u32, point: &str, source: &str| {
            format!("{id} 1 259:0 / {point} rw,relatime shared:1 - xfs {source} rw\n")
        };
        std::fs::write(
            &mountinfo,
            [
                // Gone: counted.
                line(1, "/var/lib/kubelet/plugins/x/globalmount", "/dev/nvme9n9"),
                // A device that exists.
                line(2, "/var/lib/kubelet/pods/p/volumes/v", "/dev/null"),
                // Not under the kubelet directory.
                line(3, "/mnt/other", "/dev/nvme8n8"),
                // Not a device.
                line(4, "/var/lib/kubelet/pods/q/volumes/t", "tmpfs"),
            ]
            .concat(),
        )
        .unwrap();
        let probe = NodeProbe {
            mountinfo,
            ..NodeProbe::host(Some(PathBuf::from("/var/lib/kubelet")))
        };
        assert_eq!(probe.stale_mounts(), 1);
    }
}

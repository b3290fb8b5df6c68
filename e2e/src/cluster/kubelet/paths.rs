//! Where kubelet puts a CSI volume on its node, and the names it derives from a volume: pure, so
//! the unit tests hold them to Kubernetes' own algorithms (`pkg/volume/csi` and
//! `pkg/kubelet/kubelet_getters.go` of v1.36).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The CSI volume plugin's name, and its escaped form in a pod's directories.
const CSI_PLUGIN: &str = "kubernetes.io/csi";
const CSI_PLUGIN_ESCAPED: &str = "kubernetes.io~csi";

/// The VolumeAttachment kubelet and the attach-detach controller expect for `volume_handle` of
/// `driver` on `node`: `getAttachmentName` hashes the three concatenated, handle first.
pub fn attachment_name(volume_handle: &str, driver: &str, node: &str) -> String {
    format!(
        "csi-{}",
        sha256_hex(&format!("{volume_handle}{driver}{node}"))
    )
}

/// The name a volume has in `Node.status.volumesInUse` and `volumesAttached`.
pub fn unique_volume_name(driver: &str, volume_handle: &str) -> String {
    format!("{CSI_PLUGIN}/{driver}^{volume_handle}")
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// kubelet's directory layout under its root directory (`--root-dir`, `/var/lib/kubelet`).
#[derive(Debug, Clone)]
pub struct KubeletPaths {
    root: PathBuf,
}

impl KubeletPaths {
    pub fn new(root: &Path) -> KubeletPaths {
        KubeletPaths {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file system volume's staging path (`makeDeviceMountPath`): one per volume on the node.
    pub fn staging(&self, driver: &str, volume_handle: &str) -> PathBuf {
        self.plugin_dir()
            .join(driver)
            .join(sha256_hex(volume_handle))
            .join("globalmount")
    }

    /// A block volume's staging path (`csiBlockMapper.GetStagingPath`), named by its PV.
    pub fn block_staging(&self, pv: &str) -> PathBuf {
        self.block_dir().join("staging").join(pv)
    }

    /// A file system volume's publish target in a pod (`csiMountMgr.GetPath`).
    pub fn mount_target(&self, pod_uid: &str, pv: &str) -> PathBuf {
        self.pod_dir(pod_uid)
            .join("volumes")
            .join(CSI_PLUGIN_ESCAPED)
            .join(pv)
            .join("mount")
    }

    /// A block volume's publish target, the device file NodePublishVolume makes
    /// (`csiBlockMapper.getPublishPath`).
    pub fn block_publish(&self, pod_uid: &str, pv: &str) -> PathBuf {
        self.block_dir().join("publish").join(pv).join(pod_uid)
    }

    /// The pod's link to its block volume's device file, what a container's device is made from
    /// (`MapBlockVolume` under `getPodVolumeDeviceDir`).
    pub fn block_pod_link(&self, pod_uid: &str, pv: &str) -> PathBuf {
        self.pod_dir(pod_uid)
            .join("volumeDevices")
            .join(CSI_PLUGIN_ESCAPED)
            .join(pv)
    }

    /// Everything kubelet keeps for the pod.
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.root.join("pods").join(pod_uid)
    }

    fn plugin_dir(&self) -> PathBuf {
        self.root.join("plugins").join(CSI_PLUGIN)
    }

    fn block_dir(&self) -> PathBuf {
        self.plugin_dir().join("volumeDevices")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors come from coreutils, an implementation of SHA-256 other than ours:
    //   printf %s 'pvc-7c1f0a52rds.csi.mikrotik.comnode-a' | sha256sum
    //   printf %s 'pvc-7c1f0a52' | sha256sum
    const ATTACHMENT_SHA: &str = "50a9fe08873519a5928356bd5211c717f63aae04c613f90e214e3b03b4439609";
    const HANDLE_SHA: &str = "dd33e7b03381b2d2e584bb858a931fa47908223e68f39493f3a98fde7bcc0d76";

    #[test]
    fn the_attachment_name_hashes_handle_driver_and_node_in_that_order() {
        assert_eq!(
            attachment_name("pvc-7c1f0a52", "rds.csi.mikrotik.com", "node-a"),
            format!("csi-{ATTACHMENT_SHA}")
        );
        assert_ne!(
            attachment_name("rds.csi.mikrotik.com", "pvc-7c1f0a52", "node-a"),
            format!("csi-{ATTACHMENT_SHA}")
        );
    }

    #[test]
    fn the_unique_name_is_the_plugin_driver_and_handle() {
        assert_eq!(
            unique_volume_name("rds.csi.mikrotik.com", "pvc-1"),
            "kubernetes.io/csi/rds.csi.mikrotik.com^pvc-1"
        );
    }

    #[test]
    fn paths_follow_kubelets_layout() {
        let paths = KubeletPaths::new(Path::new("/var/lib/kubelet"));
        assert_eq!(
            paths.staging("rds.csi.mikrotik.com", "pvc-7c1f0a52"),
            Path::new(&format!(
                "/var/lib/kubelet/plugins/kubernetes.io/csi/rds.csi.mikrotik.com/{HANDLE_SHA}/globalmount"
            ))
        );
        assert_eq!(
            paths.mount_target("uid-1", "pv-1"),
            Path::new("/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/pv-1/mount")
        );
        assert_eq!(
            paths.block_staging("pv-1"),
            Path::new("/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/staging/pv-1")
        );
        assert_eq!(
            paths.block_publish("uid-1", "pv-1"),
            Path::new(
                "/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pv-1/uid-1"
            )
        );
        assert_eq!(
            paths.block_pod_link("uid-1", "pv-1"),
            Path::new("/var/lib/kubelet/pods/uid-1/volumeDevices/kubernetes.io~csi/pv-1")
        );
    }
}

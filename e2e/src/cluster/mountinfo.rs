//! What a node still holds of CSI volumes, read the same way whichever machine the node is: the
//! mount points in its mountinfo (proc(5)) and the device files and links under kubelet's CSI
//! directories. The process cluster reads this host's; the kind target reads a node container's
//! through `docker exec`.

use std::path::Path;

use rds_csi::node::host::mount::parse_mountinfo;

/// Whether `path` is one of kubelet's CSI places under its root directory `root`: staging and
/// block publish paths under `plugins/kubernetes.io/csi/`, a pod's mounted volume or block
/// device link under `pods/<uid>/volumes|volumeDevices/kubernetes.io~csi/`. A pod's other
/// volumes (service account tokens, emptyDirs) are not.
pub fn is_csi_path(root: &Path, path: &str) -> bool {
    let Some(rest) = Path::new(path).strip_prefix(root).ok() else {
        return false;
    };
    let parts: Vec<&str> = rest.iter().filter_map(|p| p.to_str()).collect();
    matches!(
        parts.as_slice(),
        ["plugins", "kubernetes.io", "csi", _, ..]
            | [
                "pods",
                _,
                "volumes" | "volumeDevices",
                "kubernetes.io~csi",
                _,
                ..
            ]
    )
}

/// The mount points in `mountinfo` that are CSI places under `root` (the driver's own parser
/// reads it, escapes undone).
pub fn csi_mounts(mountinfo: &str, root: &Path) -> Vec<String> {
    parse_mountinfo(mountinfo)
        .into_iter()
        .map(|m| m.mount_point.display().to_string())
        .filter(|point| is_csi_path(root, point))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as a kind node's mountinfo shows them: a staged ext4, its publication in a pod, a
    /// block volume's mapping, a service account token and the node's own root.
    const NODE: &str = "\
1234 1200 0:45 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/x
1300 1234 259:3 / /var/lib/kubelet/plugins/kubernetes.io/csi/rds.csi.mikrotik.com/0a1b/globalmount rw,relatime shared:300 - ext4 /dev/nvme1n1 rw
1301 1234 259:3 / /var/lib/kubelet/pods/6c9e-uid/volumes/kubernetes.io~csi/pvc-1/mount rw,relatime shared:300 - ext4 /dev/nvme1n1 rw
1302 1234 0:5 /nvme2n1 /var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/pvc-2/dev/77aa-uid rw - devtmpfs udev rw
1303 1234 0:60 / /var/lib/kubelet/pods/6c9e-uid/volumes/kubernetes.io~projected/kube-api-access-x rw - tmpfs tmpfs rw
1304 1234 0:61 / /var/lib/kubelet/pods/6c9e-uid/volumes/kubernetes.io~csi/pvc\\0403/mount rw - xfs /dev/nvme3n1 rw
";

    #[test]
    fn only_kubelets_csi_places_under_the_root_count() {
        let root = Path::new("/var/lib/kubelet");
        assert_eq!(
            csi_mounts(NODE, root),
            [
                "/var/lib/kubelet/plugins/kubernetes.io/csi/rds.csi.mikrotik.com/0a1b/globalmount",
                "/var/lib/kubelet/pods/6c9e-uid/volumes/kubernetes.io~csi/pvc-1/mount",
                "/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/pvc-2/dev/77aa-uid",
                "/var/lib/kubelet/pods/6c9e-uid/volumes/kubernetes.io~csi/pvc 3/mount",
            ]
        );
        assert!(csi_mounts(NODE, Path::new("/tmp/node-a/kubelet")).is_empty());
        assert!(is_csi_path(
            root,
            "/var/lib/kubelet/pods/u/volumeDevices/kubernetes.io~csi/pvc-2"
        ));
        assert!(!is_csi_path(
            root,
            "/var/lib/kubelet/plugins/kubernetes.io/csi"
        ));
        assert!(!is_csi_path(
            root,
            "/var/lib/kubelet/plugins/rds.csi.mikrotik.com/csi.sock"
        ));
        assert!(!is_csi_path(
            root,
            "/var/lib/kubeletx/plugins/kubernetes.io/csi/a"
        ));
    }
}

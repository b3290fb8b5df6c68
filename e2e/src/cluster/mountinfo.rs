//! What a node still holds of CSI volumes, read the same way whichever machine the node is: the
//! mount points in its mountinfo (proc(5)) and the device files and links under kubelet's CSI
//! directories. The process cluster reads this host's; the kind target reads a node container's
//! through `docker exec`.

use std::path::Path;

/// One line of mountinfo: where something is mounted, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: String,
    pub source: String,
}

/// The mounts of a mountinfo text, with the kernel's octal escapes (`\040` for a space) undone.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let point = line.split(' ').nth(4)?;
            // After the optional fields: " - <fstype> <source> <options>".
            let source = line.split(" - ").nth(1)?.split(' ').nth(1)?;
            Some(Mount {
                point: unescape(point),
                source: unescape(source),
            })
        })
        .collect()
}

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

/// The mount points in `mountinfo` that are CSI places under `root`.
pub fn csi_mounts(mountinfo: &str, root: &Path) -> Vec<String> {
    parse(mountinfo)
        .into_iter()
        .map(|m| m.point)
        .filter(|point| is_csi_path(root, point))
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
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
    fn points_and_sources_are_read_and_unescaped() {
        let mounts = parse(NODE);
        assert_eq!(mounts.len(), 6);
        assert_eq!(mounts[1].source, "/dev/nvme1n1");
        assert_eq!(
            mounts[5].point,
            "/var/lib/kubelet/pods/6c9e-uid/volumes/kubernetes.io~csi/pvc 3/mount"
        );
    }

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

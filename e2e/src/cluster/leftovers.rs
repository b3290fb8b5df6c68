//! What a failed case leaves on this host: the node plugins' mounts under the cluster target's
//! directory and their loop devices over rds-sim's files. A case that passes has unpublished and
//! unstaged everything through the CSI calls; one that failed midway has not, and without this the
//! mounts and loop devices would outlive the target until the machine reboots.

use std::path::Path;

/// Unmounts everything mounted under `dir` (deepest first, lazily: nothing is using it any more)
/// and detaches the loop devices whose backing file is under `dir`. Best effort: what cannot be
/// released is reported, not fatal, since this runs while a target shuts down.
pub fn release(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let mut problems = unmount_under(&prefix);
    for (device, backing) in loop_devices() {
        if backing.starts_with(&prefix) {
            problems.extend(detach(&device));
        }
    }
    problems
}

/// A node losing power, as far as one host shared by every simulated node can show it: what its
/// kernel had mounted under its kubelet directory `root` is gone, and so are the loop devices
/// under those mounts. (Two machines would not see each other's mounts; on one host a second
/// mount of the same xfs file system is refused while the first stands.)
pub fn power_off(root: &Path) -> Vec<String> {
    let prefix = root.to_string_lossy().into_owned();
    let sources: std::collections::BTreeSet<String> = mounts_under(&prefix)
        .into_iter()
        .filter_map(|(_, source)| source.starts_with("/dev/loop").then_some(source))
        .collect();
    let mut problems = unmount_under(&prefix);
    for device in sources {
        problems.extend(detach(&device));
    }
    problems
}

/// The mounts under `prefix`, as (mount point, source), from this process's mountinfo.
fn mounts_under(prefix: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    rds_csi::node::host::mount::parse_mountinfo(&text)
        .into_iter()
        .map(|m| (m.mount_point.display().to_string(), m.source))
        .filter(|(point, _)| point.starts_with(prefix))
        .collect()
}

/// Unmounts everything under `prefix`, deepest first and lazily (nothing uses it any more).
fn unmount_under(prefix: &str) -> Vec<String> {
    let mut points: Vec<String> = mounts_under(prefix).into_iter().map(|(p, _)| p).collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    points.dedup();
    points
        .into_iter()
        .filter_map(|point| {
            rustix::mount::unmount(point.as_str(), rustix::mount::UnmountFlags::DETACH)
                .err()
                .map(|e| format!("unmounting {point}: {e}"))
        })
        .collect()
}

fn detach(device: &str) -> Option<String> {
    match std::process::Command::new("losetup")
        .arg("-d")
        .arg(device)
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "losetup -d {device}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("losetup -d {device}: {e}")),
    }
}

/// Every attached loop device and the path of its backing file, from sysfs.
fn loop_devices() -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
            // A deleted backing file reads as "<path> (deleted)".
            let backing = backing.trim().trim_end_matches(" (deleted)").to_owned();
            Some((format!("/dev/{name}"), backing))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (mount, losetup); skipped elsewhere, saying so.
    #[test]
    fn mounts_and_loop_devices_under_the_directory_are_released() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: mounting and loop devices need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("rds/files/disk.img");
        std::fs::create_dir_all(image.parent().unwrap()).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let attached = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(attached.status.success(), "{attached:?}");
        let device = String::from_utf8(attached.stdout)
            .unwrap()
            .trim()
            .to_owned();
        let mount = dir.path().join("node-a/kubelet/plugins/x/globalmount");
        std::fs::create_dir_all(&mount).unwrap();
        rustix::mount::mount(
            "tmpfs",
            &mount,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap();
        let prefix = dir.path().to_string_lossy().into_owned();
        let mounted = || {
            std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .any(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with(&prefix)))
        };
        assert!(mounted());
        assert!(loop_devices().iter().any(|(d, _)| *d == device));

        assert_eq!(release(dir.path()), Vec::<String>::new());
        assert!(!mounted(), "a mount under the directory is left");
        assert!(
            !loop_devices().iter().any(|(d, _)| *d == device),
            "{device} is still attached"
        );
    }
}

//! What a failed case leaves on this host: the node plugins' mounts under the cluster target's
//! directory and their loop devices over rds-sim's files. A case that passes has unpublished and
//! unstaged everything through the CSI calls; one that failed midway has not, and without this the
//! mounts and loop devices would outlive the target until the machine reboots.

use std::path::Path;

/// Unmounts everything mounted under `dir` (deepest first, lazily: nothing is using it any more)
/// and detaches the loop devices whose backing file is under `dir`. Best effort: what cannot be
/// released is reported, not fatal, since this runs while a target shuts down.
pub fn release(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let prefix = dir.to_string_lossy().into_owned();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    mounts.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in mounts {
        if let Err(e) = rustix::mount::unmount(point.as_str(), rustix::mount::UnmountFlags::DETACH)
        {
            problems.push(format!("unmounting {point}: {e}"));
        }
    }
    for (device, backing) in loop_devices() {
        if !backing.starts_with(&prefix) {
            continue;
        }
        match std::process::Command::new("losetup")
            .arg("-d")
            .arg(&device)
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => problems.push(format!(
                "losetup -d {device}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => problems.push(format!("losetup -d {device}: {e}")),
        }
    }
    problems
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

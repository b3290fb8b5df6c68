//! The guest's kernel and initramfs: built and cached by ci/qemu/build-guest.sh, plus the per-boot
//! archive of extra files appended to the initramfs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::GuestError;
use super::cpio::Archive;

#[derive(Debug, Clone)]
pub(super) struct Image {
    pub(super) kernel: PathBuf,
    pub(super) initrd: PathBuf,
}

/// Runs build-guest.sh once per process (it installs what is missing and rebuilds only what changed;
/// with everything cached it returns in well under a second) and gives the cached image.
pub(super) fn cached() -> Result<Image, GuestError> {
    static IMAGE: OnceLock<Result<Image, String>> = OnceLock::new();
    IMAGE
        .get_or_init(build)
        .clone()
        .map_err(GuestError::Unavailable)
}

fn build() -> Result<Image, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate sits in the workspace root");
    let cache = std::env::var_os("RDS_QEMU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join(".cache/qemu"));
    let script = repo.join("ci/qemu/build-guest.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env("RDS_QEMU_CACHE", &cache)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(Image {
        kernel: cache.join("vmlinuz"),
        initrd: cache.join("initrd.img"),
    })
}

/// Writes `base` followed by a cpio archive of `extra_files` (host path, guest path) to `out`.
pub(super) fn initrd_with_extra_files(
    base: &Path,
    extra_files: &[(PathBuf, String)],
    out: &Path,
) -> Result<(), GuestError> {
    let mut archive = Archive::default();
    for (host, guest) in extra_files {
        let refuse = |reason: String| GuestError::ExtraFile {
            host: host.clone(),
            guest: guest.clone(),
            reason,
        };
        let data = fs::read(host).map_err(|e| refuse(e.to_string()))?;
        let permissions = fs::metadata(host)
            .map_err(|e| refuse(e.to_string()))?
            .permissions()
            .mode();
        archive
            .add_file(guest, permissions, &data)
            .map_err(refuse)?;
    }
    let mut initrd =
        fs::read(base).map_err(GuestError::io(format!("reading {}", base.display())))?;
    // The kernel looks for an uncompressed archive after a compressed one only at a 4-byte boundary.
    initrd.resize(initrd.len().next_multiple_of(4), 0);
    initrd.extend_from_slice(&archive.finish());
    fs::write(out, initrd).map_err(GuestError::io(format!("writing {}", out.display())))
}

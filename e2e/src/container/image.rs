//! The rds-sim image the suites run: the Dockerfile's `rds-sim` target (the recipe of record:
//! the release binary, the libraries it loads, `/data`, ports 2222, 4420 and 8080), made here
//! without a base image or a build: a root of the release `rds-sim` this workspace built and the
//! libraries `ldd` lists, imported with `docker import`. Its tag carries the binary's SHA-256, so a
//! changed binary makes a new image and an unchanged one is reused.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::ContainerError;
use crate::binaries::{newest_modification, workspace};
use crate::qemu::node_plugin::ldd_libraries;

/// The repository of the images this module makes.
pub const REPOSITORY: &str = "rds-sim-e2e";

/// The command the Dockerfile's `rds-sim` target runs, as `docker import --change` lines.
const CHANGES: [&str; 4] = [
    r#"ENTRYPOINT ["/usr/bin/rds-sim"]"#,
    r#"CMD ["--data-dir", "/data", "--ssh-listen", "0.0.0.0:2222", "--nvme-listen", "0.0.0.0:4420", "--control-listen", "0.0.0.0:8080"]"#,
    "VOLUME /data",
    "EXPOSE 2222 4420 8080",
];

/// The release rds-sim binary: `target/release/rds-sim` beside this test's profile directory.
pub fn release_binary() -> Result<PathBuf, ContainerError> {
    let exe = std::env::current_exe()
        .map_err(|e| ContainerError::Image(format!("locating this program: {e}")))?;
    // target/<profile>/deps/<test> → target/release/rds-sim
    let binary = exe
        .ancestors()
        .nth(3)
        .map(|target| target.join("release").join("rds-sim"))
        .ok_or_else(|| ContainerError::Image(format!("no target directory above {exe:?}")))?;
    let build = "build it: `cargo build --release -p rds-sim` (ci/test.sh does)";
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .map_err(|e| ContainerError::Image(format!("{}: {e}; {build}", binary.display())))?;
    let sources = workspace().join("simulator/src");
    if newest_modification(&sources).is_some_and(|changed| changed > built) {
        return Err(ContainerError::Image(format!(
            "{} is older than simulator/src: {build}",
            binary.display()
        )));
    }
    Ok(binary)
}

/// The image of `binary`, imported now unless an image of the same binary exists.
pub fn ensure(binary: &Path) -> Result<String, ContainerError> {
    let bytes = std::fs::read(binary)
        .map_err(|e| ContainerError::Image(format!("reading {}: {e}", binary.display())))?;
    let digest = Sha256::digest(&bytes);
    let tag = format!("{REPOSITORY}:{}", hex12(&digest));
    let present = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &tag])
        .output()
        .map_err(|e| ContainerError::Image(format!("running docker: {e}")))?;
    if present.status.success() {
        return Ok(tag);
    }
    let root = tempfile::Builder::new()
        .prefix("rds-sim-root-")
        .tempdir()
        .map_err(|e| ContainerError::Image(format!("a directory for the image's root: {e}")))?;
    make_root(binary, root.path())?;
    let mut import = Command::new("docker");
    import.arg("import");
    for change in CHANGES {
        import.args(["--change", change]);
    }
    let tar = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .args(["-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| ContainerError::Image(format!("running tar: {e}")))?;
    let imported = import
        .args(["-", &tag])
        .stdin(tar.stdout.expect("tar's stdout is piped"))
        .output()
        .map_err(|e| ContainerError::Image(format!("running docker import: {e}")))?;
    if !imported.status.success() {
        return Err(ContainerError::Image(format!(
            "docker import {tag}: {}",
            String::from_utf8_lossy(&imported.stderr)
        )));
    }
    remove_older_than(&tag);
    Ok(tag)
}

/// Removes this module's images of other binaries, so that rebuilding does not fill the disk.
/// An image a container still uses stays (the engine refuses): its suite removes the container.
fn remove_older_than(tag: &str) {
    let Ok(listed) = Command::new("docker")
        .args([
            "image",
            "ls",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            REPOSITORY,
        ])
        .output()
    else {
        return;
    };
    for other in String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|other| *other != tag)
    {
        let _ = Command::new("docker").args(["image", "rm", other]).output();
    }
}

fn hex12(digest: &[u8]) -> String {
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The image's root under `root`: the binary stripped of its debug info at /usr/bin/rds-sim, each
/// library `ldd` lists at its own path, and the directories rds-sim uses.
fn make_root(binary: &Path, root: &Path) -> Result<(), ContainerError> {
    let failed =
        |what: String| move |e: std::io::Error| ContainerError::Image(format!("{what}: {e}"));
    for dir in ["usr/bin", "data", "tmp"] {
        std::fs::create_dir_all(root.join(dir)).map_err(failed(format!("creating {dir}")))?;
    }
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(root.join("usr/bin/rds-sim"))
        .arg(binary)
        .status()
        .map_err(failed("running strip".into()))?;
    if !stripped.success() {
        return Err(ContainerError::Image(format!("strip {}", binary.display())));
    }
    let libraries = ldd_libraries(binary)
        .map_err(|reason| ContainerError::Image(format!("ldd {}: {reason}", binary.display())))?;
    for library in libraries {
        let inside = root.join(library.strip_prefix("/").unwrap_or(&library));
        if let Some(parent) = inside.parent() {
            std::fs::create_dir_all(parent).map_err(failed(format!("creating {parent:?}")))?;
        }
        std::fs::copy(&library, &inside).map_err(failed(format!("copying {library:?}")))?;
    }
    Ok(())
}

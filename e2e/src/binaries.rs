//! The workspace's own binaries as the suites run them (`rds-csi` in a QEMU guest, `rds-sim` as
//! a standalone appliance): found beside the test binary, and refused when older than their
//! sources, since building a test does not rebuild another package's binary and an old one would
//! quietly test old code.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error(
        "the {name} binary {path} is missing: build it first (`cargo build -p {name}`; \
         `cargo nextest run --workspace` builds it)"
    )]
    Missing { name: String, path: PathBuf },
    #[error(
        "the {name} binary {path} is older than its sources: rebuild it (`cargo build -p {name}`) \
         so the code under test runs"
    )]
    Stale { name: String, path: PathBuf },
    #[error("cannot locate this test program: {0}")]
    CurrentExe(std::io::Error),
}

/// The binary `name` of the package whose sources are `sources` (relative to the workspace).
pub fn built(name: &str, sources: &str) -> Result<PathBuf, BinaryError> {
    let exe = std::env::current_exe().map_err(BinaryError::CurrentExe)?;
    let beside = exe.with_file_name(name);
    let above = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join(name));
    let path = [Some(beside.clone()), above]
        .into_iter()
        .flatten()
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| BinaryError::Missing {
            name: name.to_owned(),
            path: beside,
        })?;
    let sources = workspace().join(sources);
    if let (Some(built), Some(changed)) = (modified(&path), newest_modification(&sources))
        && changed > built
    {
        return Err(BinaryError::Stale {
            name: name.to_owned(),
            path,
        });
    }
    Ok(path)
}

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate sits in the workspace")
        .to_owned()
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The latest modification time of any file under `dir`.
pub(crate) fn newest_modification(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_modification(&path)
        } else {
            modified(&path)
        };
        newest = newest.max(time);
    }
    newest
}

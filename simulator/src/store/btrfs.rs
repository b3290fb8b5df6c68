//! A Btrfs pool's subvolumes (`/disk btrfs subvolume`): each is a directory under the pool's mount
//! point; a snapshot copies its parent's files (a reflink where the host file system can, else a
//! hole-keeping copy), and a read-only one refuses every write rds-sim makes through the CLI.

use super::copy::clone_or_copy;
use super::{State, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The pool's file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PoolFs {
    /// XFS with reflink, as on the RDS in REFERENCE.md's captures.
    #[default]
    Xfs,
    Btrfs,
}

impl std::str::FromStr for PoolFs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "xfs" => Ok(PoolFs::Xfs),
            "btrfs" => Ok(PoolFs::Btrfs),
            _ => Err(format!(
                "the pool file system must be xfs or btrfs, not {s:?}"
            )),
        }
    }
}

impl PoolFs {
    pub fn name(self) -> &'static str {
        match self {
            PoolFs::Xfs => "xfs",
            PoolFs::Btrfs => "btrfs",
        }
    }
}

pub fn first_subvolume_id() -> u64 {
    256
}

/// One subvolume of the pool's Btrfs file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Subvolume {
    /// Internal id (`*1A`).
    pub id: u32,
    /// Btrfs's own number, from 256.
    pub subvolume_id: u64,
    /// Where it lives below the file system's root, e.g. `Snapshots/Documents-22012025`.
    pub path: String,
    /// The subvolume it is a snapshot of (by name), for snapshots.
    pub parent: Option<String>,
    pub read_only: bool,
    pub uuid: String,
    /// Unix seconds.
    pub creation_time: u64,
}

impl Subvolume {
    /// The item's name: the last part of its path (the Btrfs guide adds
    /// `name=Snapshots/Documents-22012025` and removes `[find where name=Documents-22012025]`).
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

impl State {
    pub fn subvolume_named(&self, name: &str) -> Option<&Subvolume> {
        self.subvolumes.iter().find(|s| s.name() == name)
    }
}

impl Store {
    /// The `/file` name of a subvolume's directory.
    pub fn subvolume_file_name(&self, sub: &Subvolume) -> String {
        format!("{}/{}", self.pool.name, sub.path)
    }

    pub fn is_btrfs(&self) -> bool {
        self.fs == PoolFs::Btrfs
    }

    /// The subvolumes rds-sim shows: those of a Btrfs pool.
    pub fn subvolumes(&self) -> &[Subvolume] {
        match self.fs {
            PoolFs::Btrfs => &self.state.subvolumes,
            PoolFs::Xfs => &[],
        }
    }

    /// The subvolume whose directory is exactly the `/file` name `name`.
    pub fn subvolume_at(&self, name: &str) -> Option<&Subvolume> {
        self.subvolumes()
            .iter()
            .find(|s| self.subvolume_file_name(s) == name)
    }

    /// Whether `/file` name `name` lies inside the directory `dir` (or is it).
    fn within(name: &str, dir: &str) -> bool {
        name == dir || name.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
    }

    /// Refuses a write at `/file` name `name` when it lies inside a read-only subvolume.
    pub fn check_writable(&self, name: &str) -> Result<(), StoreError> {
        let name = name.trim_start_matches('/');
        let read_only = self
            .subvolumes()
            .iter()
            .any(|s| s.read_only && Self::within(name, &self.subvolume_file_name(s)));
        if read_only {
            return Err(StoreError::ReadOnly);
        }
        Ok(())
    }

    /// Things inside a subvolume that keep it from being removed: disks whose file is in it, and
    /// subvolumes nested in it.
    pub fn subvolume_users(&self, sub: &Subvolume) -> Vec<String> {
        let dir = self.subvolume_file_name(sub);
        let disks = self
            .state
            .disks
            .iter()
            .filter(|d| Self::within(&d.file_path, &dir))
            .map(|d| format!("disk {}", d.slot));
        let nested = self
            .subvolumes()
            .iter()
            .filter(|s| s.id != sub.id && Self::within(&self.subvolume_file_name(s), &dir))
            .map(|s| format!("subvolume {}", s.name()));
        disks.chain(nested).collect()
    }

    /// Makes the directory of a new subvolume: empty, or a copy of `parent`'s files. Subvolumes
    /// nested in the parent are not part of its snapshot (Btrfs leaves an empty directory).
    pub fn create_subvolume_dir(
        &self,
        path: &str,
        parent: Option<&Subvolume>,
    ) -> Result<(), StoreError> {
        let name = format!("{}/{path}", self.pool.name);
        let to = self.host_path(&name);
        if std::fs::symlink_metadata(&to).is_ok() {
            return Err(StoreError::FileExists);
        }
        let above = to.parent().filter(|p| p.is_dir());
        if above.is_none() {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            return Err(StoreError::Io(format!("no such directory {dir}")));
        }
        self.files_changed();
        match parent {
            None => std::fs::create_dir(&to)?,
            Some(p) => {
                let nested: Vec<_> = self
                    .subvolumes()
                    .iter()
                    .filter(|s| s.id != p.id)
                    .map(|s| self.host_path(&self.subvolume_file_name(s)))
                    .collect();
                copy_tree(&self.host_path(&self.subvolume_file_name(p)), &to, &nested)?;
            }
        }
        Ok(())
    }

    /// Deletes a subvolume's directory and everything in it.
    pub fn remove_subvolume_dir(&self, sub: &Subvolume) -> Result<(), StoreError> {
        self.files_changed();
        match std::fs::remove_dir_all(self.host_path(&self.subvolume_file_name(sub))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Copies the tree `from` into the new directory `to`; directories in `skip` are copied empty.
fn copy_tree(from: &Path, to: &Path, skip: &[std::path::PathBuf]) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    if skip.iter().any(|s| s == from) {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            copy_tree(&src, &dst, skip)?;
        } else {
            clone_or_copy(&src, &dst)?;
        }
    }
    Ok(())
}

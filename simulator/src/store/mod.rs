//! The simulated appliance's state: file disks, the pool, and the `/file` tree of real sparse files.
//!
//! Disk records live in `state.json` and the journal of commits after it, `state.log`
//! (`persist.rs`): a `kill -9` at any moment loses no acknowledged commit and leaves no torn state.
//! Backing files are real files under `<data-dir>/files/`, which is the `/file` root.

mod btrfs;
mod copy;
mod extents;
mod files;
mod persist;
mod usage;

pub use btrfs::{PoolFs, Subvolume};
pub use copy::{CopySemantics, copy_range};
pub use files::{FileEntry, FileKind, format_utc};

use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One `type=file` disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Disk {
    pub id: u32,
    pub slot: String,
    /// Relative to the `/file` root, no leading `/`.
    pub file_path: String,
    pub file_size: u64,
    pub file_offset: u64,
    pub mount_filesystem: bool,
    pub mount_read_only: bool,
    pub compress: bool,
    pub nvme_tcp_export: bool,
    pub nvme_tcp_server_port: u16,
    pub nvme_tcp_server_nqn: String,
    pub nvme_tcp_server_allow_host_name: String,
    pub comment: Option<String>,
    /// Stable namespace identity for the NVMe/TCP target (hex).
    pub uuid: String,
}

/// The pool: the mounted RAID disk that holds the file disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct State {
    pub next_id: u32,
    pub identity: String,
    /// Shared with the states before and after a command: a command copies the list, not the
    /// disks it leaves alone, and what changed is found by pointer (`persist.rs`).
    pub disks: Vec<Arc<Disk>>,
    /// Btrfs subvolumes of the pool (a Btrfs pool only).
    #[serde(default)]
    pub subvolumes: Vec<Subvolume>,
    /// The next Btrfs subvolume id; Btrfs numbers subvolumes from 256 and never reuses an id.
    #[serde(default = "btrfs::first_subvolume_id")]
    pub next_subvolume_id: u64,
}

impl State {
    /// The disks, each copied out of the shared state, for readers outside the engine.
    pub fn disk_copies(&self) -> Vec<Disk> {
        self.disks.iter().map(|d| Disk::clone(d)).collect()
    }
}

impl Default for State {
    fn default() -> Self {
        State {
            // Internal ids of the appliance's own items (the pool, its members) come first.
            next_id: 0x10,
            identity: "MikroTik".to_string(),
            disks: Vec::new(),
            subvolumes: Vec::new(),
            next_subvolume_id: btrfs::first_subvolume_id(),
        }
    }
}

/// Errors of the store, as RouterOS prints them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("failure: not enough space")]
    NoSpace,
    #[error("failure: file already exists")]
    FileExists,
    #[error("failure: file is used by disk {0}")]
    FileInUse(String),
    #[error("failure: no such mount point")]
    NoMountPoint,
    #[error("failure: directory is not empty")]
    DirNotEmpty,
    #[error("no such item")]
    NoSuchItem,
    #[error("failure: {0} is larger than 60KiB: its contents cannot be read or set")]
    TooBig(String),
    #[error("failure: {0} is a directory")]
    IsDirectory(String),
    #[error("failure: read-only file system")]
    ReadOnly,
    #[error("failure: {0} is a btrfs subvolume: remove it with /disk btrfs subvolume remove")]
    IsSubvolume(String),
    #[error("failure: {0}")]
    Io(String),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// The largest file whose `contents` `/file get` reads and `/file add` writes: the Files page
/// says "up to 60KB" (REFERENCE.md §9.1), read here as 60 KiB.
pub const CONTENTS_LIMIT: u64 = 60 * 1024;

/// The state plus where it lives on disk.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    pub pool: Pool,
    /// The pool's file system: Btrfs pools have subvolumes.
    pub fs: PoolFs,
    pub state: State,
    persisted: persist::Persisted,
    /// Counts commits, so what is derived from the state knows when to derive it again.
    generation: u64,
    usage: usage::Cached,
}

impl Store {
    /// Opens (or creates) the store in `dir`, reloading the last committed state.
    pub fn open(dir: &Path, pool: Pool, fs: PoolFs) -> io::Result<Store> {
        std::fs::create_dir_all(dir.join("files").join(&pool.name))?;
        let (state, persisted) = persist::Persisted::open(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            persisted,
            generation: 0,
            pool,
            fs,
            state,
            usage: usage::Cached::default(),
        })
    }

    /// Changes with every commit.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The host path of a `/file` name.
    pub fn host_path(&self, name: &str) -> PathBuf {
        self.dir.join("files").join(name.trim_start_matches('/'))
    }

    /// Persists `state` (a journal line, `persist.rs`) and makes it current.
    pub fn commit(&mut self, state: State) -> io::Result<()> {
        self.persisted.commit(&self.state, &state)?;
        self.state = state;
        self.generation += 1;
        Ok(())
    }

    /// Every entry of the `/file` tree, in print order.
    pub fn files(&self) -> Vec<FileEntry> {
        files::walk(&self.dir.join("files"), &[self.pool.name.as_str()])
    }

    /// Creates a file holding `contents` (at most [`CONTENTS_LIMIT`] bytes), or a directory when
    /// `contents` is `None`; parent directories are created as needed.
    pub fn add_file(&self, name: &str, contents: Option<&[u8]>) -> Result<(), StoreError> {
        if contents.is_some_and(|bytes| bytes.len() as u64 > CONTENTS_LIMIT) {
            return Err(StoreError::TooBig(name.to_string()));
        }
        self.check_writable(name)?;
        let path = self.host_path(name);
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(StoreError::FileExists);
        }
        self.make_parents(&path)?;
        match contents {
            Some(bytes) => {
                let mut file = std::fs::File::create_new(&path)?;
                self.usage_moved(name, 1, 0);
                file.write_all(bytes)?;
                self.usage_moved(name, 0, usage::allocated(&file)?);
            }
            None => {
                std::fs::create_dir(&path)?;
                self.usage_moved(name, 1, 0);
            }
        }
        Ok(())
    }

    /// A file's bytes, for `/file get … contents`.
    pub fn file_contents(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.host_path(name);
        let meta = std::fs::metadata(&path).map_err(|_| StoreError::NoSuchItem)?;
        if meta.is_dir() {
            return Err(StoreError::IsDirectory(name.to_string()));
        }
        if meta.len() > CONTENTS_LIMIT {
            return Err(StoreError::TooBig(name.to_string()));
        }
        Ok(std::fs::read(path)?)
    }

    /// Creates a sparse backing file of `size` bytes, creating parent directories.
    pub fn create_backing(&self, name: &str, size: u64) -> Result<(), StoreError> {
        let path = self.host_path(name);
        if path.exists() {
            return Err(StoreError::FileExists);
        }
        self.make_parents(&path)?;
        let file = std::fs::File::create_new(&path)?;
        self.usage_moved(name, 1, 0);
        file.set_len(size)?;
        self.usage_moved(name, 0, usage::allocated(&file)?);
        Ok(())
    }

    /// Grows a backing file; never shrinks.
    pub fn grow_backing(&self, name: &str, size: u64) -> Result<(), StoreError> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.host_path(name))?;
        if f.metadata()?.len() < size {
            let before = usage::allocated(&f)?;
            f.set_len(size)?;
            self.usage_moved(name, 0, usage::allocated(&f)? - before);
        }
        Ok(())
    }

    /// Copies `src`'s data into a new file `dst`: a reflink where the file system can, else a
    /// sparse-aware copy.
    pub fn copy_backing(&self, src: &str, dst: &str) -> Result<(), StoreError> {
        let to = self.host_path(dst);
        if to.exists() {
            return Err(StoreError::FileExists);
        }
        self.make_parents(&to)?;
        // A reflinked copy shares its source's extents: only a new measurement counts them right.
        self.files_changed();
        copy::clone_or_copy(&self.host_path(src), &to)?;
        Ok(())
    }

    /// Removes a `/file` entry. Files used by a disk and non-empty directories are refused.
    pub fn remove_file(&self, name: &str) -> Result<(), StoreError> {
        let name = name.trim_start_matches('/');
        if let Some(d) = self.state.disks.iter().find(|d| d.file_path == name) {
            return Err(StoreError::FileInUse(d.slot.clone()));
        }
        if self.subvolume_at(name).is_some() {
            return Err(StoreError::IsSubvolume(name.to_string()));
        }
        self.check_writable(name)?;
        if name == self.pool.name {
            return Err(StoreError::Io("cannot remove a disk's mount point".into()));
        }
        let path = self.host_path(name);
        let meta = std::fs::symlink_metadata(&path).map_err(|_| StoreError::NoSuchItem)?;
        if meta.is_dir() {
            std::fs::remove_dir(&path).map_err(|_| StoreError::DirNotEmpty)?;
            self.usage_moved(name, -1, 0);
        } else if extents::shared_extents(&path).is_empty() {
            std::fs::remove_file(&path)?;
            self.usage_moved(name, -1, -usage::blocks_bytes(&meta));
        } else {
            // Space a reflinked file shares is freed only with its last sharer: measure again.
            self.files_changed();
            std::fs::remove_file(&path)?;
        }
        Ok(())
    }

    pub fn disk_by_slot(&self, slot: &str) -> Option<&Disk> {
        self.state
            .disks
            .iter()
            .map(|d| &**d)
            .find(|d| d.slot == slot)
    }

    /// Whether a `/file` path lies under a mounted disk (the pool).
    pub fn on_mounted_disk(&self, name: &str) -> bool {
        name.split('/').next() == Some(self.pool.name.as_str())
    }
}

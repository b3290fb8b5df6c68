//! What the pool's files take, for its `free`, `use` and `free-inodes`: measured from the files at
//! most once a second, and moved by rds-sim's own changes in between.

use super::{Store, files};
use std::cell::Cell;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the pool's files take: bytes really allocated and `/file` entries.
#[derive(Debug, Clone, Copy)]
pub(super) struct Usage {
    allocated: u64,
    entries: u64,
}

/// How long a measured [`Usage`] is reused. Every `/disk` listing prints the pool's `free`, and
/// walking the tree for each one dominated the simulator's cost; writes that arrive over NVMe/TCP
/// show up in `free` within this time.
const USAGE_TTL: Duration = Duration::from_secs(1);

/// The last measured [`Usage`] and when it was measured.
pub(super) type Cached = Cell<Option<(Instant, Usage)>>;

impl Store {
    fn usage(&self) -> Usage {
        if let Some((at, usage)) = self.usage.get()
            && at.elapsed() < USAGE_TTL
        {
            return usage;
        }
        let usage = Usage {
            allocated: files::allocated_bytes(&self.host_path(&self.pool.name)),
            entries: self.files().len() as u64,
        };
        self.usage.set(Some((Instant::now(), usage)));
        usage
    }

    /// Forgets the measured usage after a change to the files.
    pub(super) fn files_changed(&self) {
        self.usage.set(None);
    }

    /// Applies a change rds-sim made itself to the measured usage instead of measuring again:
    /// `entries` files added (or removed, negative) and `allocated` bytes taken (or freed). Walking
    /// the tree after every `/disk add` and `/file remove` was most of the simulator's cost. Only
    /// the pool's files count towards its allocation.
    pub(super) fn usage_moved(&self, name: &str, entries: i64, allocated: i64) {
        let allocated = if self.on_mounted_disk(name.trim_start_matches('/')) {
            allocated
        } else {
            0
        };
        if let Some((at, usage)) = self.usage.get() {
            let moved = Usage {
                allocated: usage.allocated.saturating_add_signed(allocated),
                entries: usage.entries.saturating_add_signed(entries),
            };
            self.usage.set(Some((at, moved)));
        }
    }

    /// Creates the missing parent directories of `path`. A parent that was there already keeps the
    /// measured usage exact; new directories are new `/file` entries, so it is measured again.
    pub(super) fn make_parents(&self, path: &Path) -> io::Result<()> {
        if let Some(parent) = path.parent()
            && !parent.is_dir()
        {
            self.files_changed();
            std::fs::create_dir_all(parent)?;
        }
        Ok(())
    }

    /// Bytes really allocated by the files in the pool.
    pub fn pool_used(&self) -> u64 {
        self.usage().allocated
    }

    /// How many `/file` entries exist (each takes an inode).
    pub fn file_count(&self) -> u64 {
        self.usage().entries
    }

    pub fn pool_free(&self, full: bool) -> u64 {
        if full {
            0
        } else {
            self.pool.size.saturating_sub(self.pool_used())
        }
    }
}

/// Bytes the host file system allocated to an open file.
pub(super) fn allocated(file: &std::fs::File) -> io::Result<i64> {
    Ok(blocks_bytes(&file.metadata()?))
}

pub(super) fn blocks_bytes(meta: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    i64::try_from(meta.blocks() * 512).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::{Pool, PoolFs, Store};

    /// A change made through the store.
    type Step = dyn Fn(&Store);

    /// The moved usage and a fresh measurement of the files, as (allocated, entries).
    fn moved_and_measured(store: &Store) -> ((u64, u64), (u64, u64)) {
        let moved = (store.pool_used(), store.file_count());
        store.files_changed();
        let measured = (store.pool_used(), store.file_count());
        (moved, measured)
    }

    #[test]
    fn own_changes_move_the_usage_to_what_a_new_measurement_finds() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool {
            name: "pool".into(),
            size: 1 << 40,
        };
        let store = Store::open(dir.path(), pool, PoolFs::Xfs).unwrap();
        store.add_file("pool/d", None).unwrap();
        store.add_file("flash", None).unwrap();
        let (moved, measured) = moved_and_measured(&store);
        assert_eq!(moved, measured);
        let steps: [(&str, &Step); 6] = [
            ("sparse backing file", &|s| {
                s.create_backing("pool/d/a.img", 1 << 30).unwrap()
            }),
            ("file with contents", &|s| {
                s.add_file("pool/d/notes", Some(&[7; 20_000])).unwrap()
            }),
            ("file outside the pool", &|s| {
                s.add_file("flash/x", Some(b"12345")).unwrap()
            }),
            ("grown backing file", &|s| {
                s.grow_backing("pool/d/a.img", 2 << 30).unwrap()
            }),
            ("removed file", &|s| s.remove_file("pool/d/notes").unwrap()),
            ("removed backing file", &|s| {
                s.remove_file("pool/d/a.img").unwrap()
            }),
        ];
        for (what, step) in steps {
            store.pool_used();
            step(&store);
            let (moved, measured) = moved_and_measured(&store);
            assert_eq!(moved, measured, "after the {what}");
        }
        store.add_file("pool/d/notes", Some(&[1; 8192])).unwrap();
        assert!(store.pool_used() >= 8192, "the written file is counted");
    }
}

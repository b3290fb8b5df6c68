//! The committed state on the host: a snapshot (`state.json`, replaced atomically by rename) and a
//! journal (`state.log`) of the commits since, one JSON line each, appended with one `write`.
//!
//! A commit is acknowledged once its line is written: the page cache keeps it through a `kill -9`
//! (rds-sim models process crashes, not a power loss of its host, so nothing is fsynced; fsyncs
//! capped mutations at ~200/s). Writing the whole state for each commit, a new file and a rename,
//! cost ~0.3 ms of the engine's turn; a journal line costs one small write.
//!
//! The journal's first line names the snapshot it follows (`{"base":N}`, the snapshot holding
//! `"journal":N`). Compaction writes a snapshot with the next number, then starts the journal
//! afresh: a crash in between leaves a journal whose base is not the snapshot's, which loading
//! ignores. A commit killed in the middle of its write leaves a torn last line, never
//! acknowledged, which loading drops.

use super::{Disk, State};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A journal longer than this is folded into a new snapshot.
const COMPACT_AT: u64 = 1 << 20;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    #[serde(flatten)]
    state: State,
    /// The base of the journal that follows this snapshot; 0 in files from before the journal.
    #[serde(default)]
    journal: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    base: u64,
}

/// One commit of the journal: disks replaced in place or added at the end, disks removed. Other
/// changes (identity, subvolumes) are rare and go to a new snapshot.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Change {
    next_id: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    put: Vec<Arc<Disk>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    drop: Vec<u32>,
}

impl Change {
    /// The change from `old` to `new`, when a journal line can say it: disks only, the ones kept
    /// in their order, new ones after them.
    fn between(old: &State, new: &State) -> Option<Change> {
        let same_rest = old.identity == new.identity
            && old.subvolumes == new.subvolumes
            && old.next_subvolume_id == new.next_subvolume_id;
        if !same_rest {
            return None;
        }
        let new_ids: HashSet<u32> = new.disks.iter().map(|d| d.id).collect();
        let kept: Vec<&Arc<Disk>> = old
            .disks
            .iter()
            .filter(|d| new_ids.contains(&d.id))
            .collect();
        let (in_place, added) = new.disks.split_at(kept.len().min(new.disks.len()));
        let old_ids: HashSet<u32> = old.disks.iter().map(|d| d.id).collect();
        if in_place.iter().zip(&kept).any(|(n, o)| n.id != o.id)
            || added.iter().any(|d| old_ids.contains(&d.id))
        {
            return None;
        }
        // Arc's equality looks at the pointer first: a disk the command left alone costs nothing.
        let changed = in_place.iter().zip(&kept).filter(|(n, o)| n != *o);
        Some(Change {
            next_id: new.next_id,
            put: changed.map(|(n, _)| n).chain(added).cloned().collect(),
            drop: old
                .disks
                .iter()
                .filter(|d| !new_ids.contains(&d.id))
                .map(|d| d.id)
                .collect(),
        })
    }

    /// Replaying a change twice, or a journal over the snapshot it was folded into, is harmless:
    /// ids are never reused.
    fn apply(self, state: &mut State) {
        state.next_id = self.next_id;
        state.disks.retain(|d| !self.drop.contains(&d.id));
        for disk in self.put {
            match state.disks.iter_mut().find(|d| d.id == disk.id) {
                Some(slot) => *slot = disk,
                None => state.disks.push(disk),
            }
        }
    }
}

/// Where the state lives, with the journal open for appending.
#[derive(Debug)]
pub struct Persisted {
    snapshot: PathBuf,
    journal: File,
    base: u64,
    journal_len: u64,
}

impl Persisted {
    /// Loads the last committed state from `dir` and folds the journal into a new snapshot, so
    /// the journal starts clean (a torn last line must not be appended to).
    pub fn open(dir: &Path) -> io::Result<(State, Persisted)> {
        let snapshot = dir.join("state.json");
        let journal_path = dir.join("state.log");
        let (mut state, base) = match fs::read(&snapshot) {
            Ok(bytes) => {
                let s: Snapshot =
                    serde_json::from_slice(&bytes).map_err(|e| invalid(&snapshot, e))?;
                (s.state, s.journal)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (State::default(), 0),
            Err(e) => return Err(e),
        };
        match fs::read(&journal_path) {
            Ok(bytes) => replay(&bytes, base, &mut state).map_err(|e| invalid(&journal_path, e))?,
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)?;
        let mut persisted = Persisted {
            snapshot,
            journal,
            base,
            journal_len: 0,
        };
        persisted.compact(&state)?;
        Ok((state, persisted))
    }

    /// Makes `new` the committed state; `old` is the state committed before it.
    pub fn commit(&mut self, old: &State, new: &State) -> io::Result<()> {
        match Change::between(old, new) {
            Some(change) if self.journal_len < COMPACT_AT => {
                let mut line = serde_json::to_vec(&change).map_err(io::Error::other)?;
                line.push(b'\n');
                self.journal.write_all(&line)?;
                self.journal_len += line.len() as u64;
                Ok(())
            }
            _ => self.compact(new),
        }
    }

    /// Writes `state` as the snapshot after the journal, then starts the journal afresh.
    fn compact(&mut self, state: &State) -> io::Result<()> {
        let base = self.base + 1;
        let snapshot = Snapshot {
            state: state.clone(),
            journal: base,
        };
        let dir = self.snapshot.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(".state.json.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&snapshot).map_err(io::Error::other)?)?;
        drop(f);
        fs::rename(&tmp, &self.snapshot)?;
        self.base = base;
        self.journal.set_len(0)?;
        let mut header = serde_json::to_vec(&Header { base }).map_err(io::Error::other)?;
        header.push(b'\n');
        self.journal.write_all(&header)?;
        self.journal_len = header.len() as u64;
        Ok(())
    }
}

/// Applies the journal's complete lines to the snapshot's state, if the journal follows it.
fn replay(bytes: &[u8], base: u64, state: &mut State) -> Result<(), serde_json::Error> {
    let mut lines = bytes.split_inclusive(|b| *b == b'\n');
    let follows = lines
        .next()
        .and_then(|header| serde_json::from_slice::<Header>(header).ok())
        .is_some_and(|h| h.base == base);
    if !follows {
        return Ok(());
    }
    for line in lines {
        // A line without its newline is a commit killed mid-write: never acknowledged.
        if line.last() != Some(&b'\n') {
            break;
        }
        serde_json::from_slice::<Change>(line)?.apply(state);
    }
    Ok(())
}

fn invalid(path: &Path, e: serde_json::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
}

#[cfg(test)]
mod tests;

//! Atomic state files: a reader sees the old state or the new one, never a torn write.

use super::State;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

pub fn load(path: &Path) -> io::Result<Option<State>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `state` to a temporary file and renames it over `path`: a reader, or a simulator
/// restarted after `kill -9`, sees the old state or the new one, never a torn file. There is no
/// fsync: a killed process loses nothing the kernel already holds, and rds-sim models process
/// crashes, not a power loss of the host (fsyncs capped mutations at ~200/s).
pub fn save(path: &Path, state: &State) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(".state.json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(state).map_err(io::Error::other)?)?;
    drop(f);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(load(&path).unwrap(), None);
        let s = State {
            identity: "rds-test".into(),
            ..State::default()
        };
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), Some(s));
        assert!(!dir.path().join(".state.json.tmp").exists());
    }

    #[test]
    fn a_torn_temp_file_does_not_affect_the_committed_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let s = State::default();
        save(&path, &s).unwrap();
        fs::write(
            dir.path().join(".state.json.tmp"),
            b"{\"next-id\": 1, \"ident",
        )
        .unwrap();
        assert_eq!(load(&path).unwrap(), Some(s));
    }
}

//! The `/file` tree as RouterOS lists it: names relative to the root with no leading `/`, a mounted
//! disk's mount point as `type=disk`, directories, and files typed by their extension.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// A mounted disk's mount point.
    Disk,
    Directory,
    /// A file; RouterOS prints `.img file` for `x.img`, `file` without an extension.
    File {
        ext: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub kind: FileKind,
    /// Apparent size in bytes (files only).
    pub size: u64,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    pub last_modified: String,
}

impl FileKind {
    pub fn type_text(&self) -> String {
        match self {
            FileKind::Disk => "disk".into(),
            FileKind::Directory => "directory".into(),
            FileKind::File { ext: Some(e) } => format!(".{e} file"),
            FileKind::File { ext: None } => "file".into(),
        }
    }
}

/// Lists every entry under `root`, depth first in name order; the top-level directories named in
/// `mounts` are mount points (`type=disk`), any other directory is a plain directory.
pub fn walk(root: &Path, mounts: &[&str]) -> Vec<FileEntry> {
    let mut out = Vec::new();
    visit(root, "", mounts, &mut out);
    out
}

fn visit(dir: &Path, prefix: &str, mounts: &[&str], out: &mut Vec<FileEntry>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(meta) = e.metadata() else { continue };
        let fname = e.file_name().to_string_lossy().into_owned();
        let name = if prefix.is_empty() {
            fname.clone()
        } else {
            format!("{prefix}/{fname}")
        };
        let modified = meta.modified().map(timestamp).unwrap_or_default();
        if meta.is_dir() {
            let kind = if prefix.is_empty() && mounts.contains(&fname.as_str()) {
                FileKind::Disk
            } else {
                FileKind::Directory
            };
            out.push(FileEntry {
                name: name.clone(),
                kind,
                size: 0,
                last_modified: modified,
            });
            visit(&e.path(), &name, mounts, out);
        } else {
            let ext = Path::new(&fname)
                .extension()
                .map(|x| x.to_string_lossy().into_owned());
            out.push(FileEntry {
                name,
                kind: FileKind::File { ext },
                size: meta.len(),
                last_modified: modified,
            });
        }
    }
}

/// Bytes allocated on the host file system by every file under `dir`: holes are free, and an
/// extent that reflinked files share counts once.
pub fn allocated_bytes(dir: &Path) -> u64 {
    let mut shared = Vec::new();
    let own = allocated_walk(dir, &mut shared);
    own + super::extents::union_len(&mut shared)
}

/// Blocks of the files under `dir` that they do not share; the shared extents go to `shared`.
fn allocated_walk(dir: &Path, shared: &mut Vec<(u64, u64)>) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => allocated_walk(&e.path(), shared),
            Ok(m) => {
                let extents = super::extents::shared_extents(&e.path());
                let in_shared: u64 = extents.iter().map(|(_, len)| len).sum();
                shared.extend(extents);
                (m.blocks() * 512).saturating_sub(in_shared)
            }
            Err(_) => 0,
        })
        .sum()
}

fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// `YYYY-MM-DD HH:MM:SS` for a Unix time (civil-from-days, proleptic Gregorian).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(1_762_871_561), "2025-11-11 14:32:41");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
    }

    #[test]
    fn walk_lists_mount_points_dirs_and_typed_files() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("pool/csi")).unwrap();
        std::fs::write(root.path().join("pool/csi/a.img"), b"12345").unwrap();
        std::fs::write(root.path().join("pool/notes"), b"").unwrap();
        std::fs::create_dir_all(root.path().join("ram-dir")).unwrap();
        let names: Vec<_> = walk(root.path(), &["pool"])
            .into_iter()
            .map(|e| (e.name, e.kind.type_text(), e.size))
            .collect();
        assert_eq!(
            names,
            vec![
                ("pool".into(), "disk".into(), 0),
                ("pool/csi".into(), "directory".into(), 0),
                ("pool/csi/a.img".into(), ".img file".into(), 5),
                ("pool/notes".into(), "file".into(), 0),
                ("ram-dir".into(), "directory".into(), 0),
            ]
        );
    }
}

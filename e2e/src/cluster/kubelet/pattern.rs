//! Data a test writes through a published volume and reads back: a seeded pattern, so a volume
//! that lost or mixed up data reads back different bytes.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The file that holds the pattern in a mounted directory; a block device holds it at offset 0.
pub const PATTERN_FILE: &str = "rds-e2e-pattern";

/// `len` bytes of the pattern of `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    // splitmix64: cheap, and every seed gives different bytes.
    let mut state = seed;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Writes the pattern of `seed` (`len` bytes) to the volume at `path` (a mounted directory or a
/// block device) and syncs it.
pub fn write_pattern(path: &Path, seed: u64, len: usize) -> anyhow::Result<()> {
    let (file, block) = place(path)?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(!block)
        .truncate(!block)
        .open(&file)
        .with_context(|| format!("opening {} to write", file.display()))?;
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&pattern(seed, len))
        .with_context(|| format!("writing {}", file.display()))?;
    out.sync_all()
        .with_context(|| format!("syncing {}", file.display()))
}

/// Reads `len` bytes back from the volume at `path` and fails unless they are the pattern of
/// `seed`, naming the first byte that differs.
pub fn read_pattern(path: &Path, seed: u64, len: usize) -> anyhow::Result<()> {
    let (file, _) = place(path)?;
    let mut data = vec![0; len];
    std::fs::File::open(&file)
        .and_then(|mut f| f.read_exact(&mut data))
        .with_context(|| format!("reading {} bytes of {}", len, file.display()))?;
    check_pattern(&data, seed, &file.display().to_string())
}

/// Fails unless `data` is the pattern of `seed` (as long as `data`), naming the first byte that
/// differs in `what`.
pub fn check_pattern(data: &[u8], seed: u64, what: &str) -> anyhow::Result<()> {
    let len = data.len();
    match data
        .iter()
        .zip(pattern(seed, len))
        .position(|(a, b)| *a != b)
    {
        None => Ok(()),
        Some(at) => {
            anyhow::bail!("{what} differs from the pattern of seed {seed} at byte {at} of {len}")
        }
    }
}

/// The file that holds the pattern, and whether it is a block device.
fn place(path: &Path) -> anyhow::Result<(PathBuf, bool)> {
    let meta = std::fs::metadata(path).with_context(|| format!("examining {}", path.display()))?;
    if meta.file_type().is_block_device() {
        Ok((path.to_path_buf(), true))
    } else if meta.is_dir() {
        Ok((path.join(PATTERN_FILE), false))
    } else {
        anyhow::bail!(
            "{} is neither a directory nor a block device",
            path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_reads_back_and_another_seed_does_not() {
        let dir = tempfile::tempdir().unwrap();
        write_pattern(dir.path(), 7, 10_000).unwrap();
        read_pattern(dir.path(), 7, 10_000).unwrap();
        let error = read_pattern(dir.path(), 8, 10_000).unwrap_err().to_string();
        assert!(error.contains("seed 8"), "{error}");
        assert_ne!(pattern(1, 64), pattern(2, 64));
    }
}

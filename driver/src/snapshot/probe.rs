//! Proof before trust: a small file with known contents, copied by a method, read back.
//!
//! The probe uses SSH alone. It writes `<dir>/probe-<nonce>-s.img` with `/file add contents=`,
//! attaches it as a disk, lets the method copy that disk into `probe-<nonce>-d`, reads the
//! copy with `/file get … contents` and compares. Then it removes both disks and files.
//!
//! `btrfs` snapshots are subvolumes, not disks: its probe writes the file into a new subvolume
//! `probe-<nonce>-s`, snapshots that read-only as `probe-<nonce>-d`, reads the file back from
//! the snapshot, then removes both subvolumes. On a pool that is not Btrfs it is unavailable.

use std::fmt;
use std::time::Duration;

use rand::Rng;

use super::{Method, Target};
use crate::rds::command::DiskSpec;
use crate::rds::disk::{RdsClient, RdsError};
use crate::rds::value::{ByteSize, Comment, FileText, RosPath, Slot};

/// What a probe showed about one method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The copy read back with exactly the source's contents.
    CopiesData,
    /// The copy exists but does not hold the source's contents: the method copied the disk's
    /// settings only.
    CopiesSettingsOnly,
    /// The method failed on this RDS; the text says where.
    Unavailable(String),
}

impl Verdict {
    pub fn copies_data(&self) -> bool {
        *self == Verdict::CopiesData
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::CopiesData => f.write_str("copies data"),
            Verdict::CopiesSettingsOnly => {
                f.write_str("copies only settings (the copy does not hold the source's data)")
            }
            Verdict::Unavailable(reason) => write!(f, "is unavailable: {reason}"),
        }
    }
}

/// One method's probe: the verdict, and what could not be cleaned up afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub method: Method,
    pub verdict: Verdict,
    pub leftovers: Vec<String>,
}

/// The size of the probe file: one 512-byte sector.
const PROBE_BYTES: usize = 512;

/// Probes `method` in directory `dir` (`<pool>/<baseDir>`) of the RDS.
pub async fn probe(rds: &RdsClient, dir: &RosPath, method: Method) -> Outcome {
    let nonce = format!("{:012x}", rand::rng().random::<u64>() & 0xffff_ffff_ffff);
    if method.disk_method().is_none() {
        return probe_subvolume_snapshot(rds, &nonce).await;
    }
    let name = |end: &str| {
        let slot = Slot::parse(&format!("probe-{nonce}-{end}")).expect("a valid probe slot");
        let file = dir
            .child(&format!("{slot}.img"))
            .expect("a slot plus .img is a valid path segment");
        (slot, file)
    };
    let (source, target) = (name("s"), name("d"));
    let verdict = match copy_and_compare(rds, method, &nonce, &source, &target).await {
        Ok(verdict) => verdict,
        Err(reason) => Verdict::Unavailable(reason),
    };
    let mut leftovers = Vec::new();
    for (slot, file) in [&target, &source] {
        if let Err(error) = remove(rds, slot, file).await {
            leftovers.push(format!(
                "remove disk {slot} and file {file} by hand: {error}"
            ));
        }
    }
    Outcome {
        method,
        verdict,
        leftovers,
    }
}

/// Removal attempts of a probe disk and its file before it is reported as left behind.
const REMOVE_ATTEMPTS: u32 = 4;

/// Removes a probe disk and its file, trying again after a failure: nobody retries a probe's
/// clean-up, so a dropped connection or a passing error must not leave the files on the RDS
/// (found by rds-chaos). A removal is idempotent, so trying again completes one cut short.
async fn remove(rds: &RdsClient, slot: &Slot, file: &RosPath) -> Result<(), RdsError> {
    let mut pause = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match rds.remove(slot, file).await {
            Err(error) if attempt < REMOVE_ATTEMPTS => {
                tracing::debug!(%slot, %error, attempt, "removing a probe disk failed; trying again");
            }
            done => return done,
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
        attempt += 1;
    }
}

/// Probes every method, one after the other.
pub async fn probe_all(rds: &RdsClient, dir: &RosPath) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for method in Method::ALL {
        outcomes.push(probe(rds, dir, method).await);
    }
    outcomes
}

async fn copy_and_compare(
    rds: &RdsClient,
    method: Method,
    nonce: &str,
    (source, source_file): &(Slot, RosPath),
    (target, target_file): &(Slot, RosPath),
) -> Result<Verdict, String> {
    let text = probe_text(nonce);
    rds.write_file(source_file, &text)
        .await
        .map_err(|e| format!("writing the probe file failed: {e}"))?;
    let attached = rds
        .attach(source, source_file)
        .await
        .map_err(|e| format!("attaching the probe file as a disk failed: {e}"))?;
    let size = attached
        .size
        .and_then(|s| ByteSize::new(s).ok())
        .ok_or_else(|| format!("the probe disk {source} shows no size"))?;
    let comment = Comment::new("rds-csi snapshot probe").expect("a valid comment");
    let target_disk = Target {
        spec: DiskSpec {
            slot: target.clone(),
            file_path: target_file.clone(),
            size,
            export: None,
            comment: Some(comment.clone()),
        },
        pending_comment: comment,
    };
    method
        .disk_method()
        .expect("only disk methods copy disks")
        .copy(rds, source, &target_disk)
        .await
        .map_err(|e| format!("copying with {method} failed: {e}"))?;
    let copied = rds
        .read_file(target_file)
        .await
        .map_err(|e| format!("reading the copy back failed: {e}"))?;
    Ok(if copied == text.as_str() {
        Verdict::CopiesData
    } else {
        Verdict::CopiesSettingsOnly
    })
}

async fn probe_subvolume_snapshot(rds: &RdsClient, nonce: &str) -> Outcome {
    let name = |end: &str| Slot::parse(&format!("probe-{nonce}-{end}")).expect("a valid name");
    let (source, target) = (name("s"), name("d"));
    let mut made = Vec::new();
    let verdict = match snapshot_and_compare(rds, nonce, &source, &target, &mut made).await {
        Ok(verdict) => verdict,
        Err(reason) => Verdict::Unavailable(reason),
    };
    let mut leftovers = Vec::new();
    for subvolume in made.iter().rev() {
        if let Err(error) = rds.remove_subvolume(subvolume).await {
            leftovers.push(format!(
                "remove Btrfs subvolume {subvolume} by hand: {error}"
            ));
        }
    }
    Outcome {
        method: Method::Btrfs,
        verdict,
        leftovers,
    }
}

/// Every subvolume it adds goes into `made`, for the clean-up.
async fn snapshot_and_compare(
    rds: &RdsClient,
    nonce: &str,
    source: &Slot,
    target: &Slot,
    made: &mut Vec<Slot>,
) -> Result<Verdict, String> {
    let btrfs = rds
        .pool_is_btrfs()
        .await
        .map_err(|e| format!("reading the pool's file system failed: {e}"))?;
    if !btrfs {
        return Err("the pool is not a Btrfs file system labelled as its mount point".to_owned());
    }
    rds.add_subvolume(source, None, false)
        .await
        .map_err(|e| format!("adding the probe subvolume failed: {e}"))?;
    made.push(source.clone());
    let text = probe_text(nonce);
    rds.write_file(&rds.subvolume_file(source), &text)
        .await
        .map_err(|e| format!("writing the probe file failed: {e}"))?;
    rds.add_subvolume(target, Some(source), true)
        .await
        .map_err(|e| format!("snapshotting the probe subvolume failed: {e}"))?;
    made.push(target.clone());
    let copied = rds
        .read_file(&rds.subvolume_file(target))
        .await
        .map_err(|e| format!("reading the snapshot's file back failed: {e}"))?;
    Ok(if copied == text.as_str() {
        Verdict::CopiesData
    } else {
        Verdict::CopiesSettingsOnly
    })
}

/// 512 bytes that name the probe run, so a stale file from another run never matches.
fn probe_text(nonce: &str) -> FileText {
    let line = format!("rds-csi snapshot probe {nonce} ");
    let text: String = line.chars().cycle().take(PROBE_BYTES).collect();
    FileText::new(&text).expect("printable ASCII within the limit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_text_is_one_sector_naming_the_run() {
        let text = probe_text("0123456789ab");
        assert_eq!(text.as_str().len(), PROBE_BYTES);
        assert!(
            text.as_str()
                .starts_with("rds-csi snapshot probe 0123456789ab ")
        );
        assert_ne!(probe_text("a"), probe_text("b"));
    }

    #[test]
    fn verdicts_say_what_they_mean() {
        assert!(Verdict::CopiesData.copies_data());
        assert!(!Verdict::CopiesSettingsOnly.copies_data());
        assert!(
            Verdict::CopiesSettingsOnly
                .to_string()
                .contains("only settings")
        );
        assert_eq!(
            Verdict::Unavailable("no /disk copy".into()).to_string(),
            "is unavailable: no /disk copy"
        );
    }
}

//! The operations snapshot methods build on: copies between disks, comments, and small files
//! with known contents (the probe's).

use super::{RdsClient, RdsError, checked, refused};
use crate::rds::command::{Cmd, DiskSpec};
use crate::rds::error::check_output;
use crate::rds::parse::{DiskRecord, ParseError, parse_grouped_u64};
use crate::rds::value::{Comment, FileText, RosPath, Slot};

/// How far a `/disk copy` got, from the last `status: <copied> / <total> (<pct>%)` it printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyProgress {
    pub copied: u64,
    pub total: u64,
}

impl CopyProgress {
    pub fn is_complete(&self) -> bool {
        self.total > 0 && self.copied == self.total
    }
}

impl RdsClient {
    /// Adds the disk `spec` with `copy-from` naming the disk in slot `from`, as
    /// [`RdsClient::create`] does for a plain add (serialised, read back, settled by reading
    /// when unanswered).
    pub async fn create_copy(&self, from: &Slot, spec: &DiskSpec) -> Result<DiskRecord, RdsError> {
        self.add(&Cmd::disk_add_copy_of(from, spec), spec).await
    }

    /// Adds a disk over the existing file `file` (no `file-size`: RouterOS attaches it).
    pub async fn attach(&self, slot: &Slot, file: &RosPath) -> Result<DiskRecord, RdsError> {
        self.check_version().await?;
        let _turn = self.mutations.lock().await;
        let cmd = Cmd::disk_attach(slot, file);
        self.run_silent(&cmd).await?;
        self.read_back(&cmd, slot).await
    }

    /// Copies every block of disk `src` into disk `dst` with `/disk copy` and returns the
    /// progress it reported last. The command runs in the foreground for the whole copy, so it
    /// is bounded by the copy timeout (`rds.copyTimeoutMs`), not the command timeout.
    ///
    /// The copy does not take the per-appliance mutation turn: it may run for minutes, it
    /// changes only the contents of `dst`, and no other command of the driver touches a disk
    /// that is being filled.
    pub async fn copy_blocks(&self, src: &Slot, dst: &Slot) -> Result<CopyProgress, RdsError> {
        self.check_version().await?;
        let cmd = Cmd::disk_copy(src, dst);
        let output = self.run_copy(&cmd).await?;
        let output = refused(&cmd, check_output(&cmd, &output))?;
        parse_copy_status(output).map_err(|source| RdsError::Parse {
            command: cmd.to_string(),
            source,
        })
    }

    /// Replaces the disk's comment and checks it reads back as given.
    pub async fn set_comment(
        &self,
        slot: &Slot,
        comment: &Comment,
    ) -> Result<DiskRecord, RdsError> {
        self.check_version().await?;
        let _turn = self.mutations.lock().await;
        let cmd = Cmd::disk_set_comment(slot, comment);
        self.run_silent(&cmd).await?;
        let disk = self.read_back(&cmd, slot).await?;
        let spec_comment = Some(comment.as_str());
        checked(&cmd, slot, disk, |disk| {
            if disk.comment.as_deref() == spec_comment {
                Vec::new()
            } else {
                vec![format!(
                    "comment={:?} (expected {:?})",
                    disk.comment.as_deref().unwrap_or_default(),
                    comment.as_str()
                )]
            }
        })
    }

    /// Writes a small file with `text` as its contents.
    pub async fn write_file(&self, path: &RosPath, text: &FileText) -> Result<(), RdsError> {
        let _turn = self.mutations.lock().await;
        self.run_silent(&Cmd::file_add_text(path, text)).await
    }

    /// The contents of a small file, as `/file get … contents` prints them (without the line
    /// end RouterOS adds).
    pub async fn read_file(&self, path: &RosPath) -> Result<String, RdsError> {
        let cmd = Cmd::file_get_contents(path);
        let output = self.run(&cmd).await?;
        let output = refused(&cmd, check_output(&cmd, &output))?;
        Ok(output
            .strip_suffix("\r\n")
            .or_else(|| output.strip_suffix('\n'))
            .unwrap_or(output)
            .to_owned())
    }
}

/// Reads the last `status:` line of `/disk copy`'s output; numbers may be space-grouped.
fn parse_copy_status(output: &str) -> Result<CopyProgress, ParseError> {
    let line = output
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("status:"))
        .ok_or(ParseError::Missing("status"))?;
    let invalid = || ParseError::Value {
        name: "status".to_owned(),
        value: line.trim().to_owned(),
        expected: "<copied> / <total> (<percent>%)",
    };
    let (copied, rest) = line.split_once('/').ok_or_else(invalid)?;
    let total = rest.split_once('(').map_or(rest, |(total, _)| total);
    Ok(CopyProgress {
        copied: parse_grouped_u64(copied.trim()).map_err(|_| invalid())?,
        total: parse_grouped_u64(total.trim()).map_err(|_| invalid())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_status_line_counts() {
        let output = "  status: 0 / 1 073 741 824 (0%)\r\n  status: 1 073 741 824 / 1 073 741 824 (100%)\r\n";
        let progress = parse_copy_status(output).unwrap();
        assert_eq!(
            progress,
            CopyProgress {
                copied: 1 << 30,
                total: 1 << 30
            }
        );
        assert!(progress.is_complete());
        let partial = parse_copy_status("status: 512 / 4096 (12%)").unwrap();
        assert!(!partial.is_complete());
    }

    #[test]
    fn output_without_a_status_is_refused() {
        assert_eq!(parse_copy_status(""), Err(ParseError::Missing("status")));
        assert!(matches!(
            parse_copy_status("status: done"),
            Err(ParseError::Value { .. })
        ));
    }
}

//! `disk-copy`: an empty disk of the target's size, then `/disk copy src= dst=`, the only
//! documented block copy between disks (REFERENCE.md §6.5, §8.1).
//!
//! The disk is added with the pending comment and gets its final comment only once the copy's
//! last `status` shows every byte copied, so a snapshot is ready only when complete, and a
//! retry after an interruption copies again into the disk it finds.

use super::{Method, SnapshotError, SnapshotMethod, Target};
use crate::rds::disk::{ErrorKind, RdsClient};
use crate::rds::parse::DiskRecord;
use crate::rds::value::Slot;

pub struct DiskCopy;

#[tonic::async_trait]
impl SnapshotMethod for DiskCopy {
    fn method(&self) -> Method {
        Method::DiskCopy
    }

    async fn copy(
        &self,
        rds: &RdsClient,
        source: &Slot,
        target: &Target,
    ) -> Result<DiskRecord, SnapshotError> {
        match rds.create(&target.pending_spec()).await {
            Ok(_) => {}
            // An earlier attempt added the disk and stopped before its copy finished.
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error.into()),
        }
        self.resume(rds, source, target).await
    }

    async fn resume(
        &self,
        rds: &RdsClient,
        source: &Slot,
        target: &Target,
    ) -> Result<DiskRecord, SnapshotError> {
        let slot = &target.spec.slot;
        let progress = rds.copy_blocks(source, slot).await?;
        if !progress.is_complete() {
            return Err(SnapshotError::Incomplete {
                source_slot: source.to_string(),
                target: slot.to_string(),
                copied: progress.copied,
                total: progress.total,
            });
        }
        Ok(rds.set_comment(slot, target.done_comment()).await?)
    }
}

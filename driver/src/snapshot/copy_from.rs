//! `copy-from`: `/disk add copy-from=[find where slot="<source>"] …` (the roadmap's design).
//!
//! One command makes the whole copy, so a copy is never pending. Whether RouterOS copies the
//! data or only the source's settings is what the probe settles before this method is used.

use super::{Method, SnapshotError, SnapshotMethod, Target};
use crate::rds::disk::{RdsClient, RdsError};
use crate::rds::parse::DiskRecord;
use crate::rds::value::Slot;

pub struct CopyFrom;

#[tonic::async_trait]
impl SnapshotMethod for CopyFrom {
    fn method(&self) -> Method {
        Method::CopyFrom
    }

    async fn copy(
        &self,
        rds: &RdsClient,
        source: &Slot,
        target: &Target,
    ) -> Result<DiskRecord, SnapshotError> {
        Ok(rds.create_copy(source, &target.spec).await?)
    }

    /// Never pending; a disk in the slot is the finished copy.
    async fn resume(
        &self,
        rds: &RdsClient,
        _: &Slot,
        target: &Target,
    ) -> Result<DiskRecord, SnapshotError> {
        let slot = &target.spec.slot;
        let disk = rds.find(slot).await?.ok_or_else(|| RdsError::NoDisk {
            command: "/disk add copy-from=".to_owned(),
            slot: slot.to_string(),
        })?;
        Ok(disk)
    }
}

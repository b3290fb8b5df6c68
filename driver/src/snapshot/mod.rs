//! Snapshot methods: how a point-in-time copy of a volume is made on the RDS, restored into a
//! new volume and removed (DESIGN.md, "Snapshot methods").
//!
//! How RouterOS copies a file disk is the least certain fact of the project
//! (routeros/README.md, assumption 1), so each way is one [`SnapshotMethod`], chosen by
//! configuration and VolumeSnapshotClass, and never used before [`probe`] has shown on the
//! appliance that it copies data ([`verified::Verified`]).

mod copy_from;
mod disk_copy;
pub mod probe;
pub mod verified;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::rds::command::DiskSpec;
use crate::rds::disk::{RdsClient, RdsError};
use crate::rds::parse::DiskRecord;
use crate::rds::value::{Comment, RosPath, Slot};

/// The snapshot methods by name, as configuration, VolumeSnapshotClass parameters and disk
/// comments spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `/disk add copy-from=`: the roadmap's design; whether it copies data is unverified.
    CopyFrom,
    /// An empty disk, then `/disk copy src= dst=`: a full block copy, documented.
    DiskCopy,
    /// A read-only Btrfs subvolume snapshot of a volume in its own subvolume
    /// (StorageClass `layout: subvolume`); not a disk, so not a [`SnapshotMethod`] (see
    /// [`Method::disk_method`]).
    Btrfs,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::CopyFrom, Method::DiskCopy, Method::Btrfs];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::CopyFrom => "copy-from",
            Method::DiskCopy => "disk-copy",
            Method::Btrfs => "btrfs",
        }
    }

    /// The implementation of a method whose snapshots are disks; `None` for [`Method::Btrfs`],
    /// whose snapshots are subvolumes the controller makes and reads itself.
    pub fn disk_method(self) -> Option<&'static dyn SnapshotMethod> {
        match self {
            Method::CopyFrom => Some(&copy_from::CopyFrom),
            Method::DiskCopy => Some(&disk_copy::DiskCopy),
            Method::Btrfs => None,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown snapshot method {0:?}: the methods are copy-from, disk-copy and btrfs")]
pub struct UnknownMethod(pub String);

impl FromStr for Method {
    type Err = UnknownMethod;

    fn from_str(text: &str) -> Result<Method, UnknownMethod> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == text)
            .ok_or_else(|| UnknownMethod(text.to_owned()))
    }
}

/// The disk a method makes: `spec` with its final comment, and the comment it carries while
/// the data is still being copied in (methods that copy synchronously never write it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub spec: DiskSpec,
    pub pending_comment: Comment,
}

impl Target {
    fn pending_spec(&self) -> DiskSpec {
        DiskSpec {
            comment: Some(self.pending_comment.clone()),
            ..self.spec.clone()
        }
    }

    fn done_comment(&self) -> &Comment {
        self.spec
            .comment
            .as_ref()
            .expect("a target always carries its final comment")
    }
}

/// Why a method could not make its copy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Rds(#[from] RdsError),
    #[error(
        "`/disk copy` from {source_slot} into {target} stopped after {copied} of {total} bytes; \
         the copy stays marked pending and the next retry copies again"
    )]
    Incomplete {
        source_slot: String,
        target: String,
        copied: u64,
        total: u64,
    },
}

/// One way to copy a volume on the RDS. Every call is safe to retry: a retry finds what an
/// earlier, interrupted call left and completes it.
#[tonic::async_trait]
pub trait SnapshotMethod: Send + Sync {
    fn method(&self) -> Method;

    /// Makes `target` a point-in-time copy of the data of the volume or snapshot in slot
    /// `source`: a snapshot when `target` is not exported, a restored or cloned volume when it is
    /// (grown when larger than the source). Every method copies the same way for both.
    async fn copy(
        &self,
        rds: &RdsClient,
        source: &Slot,
        target: &Target,
    ) -> Result<DiskRecord, SnapshotError>;

    /// Completes a copy into `target` that an earlier call left pending (its disk exists, its
    /// comment is `target.pending_comment`).
    async fn resume(
        &self,
        rds: &RdsClient,
        source: &Slot,
        target: &Target,
    ) -> Result<DiskRecord, SnapshotError>;

    /// Removes a snapshot and its data, checking both disk and file are gone; a snapshot
    /// already gone is fine.
    async fn delete(&self, rds: &RdsClient, slot: &Slot, file: &RosPath) -> Result<(), RdsError> {
        rds.remove(slot, file).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for method in Method::ALL {
            assert_eq!(method.as_str().parse::<Method>(), Ok(method));
            if let Some(implementation) = method.disk_method() {
                assert_eq!(implementation.method(), method);
            }
            let json = serde_json::to_string(&method).unwrap();
            assert_eq!(json, format!("\"{method}\""));
        }
        let error = "btrfs-send".parse::<Method>().unwrap_err();
        assert!(
            error.to_string().contains("copy-from, disk-copy and btrfs"),
            "{error}"
        );
    }
}

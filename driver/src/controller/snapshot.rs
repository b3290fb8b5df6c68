//! CreateSnapshot, DeleteSnapshot, ListSnapshots and GetSnapshot.
//!
//! A snapshot is an unexported disk in slot [`ids::snapshot_id`] of its CSI name, made by a
//! [`Method`]; its comment records the CSI name, the source volume, the creation time, the
//! method and whether the copy is still pending, so every answer comes from the RDS alone.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;
use tonic::Status;

use super::ControllerService;
use super::params::snapshot_method;
use super::volume::{require, volume_slot};
use crate::csi::v1::list_snapshots_response::Entry;
use crate::csi::v1::{
    CreateSnapshotRequest, CreateSnapshotResponse, DeleteSnapshotRequest, DeleteSnapshotResponse,
    GetSnapshotRequest, GetSnapshotResponse, ListSnapshotsRequest, ListSnapshotsResponse, Snapshot,
};
use crate::ids::{self, IdKind, Metadata};
use crate::rds::command::DiskSpec;
use crate::rds::parse::DiskRecord;
use crate::rds::value::{ByteSize, RosPath, Slot};
use crate::snapshot::{Method, Target};

/// The slot prefix of every snapshot ([`ids::snapshot_id`]).
const SNAPSHOT_PREFIX: &str = "snap-";

/// The metadata of a disk this driver made as a snapshot.
pub fn snapshot_metadata(disk: &DiskRecord) -> Option<Metadata> {
    let metadata = Metadata::parse(disk.comment.as_deref()?).ok()?;
    (metadata.kind == IdKind::Snapshot).then_some(metadata)
}

/// The slot of a snapshot id this driver could have made; `None` for any other id.
pub fn snapshot_slot(snapshot_id: &str) -> Option<Slot> {
    match ids::parse_id(snapshot_id)? {
        (IdKind::Snapshot, slot) => Some(slot),
        (IdKind::Volume, _) => None,
    }
}

fn snapshot_not_found(snapshot_id: &str) -> Status {
    Status::not_found(format!(
        "snapshot {snapshot_id:?} does not exist on the RDS"
    ))
}

fn to_snapshot(disk: &DiskRecord, metadata: &Metadata) -> Snapshot {
    Snapshot {
        size_bytes: disk
            .size
            .and_then(|size| i64::try_from(size).ok())
            .unwrap_or(0),
        snapshot_id: disk.slot.clone(),
        source_volume_id: metadata
            .source
            .as_ref()
            .map(Slot::to_string)
            .unwrap_or_default(),
        creation_time: Some(Timestamp {
            seconds: i64::try_from(metadata.created).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        ready_to_use: !metadata.pending,
        group_snapshot_id: String::new(),
    }
}

/// The [`Target`] that `disk` was made as, rebuilt from what it records, to resume its copy.
pub fn recorded_target(disk: &DiskRecord, metadata: &Metadata) -> Result<Target, Status> {
    let damaged = |what: String| {
        Status::internal(format!(
            "disk {} cannot be completed: {what}; inspect it on the RDS",
            disk.slot
        ))
    };
    let slot = Slot::parse(&disk.slot).map_err(|e| damaged(e.to_string()))?;
    let file_path = RosPath::parse(disk.file_path.as_deref().unwrap_or_default())
        .map_err(|e| damaged(e.to_string()))?;
    let size = disk
        .size
        .and_then(|size| ByteSize::new(size).ok())
        .ok_or_else(|| damaged("it shows no size".to_owned()))?;
    let export = match (disk.export, disk.port, disk.nqn.as_deref()) {
        (false, ..) => None,
        (true, Some(port), Some(nqn)) => Some(crate::rds::command::NvmeExport {
            port: std::num::NonZeroU16::new(port)
                .ok_or_else(|| damaged("its port is 0".to_owned()))?,
            nqn: crate::rds::value::Nqn::parse(nqn).map_err(|e| damaged(e.to_string()))?,
        }),
        (true, ..) => return Err(damaged("it is exported without port or NQN".to_owned())),
    };
    target(
        DiskSpec {
            slot,
            file_path,
            size,
            export,
            comment: None,
        },
        metadata,
    )
}

/// `spec` with the final comment of `metadata`, and its pending comment.
pub fn target(spec: DiskSpec, metadata: &Metadata) -> Result<Target, Status> {
    let comment = |pending| {
        Metadata {
            pending,
            ..metadata.clone()
        }
        .to_comment()
        .map_err(|e| {
            Status::invalid_argument(format!(
                "name {:?} is too long to record: {e}",
                metadata.csi_name
            ))
        })
    };
    Ok(Target {
        spec: DiskSpec {
            comment: Some(comment(false)?),
            ..spec
        },
        pending_comment: comment(true)?,
    })
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl ControllerService {
    pub(super) async fn create_snapshot(
        &self,
        request: CreateSnapshotRequest,
    ) -> Result<CreateSnapshotResponse, Status> {
        require("name", &request.name)?;
        require("source_volume_id", &request.source_volume_id)?;
        let method = snapshot_method(&request.parameters)
            .map_err(Status::invalid_argument)?
            .unwrap_or(self.settings.snapshot_method);
        let slot = ids::snapshot_id(&request.name);
        let _snapshot = self.locks.try_lock(slot.as_str())?;
        if let Some(disk) = self.rds.find(&slot).await? {
            return self.existing_snapshot(&request, disk).await;
        }
        let source = volume_slot(&request.source_volume_id)
            .ok_or_else(|| source_not_found(&request.source_volume_id))?;
        // The source may not be deleted, expanded or published while it is being copied.
        let _source = self.locks.try_lock(source.as_str())?;
        let volume = self
            .volume_disk(&source, &request.source_volume_id)
            .await
            .map_err(|_| source_not_found(&request.source_volume_id))?;
        self.verify(method).await?;
        let size = volume
            .size
            .and_then(|size| ByteSize::new(size).ok())
            .ok_or_else(|| Status::internal(format!("volume {source} shows no size on the RDS")))?;
        let metadata = Metadata {
            kind: IdKind::Snapshot,
            csi_name: request.name.clone(),
            source: Some(source.clone()),
            created: now(),
            requested_bytes: size.get(),
            context: BTreeMap::new(),
            method: Some(method),
            pending: false,
        };
        let target = target(
            DiskSpec {
                file_path: ids::disk_path(&self.settings.pool, &self.settings.base_dir, &slot),
                slot,
                size,
                export: None,
                comment: None,
            },
            &metadata,
        )?;
        let disk = method
            .implementation()
            .snapshot(&self.rds, &source, &target)
            .await?;
        let metadata = snapshot_metadata(&disk).unwrap_or(metadata);
        Ok(CreateSnapshotResponse {
            snapshot: Some(to_snapshot(&disk, &metadata)),
        })
    }

    /// The answer for a disk already in the snapshot's slot: this snapshot (its copy completed
    /// if an earlier call left it pending) when name and source match, else ALREADY_EXISTS.
    async fn existing_snapshot(
        &self,
        request: &CreateSnapshotRequest,
        disk: DiskRecord,
    ) -> Result<CreateSnapshotResponse, Status> {
        let name = &request.name;
        let slot = &disk.slot;
        let Some(recorded) = snapshot_metadata(&disk) else {
            return Err(Status::already_exists(format!(
                "slot {slot}, the id of snapshot {name:?}, is taken by a disk that is not an \
                 rds-csi snapshot (comment {:?}); remove or rename that disk on the RDS",
                disk.comment.as_deref().unwrap_or_default()
            )));
        };
        if recorded.csi_name != *name {
            return Err(Status::already_exists(format!(
                "snapshot {name:?} maps to id {slot}, which already holds snapshot {:?}: the two \
                 names collide; choose another name",
                recorded.csi_name
            )));
        }
        let source = recorded.source.clone();
        if source.as_ref().map(Slot::as_str) != Some(request.source_volume_id.as_str()) {
            return Err(Status::already_exists(format!(
                "snapshot {name:?} (id {slot}) already exists of volume {:?}, not of {:?}",
                source.as_ref().map(Slot::as_str).unwrap_or_default(),
                request.source_volume_id
            )));
        }
        if !recorded.pending {
            return Ok(CreateSnapshotResponse {
                snapshot: Some(to_snapshot(&disk, &recorded)),
            });
        }
        let method = recorded.method.unwrap_or(self.settings.snapshot_method);
        let source = source.expect("checked above");
        let target = recorded_target(&disk, &recorded)?;
        let disk = method
            .implementation()
            .resume(&self.rds, &source, &target)
            .await?;
        let metadata = snapshot_metadata(&disk).unwrap_or(recorded);
        Ok(CreateSnapshotResponse {
            snapshot: Some(to_snapshot(&disk, &metadata)),
        })
    }

    /// Ok when `method` copies data on this RDS (probed before its first use).
    pub(super) async fn verify(&self, method: Method) -> Result<(), Status> {
        let dir = self.settings.pool.join(&self.settings.base_dir);
        self.verified.check(&self.rds, &dir, method).await?;
        Ok(())
    }

    pub(super) async fn delete_snapshot(
        &self,
        request: DeleteSnapshotRequest,
    ) -> Result<DeleteSnapshotResponse, Status> {
        require("snapshot_id", &request.snapshot_id)?;
        // An id this driver never made names nothing to delete.
        let Some(slot) = snapshot_slot(&request.snapshot_id) else {
            return Ok(DeleteSnapshotResponse {});
        };
        let _snapshot = self.locks.try_lock(slot.as_str())?;
        let (method, file) = match self.rds.find(&slot).await? {
            // The disk is gone, but an earlier delete may have stopped before removing the file.
            None => (
                self.settings.snapshot_method,
                ids::disk_path(&self.settings.pool, &self.settings.base_dir, &slot),
            ),
            Some(disk) => {
                let Some(metadata) = snapshot_metadata(&disk) else {
                    return Err(Status::failed_precondition(format!(
                        "disk {slot} is not an rds-csi snapshot (comment {:?}); refusing to \
                         delete it",
                        disk.comment.as_deref().unwrap_or_default()
                    )));
                };
                let file =
                    RosPath::parse(disk.file_path.as_deref().unwrap_or_default()).map_err(|e| {
                        Status::internal(format!(
                            "disk {slot} has a file-path rds-csi cannot use: {e}"
                        ))
                    })?;
                (
                    metadata.method.unwrap_or(self.settings.snapshot_method),
                    file,
                )
            }
        };
        method
            .implementation()
            .delete(&self.rds, &slot, &file)
            .await?;
        Ok(DeleteSnapshotResponse {})
    }

    pub(super) async fn get_snapshot(
        &self,
        request: GetSnapshotRequest,
    ) -> Result<GetSnapshotResponse, Status> {
        require("snapshot_id", &request.snapshot_id)?;
        let (disk, metadata) = self
            .find_snapshot(&request.snapshot_id)
            .await?
            .ok_or_else(|| snapshot_not_found(&request.snapshot_id))?;
        Ok(GetSnapshotResponse {
            snapshot: Some(to_snapshot(&disk, &metadata)),
        })
    }

    /// The snapshot `snapshot_id` names, if it exists.
    pub(super) async fn find_snapshot(
        &self,
        snapshot_id: &str,
    ) -> Result<Option<(DiskRecord, Metadata)>, Status> {
        let Some(slot) = snapshot_slot(snapshot_id) else {
            return Ok(None);
        };
        Ok(self.rds.find(&slot).await?.and_then(|disk| {
            let metadata = snapshot_metadata(&disk)?;
            Some((disk, metadata))
        }))
    }

    /// Pages are ordered by snapshot id and a token is the last id of the previous page, as in
    /// ListVolumes.
    pub(super) async fn list_snapshots(
        &self,
        request: ListSnapshotsRequest,
    ) -> Result<ListSnapshotsResponse, Status> {
        let max_entries = usize::try_from(request.max_entries).map_err(|_| {
            Status::invalid_argument(format!("max_entries is negative ({})", request.max_entries))
        })?;
        let after = match request.starting_token.as_str() {
            "" => None,
            token => Some(snapshot_slot(token).ok_or_else(|| {
                Status::aborted(format!(
                    "starting_token {token:?} is not a token this driver returned; list again \
                     from the start"
                ))
            })?),
        };
        let mut snapshots: Vec<(DiskRecord, Metadata)> = if request.snapshot_id.is_empty() {
            let prefix = Slot::parse(SNAPSHOT_PREFIX).expect("a valid slot prefix");
            self.rds
                .list(&prefix)
                .await?
                .into_iter()
                .filter(|disk| snapshot_slot(&disk.slot).is_some())
                .filter_map(|disk| {
                    let metadata = snapshot_metadata(&disk)?;
                    Some((disk, metadata))
                })
                .collect()
        } else {
            self.find_snapshot(&request.snapshot_id)
                .await?
                .into_iter()
                .collect()
        };
        snapshots.retain(|(disk, metadata)| {
            let source_matches = request.source_volume_id.is_empty()
                || metadata.source.as_ref().map(Slot::as_str)
                    == Some(request.source_volume_id.as_str());
            let after_token = after
                .as_ref()
                .is_none_or(|after| disk.slot.as_str() > after.as_str());
            source_matches && after_token
        });
        let more = max_entries > 0 && snapshots.len() > max_entries;
        if more {
            snapshots.truncate(max_entries);
        }
        let next_token = match snapshots.last() {
            Some((last, _)) if more => last.slot.clone(),
            _ => String::new(),
        };
        Ok(ListSnapshotsResponse {
            entries: snapshots
                .iter()
                .map(|(disk, metadata)| Entry {
                    snapshot: Some(to_snapshot(disk, metadata)),
                })
                .collect(),
            next_token,
        })
    }
}

fn source_not_found(volume_id: &str) -> Status {
    Status::not_found(format!(
        "source volume {volume_id:?} does not exist on the RDS"
    ))
}

//! CreateSnapshot, DeleteSnapshot, ListSnapshots and GetSnapshot.
//!
//! A snapshot is an unexported disk in slot [`ids::snapshot_id`] of its CSI name, made by a
//! [`Method`]; its comment records the CSI name, the source volume, the creation time, the
//! method and whether the copy is still pending, so every answer comes from the RDS alone.
//!
//! A `btrfs` snapshot is instead a read-only Btrfs subvolume named by the same id, whose parent
//! is the volume's subvolume (StorageClass `layout: subvolume`). Nothing else is stored: the
//! source is the subvolume's `parent`, the creation time its `creation-time`, the size that of
//! its `volume.img` (`/file get … size`), and the CSI name is not needed because the id is a
//! hash of it. It is complete once it exists, so it is always ready to use.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;
use tonic::Status;

use super::ControllerService;
use super::copies::{Copy, Start, Waited};
use super::delete::recorded_file;
use super::params::snapshot_method;
use super::volume::{only_when_missing, require, require_complete, volume_slot};
use crate::csi::v1::list_snapshots_response::Entry;
use crate::csi::v1::{
    CreateSnapshotRequest, CreateSnapshotResponse, DeleteSnapshotRequest, DeleteSnapshotResponse,
    GetSnapshotRequest, GetSnapshotResponse, ListSnapshotsRequest, ListSnapshotsResponse, Snapshot,
};
use crate::guard::VolumeGuard;
use crate::ids::{self, IdKind, Metadata};
use crate::rds::command::DiskSpec;
use crate::rds::disk::ErrorKind;
use crate::rds::parse::{DiskRecord, SubvolumeRecord};
use crate::rds::value::{ByteSize, RosPath, Slot};
use crate::snapshot::{Method, SnapshotMethod, Target};

/// The slot prefix of every snapshot ([`ids::snapshot_id`]).
const SNAPSHOT_PREFIX: &str = "snap-";

/// The metadata of a disk this driver made as a snapshot.
pub fn snapshot_metadata(disk: &DiskRecord) -> Option<Metadata> {
    Metadata::of_disk(disk.comment.as_deref(), IdKind::Snapshot).ok()
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

/// A snapshot as the controller answers for it, whichever method made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub slot: Slot,
    pub source: Option<Slot>,
    /// Bytes.
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub method: Method,
    /// Its copy has not completed yet.
    pub pending: bool,
}

impl Found {
    /// A disk-based snapshot; `default` is the method for a comment that names none.
    fn of_disk(disk: &DiskRecord, metadata: &Metadata, default: Method) -> Option<Found> {
        Some(Found {
            slot: Slot::parse(&disk.slot).ok()?,
            source: metadata.source.clone(),
            size: disk.size.unwrap_or(0),
            created: metadata.created,
            method: metadata.method.unwrap_or(default),
            pending: metadata.pending,
        })
    }

    /// A `btrfs` snapshot, its size not yet read ([`ControllerService::with_size`]).
    fn of_subvolume(subvolume: &SubvolumeRecord) -> Option<Found> {
        if !subvolume.read_only {
            return None;
        }
        Some(Found {
            slot: snapshot_slot(&subvolume.name)?,
            source: subvolume
                .parent
                .as_deref()
                .and_then(|parent| Slot::parse(parent).ok()),
            size: 0,
            created: subvolume.created.unwrap_or(0),
            method: Method::Btrfs,
            pending: false,
        })
    }
}

fn to_snapshot(found: &Found) -> Snapshot {
    Snapshot {
        size_bytes: i64::try_from(found.size).unwrap_or(i64::MAX),
        snapshot_id: found.slot.to_string(),
        source_volume_id: found
            .source
            .as_ref()
            .map(Slot::to_string)
            .unwrap_or_default(),
        creation_time: Some(Timestamp {
            seconds: i64::try_from(found.created).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        ready_to_use: !found.pending,
        group_snapshot_id: String::new(),
    }
}

/// The implementation of `method`, which made the disk in `slot`.
pub fn disk_method(method: Method, slot: &str) -> Result<&'static dyn SnapshotMethod, Status> {
    method.disk_method().ok_or_else(|| {
        Status::internal(format!(
            "disk {slot} records snapshot method {method}, whose snapshots are Btrfs subvolumes, \
             not disks; inspect it on the RDS"
        ))
    })
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
    /// `within`: how long a copy may be waited for before answering it not ready to use.
    pub(super) async fn create_snapshot(
        &self,
        request: CreateSnapshotRequest,
        within: Option<Duration>,
    ) -> Result<CreateSnapshotResponse, Status> {
        require("name", &request.name)?;
        require("source_volume_id", &request.source_volume_id)?;
        let method = snapshot_method(&request.parameters)
            .map_err(Status::invalid_argument)?
            .unwrap_or(self.settings.snapshot_method);
        let slot = ids::snapshot_id(&request.name);
        // A retry while this snapshot's copy runs joins it: no second copy.
        if let Some(copy) = self.copies.get(&slot) {
            return self.snapshot_copied(&request, &slot, copy, within).await;
        }
        let snapshot = self.locks.try_lock(slot.as_str())?;
        if let Some(disk) = self.rds.find(&slot).await? {
            return self
                .existing_snapshot(&request, disk, snapshot, within)
                .await;
        }
        if method == Method::Btrfs
            && let Some(subvolume) = self.rds.subvolume(&slot).await?
        {
            let found = self.existing_subvolume_snapshot(&request, &subvolume)?;
            return Ok(CreateSnapshotResponse {
                snapshot: Some(to_snapshot(&self.with_size(found).await?)),
            });
        }
        let source = volume_slot(&request.source_volume_id)
            .ok_or_else(|| source_not_found(&request.source_volume_id))?;
        // The source may not be deleted, expanded or published while it is being copied.
        let source_guard = self.locks.try_lock(source.as_str())?;
        let volume = self
            .volume_disk(&source, &request.source_volume_id)
            .await
            .map_err(|status| {
                only_when_missing(status, || source_not_found(&request.source_volume_id))
            })?;
        require_complete(&volume, &request.source_volume_id)?;
        if method == Method::Btrfs {
            let found = self.snapshot_subvolume(&source, &volume, &slot).await?;
            return Ok(CreateSnapshotResponse {
                snapshot: Some(to_snapshot(&found)),
            });
        }
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
        let slot = target.spec.slot.clone();
        let guards = vec![snapshot, source_guard];
        let copy = self.start_copy(method, &source, target, Start::New, guards)?;
        self.snapshot_copied(&request, &slot, copy, within).await
    }

    /// The answer once `copy` into snapshot `slot` ends, or, while it runs past `within`, the
    /// snapshot not ready to use (the snapshotter calls again until it is).
    async fn snapshot_copied(
        &self,
        request: &CreateSnapshotRequest,
        slot: &Slot,
        copy: Copy,
        within: Option<Duration>,
    ) -> Result<CreateSnapshotResponse, Status> {
        if copy.source.as_str() != request.source_volume_id {
            return Err(Status::already_exists(format!(
                "snapshot {:?} (id {slot}) is being made of volume {}, not of {:?}",
                request.name, copy.source, request.source_volume_id
            )));
        }
        let running = || {
            Status::aborted(format!(
                "snapshot {slot} of volume {} is being made; its copy continues on the RDS",
                request.source_volume_id
            ))
        };
        match copy.wait(within).await {
            Waited::Done(Ok(disk)) => {
                let metadata = snapshot_metadata(&disk).ok_or_else(running)?;
                self.disk_answer(&disk, metadata)
            }
            Waited::Done(Err(error)) => Err(error.into()),
            // The pending disk answers `ready_to_use: false`.
            Waited::Running => match self.rds.find(slot).await? {
                Some(disk) => {
                    let metadata = snapshot_metadata(&disk).ok_or_else(running)?;
                    self.disk_answer(&disk, metadata)
                }
                None => Err(running()),
            },
        }
    }

    fn disk_answer(
        &self,
        disk: &DiskRecord,
        metadata: Metadata,
    ) -> Result<CreateSnapshotResponse, Status> {
        let metadata = snapshot_metadata(disk).unwrap_or(metadata);
        let found = Found::of_disk(disk, &metadata, self.settings.snapshot_method)
            .ok_or_else(|| Status::internal(format!("disk {} has no valid slot", disk.slot)))?;
        Ok(CreateSnapshotResponse {
            snapshot: Some(to_snapshot(&found)),
        })
    }

    /// Makes `slot` a read-only snapshot of the subvolume of volume `source` (method `btrfs`).
    async fn snapshot_subvolume(
        &self,
        source: &Slot,
        volume: &DiskRecord,
        slot: &Slot,
    ) -> Result<Found, Status> {
        let file = volume.file_path.as_deref().unwrap_or_default();
        if file.trim_start_matches('/') != self.rds.subvolume_file(source).as_str() {
            return Err(Status::failed_precondition(format!(
                "volume {source} is the file {file:?}, not a Btrfs subvolume of its own: snapshot \
                 method btrfs needs a volume made by a StorageClass with layout: subvolume; use \
                 a VolumeSnapshotClass with method copy-from or disk-copy for this volume"
            )));
        }
        self.verify(Method::Btrfs).await?;
        let subvolume = match self.rds.add_subvolume(slot, Some(source), true).await {
            Ok(subvolume) => subvolume,
            // Another controller made it meanwhile: it is this snapshot if it is of `source`.
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                let found = self.rds.subvolume(slot).await?.ok_or_else(|| {
                    Status::aborted(format!(
                        "Btrfs subvolume {slot} appeared and vanished while it was being made; \
                         retry"
                    ))
                })?;
                if found.parent.as_deref() != Some(source.as_str()) || !found.read_only {
                    return Err(subvolume_taken(slot.as_str(), &found, source.as_str()));
                }
                found
            }
            Err(error) => return Err(error.into()),
        };
        let found = Found::of_subvolume(&subvolume)
            .ok_or_else(|| Status::internal(format!("Btrfs subvolume {slot} is not a snapshot")))?;
        self.with_size(found).await
    }

    /// The snapshot a subvolume already in the snapshot's id is: this one when it is a
    /// read-only snapshot of the requested volume, else ALREADY_EXISTS.
    fn existing_subvolume_snapshot(
        &self,
        request: &CreateSnapshotRequest,
        subvolume: &SubvolumeRecord,
    ) -> Result<Found, Status> {
        match Found::of_subvolume(subvolume) {
            Some(found)
                if found.source.as_ref().map(Slot::as_str)
                    == Some(request.source_volume_id.as_str()) =>
            {
                Ok(found)
            }
            _ => Err(subvolume_taken(
                &subvolume.name,
                subvolume,
                &request.source_volume_id,
            )),
        }
    }

    /// `found` with the size of its data: a `btrfs` snapshot's is read from its file.
    async fn with_size(&self, mut found: Found) -> Result<Found, Status> {
        if found.method == Method::Btrfs {
            found.size = self
                .rds
                .file_size(&self.rds.subvolume_file(&found.slot))
                .await?;
        }
        Ok(found)
    }

    /// The answer for a disk already in the snapshot's slot: this snapshot (its copy completed
    /// if an earlier call left it pending) when name and source match, else ALREADY_EXISTS.
    async fn existing_snapshot(
        &self,
        request: &CreateSnapshotRequest,
        disk: DiskRecord,
        guard: VolumeGuard,
        within: Option<Duration>,
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
            return self.disk_answer(&disk, recorded);
        }
        // An earlier call's copy stopped before the end: copy again.
        let method = recorded.method.unwrap_or(self.settings.snapshot_method);
        let source = source.expect("checked above");
        let target = recorded_target(&disk, &recorded)?;
        let guards = vec![guard, self.locks.try_lock(source.as_str())?];
        let copy = self.start_copy(method, &source, target, Start::Resume, guards)?;
        let slot = Slot::parse(slot).map_err(|e| Status::internal(format!("{slot}: {e}")))?;
        self.snapshot_copied(request, &slot, copy, within).await
    }

    /// Ok when `method` copies data on this RDS (probed before its first use).
    pub(super) async fn verify(&self, method: Method) -> Result<(), Status> {
        let dir = self.settings.pool.join(&self.settings.base_dir);
        self.verified.check(&self.rds, &dir, method).await?;
        Ok(())
    }

    /// `within`: how long a copy still making the snapshot may be waited for.
    pub(super) async fn delete_snapshot(
        &self,
        request: DeleteSnapshotRequest,
        within: Option<Duration>,
    ) -> Result<DeleteSnapshotResponse, Status> {
        require("snapshot_id", &request.snapshot_id)?;
        // An id this driver never made names nothing to delete.
        let Some(slot) = snapshot_slot(&request.snapshot_id) else {
            return Ok(DeleteSnapshotResponse {});
        };
        self.refuse_while_copied_from(&slot, "snapshot")?;
        self.wait_for_copy_into(&slot, "snapshot", within).await?;
        let _snapshot = self.locks.try_lock(slot.as_str())?;
        self.refuse_while_pending_from(&slot, "snapshot").await?;
        let (method, files) = match self.rds.find(&slot).await? {
            None => match self.rds.subvolume(&slot).await? {
                Some(subvolume) if subvolume.read_only => {
                    self.rds.remove_subvolume(&slot).await?;
                    return Ok(DeleteSnapshotResponse {});
                }
                Some(_) => {
                    return Err(Status::failed_precondition(format!(
                        "Btrfs subvolume {slot} is writable, so not an rds-csi snapshot; \
                         refusing to delete it"
                    )));
                }
                // The disk is gone, but an earlier delete may have stopped before removing
                // the file, made in the `rds.baseDir` of its time: search for it.
                None => (
                    self.settings.snapshot_method,
                    self.rds.files_of(&slot).await?,
                ),
            },
            Some(disk) => {
                let Some(metadata) = snapshot_metadata(&disk) else {
                    return Err(Status::failed_precondition(format!(
                        "disk {slot} is not an rds-csi snapshot (comment {:?}); refusing to \
                         delete it",
                        disk.comment.as_deref().unwrap_or_default()
                    )));
                };
                (
                    metadata.method.unwrap_or(self.settings.snapshot_method),
                    vec![recorded_file(&disk)?],
                )
            }
        };
        for file in &files {
            match method.disk_method() {
                Some(implementation) => implementation.delete(&self.rds, &slot, file).await?,
                None => self.rds.remove(&slot, file).await?,
            }
        }
        Ok(DeleteSnapshotResponse {})
    }

    pub(super) async fn get_snapshot(
        &self,
        request: GetSnapshotRequest,
    ) -> Result<GetSnapshotResponse, Status> {
        require("snapshot_id", &request.snapshot_id)?;
        let found = self
            .find_snapshot(&request.snapshot_id)
            .await?
            .ok_or_else(|| snapshot_not_found(&request.snapshot_id))?;
        Ok(GetSnapshotResponse {
            snapshot: Some(to_snapshot(&found)),
        })
    }

    /// The snapshot `snapshot_id` names, if it exists.
    pub(super) async fn find_snapshot(&self, snapshot_id: &str) -> Result<Option<Found>, Status> {
        let Some(slot) = snapshot_slot(snapshot_id) else {
            return Ok(None);
        };
        if let Some(disk) = self.rds.find(&slot).await? {
            return Ok(self.disk_snapshot(&disk));
        }
        match self
            .rds
            .subvolume(&slot)
            .await?
            .as_ref()
            .and_then(Found::of_subvolume)
        {
            Some(found) => Ok(Some(self.with_size(found).await?)),
            None => Ok(None),
        }
    }

    fn disk_snapshot(&self, disk: &DiskRecord) -> Option<Found> {
        let metadata = snapshot_metadata(disk)?;
        Found::of_disk(disk, &metadata, self.settings.snapshot_method)
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
        let mut snapshots: Vec<Found> = if request.snapshot_id.is_empty() {
            let prefix = Slot::parse(SNAPSHOT_PREFIX).expect("a valid slot prefix");
            let disks = self.rds.list(&prefix).await?;
            let subvolumes = self.rds.subvolumes(&prefix).await?;
            let mut all: Vec<Found> = disks
                .iter()
                .filter(|disk| snapshot_slot(&disk.slot).is_some())
                .filter_map(|disk| self.disk_snapshot(disk))
                .chain(subvolumes.iter().filter_map(Found::of_subvolume))
                .collect();
            all.sort_by(|a, b| a.slot.as_str().cmp(b.slot.as_str()));
            all
        } else {
            self.find_snapshot(&request.snapshot_id)
                .await?
                .into_iter()
                .collect()
        };
        snapshots.retain(|found| {
            let source_matches = request.source_volume_id.is_empty()
                || found.source.as_ref().map(Slot::as_str)
                    == Some(request.source_volume_id.as_str());
            let after_token = after
                .as_ref()
                .is_none_or(|after| found.slot.as_str() > after.as_str());
            source_matches && after_token
        });
        let more = max_entries > 0 && snapshots.len() > max_entries;
        if more {
            snapshots.truncate(max_entries);
        }
        let next_token = match snapshots.last() {
            Some(last) if more => last.slot.to_string(),
            _ => String::new(),
        };
        let mut entries = Vec::with_capacity(snapshots.len());
        // Only the page's `btrfs` snapshots have their files' sizes read.
        for found in snapshots {
            entries.push(Entry {
                snapshot: Some(to_snapshot(&self.with_size(found).await?)),
            });
        }
        Ok(ListSnapshotsResponse {
            entries,
            next_token,
        })
    }
}

fn subvolume_taken(name: &str, subvolume: &SubvolumeRecord, source: &str) -> Status {
    Status::already_exists(format!(
        "Btrfs subvolume {name}, the id of this snapshot, already exists as {} of {:?}, not a \
         read-only snapshot of volume {source:?}: another snapshot name collides with this one, \
         or the subvolume was made by hand; choose another name or remove it on the RDS",
        if subvolume.read_only {
            "a read-only snapshot"
        } else {
            "a writable subvolume"
        },
        subvolume.parent.as_deref().unwrap_or("nothing"),
    ))
}

fn source_not_found(volume_id: &str) -> Status {
    Status::not_found(format!(
        "source volume {volume_id:?} does not exist on the RDS"
    ))
}

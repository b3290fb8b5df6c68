//! CreateVolume: the CSI name is the idempotency key.
//!
//! The name maps to a slot ([`ids::volume_id`]); a disk already in that slot is this volume when
//! its comment names the same CSI name and it satisfies the request (same size range, directory,
//! port and NQN), and ALREADY_EXISTS otherwise. A collision of two names on one slot is caught by
//! the comment, never silently shared.

use std::collections::BTreeMap;
use std::time::Duration;

use tonic::Status;

use super::capacity::Range;
use super::copies::{Start, Waited};
use super::params::FS_TYPE;
use super::snapshot::{now, recorded_target, target};
use super::source::ContentSource;
use super::volume::{metadata, require, to_volume};
use super::{ControllerService, Parameters, capability};
use crate::csi::v1::{CreateVolumeRequest, CreateVolumeResponse};
use crate::ids::{self, IdKind, Metadata};
use crate::rds::command::{DiskSpec, NvmeExport};
use crate::rds::disk::ErrorKind;
use crate::rds::parse::DiskRecord;
use crate::rds::value::{ByteSize, Slot};
use crate::snapshot::Method;

/// What external-provisioner's `--extra-create-metadata` adds, for the logs.
const PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";
const PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";

impl ControllerService {
    /// `within`: how long a copy may be waited for before answering that it is still running.
    pub(super) async fn create(
        &self,
        request: CreateVolumeRequest,
        within: Option<Duration>,
    ) -> Result<CreateVolumeResponse, Status> {
        require("name", &request.name)?;
        check_name(&request.name)?;
        capability::check_all(&request.volume_capabilities)?;
        if !request.mutable_parameters.is_empty() {
            return Err(Status::invalid_argument(
                "mutable_parameters (a VolumeAttributesClass) are not supported: this driver \
                 does not advertise MODIFY_VOLUME",
            ));
        }
        let params = Parameters::parse(&request.parameters).map_err(Status::invalid_argument)?;
        if let (Some(namespace), Some(claim)) = (
            request.parameters.get(PVC_NAMESPACE),
            request.parameters.get(PVC_NAME),
        ) {
            tracing::info!(pvc = %format_args!("{namespace}/{claim}"), "creating a volume");
        }
        let mut range = Range::of(request.capacity_range.as_ref())?;
        let fs = capability::fs_type(
            &request.volume_capabilities,
            params.volume_context.get(FS_TYPE).map(String::as_str),
        );
        if fs == Some("xfs") {
            range = range.at_least(capability::XFS_MIN_BYTES, "mkfs.xfs formats")?;
        }
        let source = match &request.volume_content_source {
            Some(source) => Some(self.content_source(source).await?),
            None => None,
        };
        let (spec, metadata) = self.spec(&request, &params, &range, source.as_ref())?;
        if let Some(source) = &source
            && params.in_subvolume != (source.method == Method::Btrfs)
        {
            return Err(Status::invalid_argument(format!(
                "{} {}, so the new volume needs a StorageClass {}",
                source.described,
                if params.in_subvolume {
                    "is not in a Btrfs subvolume of its own (it is not a btrfs snapshot, nor a \
                     volume made with layout: subvolume)"
                } else {
                    "is a Btrfs subvolume (a btrfs snapshot, or a volume made with layout: \
                     subvolume) and restores as a writable snapshot of it"
                },
                if params.in_subvolume {
                    "without layout: subvolume"
                } else {
                    "with layout: subvolume"
                }
            )));
        }

        // A retry while the copy into this volume runs joins it: no second copy.
        if let Some(copy) = self.copies.get(&spec.slot) {
            let disk = volume_copied(&spec.slot, copy, within).await?;
            let (disk, _) = self
                .existing(&request.name, &spec, &range, disk, &params, source.as_ref())
                .await?;
            return Ok(answer(&disk, params));
        }
        let volume = self.locks.try_lock(spec.slot.as_str())?;
        let _turn = self.creates.acquire().await;
        if let Some(disk) = self.rds.find(&spec.slot).await? {
            let (disk, recorded) = self
                .existing(&request.name, &spec, &range, disk, &params, source.as_ref())
                .await?;
            // An earlier call's copy stopped before the end: copy again.
            if let (true, Some(source)) = (recorded.pending, &source) {
                let target = recorded_target(&disk, &recorded)?;
                let method = recorded.method.unwrap_or(source.method);
                let guards = vec![volume, self.locks.try_lock(source.slot.as_str())?];
                let copy = self.start_copy(method, &source.slot, target, Start::Resume, guards)?;
                let disk = volume_copied(&spec.slot, copy, within).await?;
                return Ok(answer(&disk, params));
            }
            return Ok(answer(&disk, params));
        }
        if let Some(source) = &source {
            // The source may not be deleted or changed while it is being copied.
            let source_guard = self.locks.try_lock(source.slot.as_str())?;
            self.verify(source.method).await?;
            if source.method == Method::Btrfs {
                let disk = self.restore_subvolume(source, &spec).await?;
                return Ok(answer(&disk, params));
            }
            let slot = spec.slot.clone();
            let target = target(spec, &metadata)?;
            let guards = vec![volume, source_guard];
            let copy = self.start_copy(source.method, &source.slot, target, Start::New, guards)?;
            let disk = volume_copied(&slot, copy, within).await?;
            return Ok(answer(&disk, params));
        }
        if params.in_subvolume {
            self.add_volume_subvolume(&spec.slot).await?;
        }
        match self.rds.create(&spec).await {
            Ok(disk) => Ok(answer(&disk, params)),
            // Another controller (or an earlier, abandoned attempt) added the slot meanwhile.
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                match self.rds.find(&spec.slot).await? {
                    Some(disk) => {
                        let (disk, _) = self
                            .existing(&request.name, &spec, &range, disk, &params, None)
                            .await?;
                        Ok(answer(&disk, params))
                    }
                    None => Err(error.into()),
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Makes the volume's own subvolume (`layout: subvolume`), INVALID_ARGUMENT when the pool
    /// is not Btrfs. One left by an earlier, interrupted create is used as it is.
    async fn add_volume_subvolume(&self, slot: &Slot) -> Result<(), Status> {
        if !self.rds.pool_is_btrfs().await? {
            return Err(Status::invalid_argument(format!(
                "StorageClass layout=subvolume needs a Btrfs pool, but {} is not Btrfs (no \
                 `/disk btrfs filesystem` labelled so): use layout=file",
                self.settings.pool
            )));
        }
        match self.rds.add_subvolume(slot, None, false).await {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                match self.rds.subvolume(slot).await? {
                    Some(found) if found.parent.is_none() && !found.read_only => Ok(()),
                    _ => Err(Status::already_exists(format!(
                        "a Btrfs subvolume or file named {slot} already exists in the pool \
                         and is not an empty volume subvolume: remove it on the RDS"
                    ))),
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Makes `spec` from a Btrfs `source` (a snapshot, or a volume in `layout: subvolume`): a
    /// writable snapshot of it named as the volume, whose `volume.img` is attached as the
    /// volume's disk, then grown when a larger size is asked. Pieces an interrupted earlier
    /// attempt left are used as they are.
    async fn restore_subvolume(
        &self,
        source: &ContentSource,
        spec: &DiskSpec,
    ) -> Result<DiskRecord, Status> {
        let slot = &spec.slot;
        match self
            .rds
            .add_subvolume(slot, Some(&source.slot), false)
            .await
        {
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                match self.rds.subvolume(slot).await? {
                    Some(found)
                        if found.parent.as_deref() == Some(source.slot.as_str())
                            && !found.read_only => {}
                    _ => {
                        return Err(Status::already_exists(format!(
                            "a Btrfs subvolume or file named {slot} already exists in the pool \
                             and is not a writable snapshot of {}: remove it on the RDS",
                            source.described
                        )));
                    }
                }
            }
            Err(error) => return Err(error.into()),
        }
        let file_size = ByteSize::new(source.size)
            .map_err(|e| Status::internal(format!("{}: {e}", source.described)))?;
        let as_found = DiskSpec {
            size: file_size,
            ..spec.clone()
        };
        let disk = self.rds.attach_as(&as_found).await?;
        if spec.size.get() > source.size {
            return Ok(self.rds.resize(slot, spec.size).await?);
        }
        Ok(disk)
    }

    /// The disk this request asks for, and the metadata its comment records.
    fn spec(
        &self,
        request: &CreateVolumeRequest,
        params: &Parameters,
        range: &Range,
        source: Option<&ContentSource>,
    ) -> Result<(DiskSpec, Metadata), Status> {
        let slot = ids::volume_id(&request.name);
        let settings = &self.settings;
        let dir = params.base_dir.as_ref().unwrap_or(&settings.base_dir);
        let file_path = if params.in_subvolume {
            ids::subvolume_disk_path(&settings.pool, &slot)
        } else {
            ids::disk_path(&settings.pool, dir, &slot)
        };
        let nqn = ids::volume_nqn(&settings.nqn_prefix, &slot)
            .map_err(|e| Status::internal(format!("volume NQN for {slot}: {e}")))?;
        let metadata = Metadata {
            kind: IdKind::Volume,
            csi_name: request.name.clone(),
            source: source.map(|s| s.slot.clone()),
            created: now(),
            requested_bytes: range.required,
            context: params
                .volume_context
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            method: source.map(|s| s.method),
            pending: false,
        };
        let comment = metadata.to_comment().map_err(|e| {
            Status::invalid_argument(format!(
                "name {:?} is too long to record: {e}",
                request.name
            ))
        })?;
        let size = match source {
            Some(source) => source.size_for(range)?,
            None => range.size()?,
        };
        let spec = DiskSpec {
            file_path,
            slot,
            size,
            export: Some(NvmeExport {
                port: params.nvme_port.unwrap_or(settings.nvme_port),
                nqn,
            }),
            comment: Some(comment),
        };
        Ok((spec, metadata))
    }

    /// A disk already in the slot with what it records, when it is this volume (its copy may
    /// still be pending: the caller completes it), else ALREADY_EXISTS saying what differs.
    async fn existing(
        &self,
        name: &str,
        spec: &DiskSpec,
        range: &Range,
        disk: DiskRecord,
        params: &Parameters,
        source: Option<&ContentSource>,
    ) -> Result<(DiskRecord, Metadata), Status> {
        let slot = &spec.slot;
        let conflict = |what: String| {
            Err(Status::already_exists(format!(
                "volume {name:?} (id {slot}) already exists on the RDS {what}"
            )))
        };
        let Some(recorded) = metadata(&disk) else {
            return Err(Status::already_exists(format!(
                "slot {slot}, the id of volume {name:?}, is taken by a disk rds-csi did not \
                 create (comment {:?}); remove or rename that disk on the RDS",
                disk.comment.as_deref().unwrap_or_default()
            )));
        };
        if recorded.csi_name != name {
            return Err(Status::already_exists(format!(
                "volume {name:?} maps to id {slot}, which already holds volume {:?}: the two \
                 names collide; choose another name",
                recorded.csi_name
            )));
        }
        // A restore from a Btrfs source attaches the file at the source's size and grows it
        // after: the same request again finishes a grow that was interrupted.
        let disk = match source {
            Some(source)
                if source.method == Method::Btrfs
                    && recorded.source.as_ref() == Some(&source.slot)
                    && recorded.requested_bytes == range.required
                    && disk.size.is_some_and(|size| size < spec.size.get()) =>
            {
                self.rds.resize(slot, spec.size).await?
            }
            _ => disk,
        };
        let size = disk.size.unwrap_or(0);
        if !range.admits(size) {
            return conflict(format!("with {size} bytes, outside the requested {range}"));
        }
        let export = spec.export.as_ref().expect("volumes are always exported");
        if disk.file_path.as_deref() != Some(spec.file_path.as_str()) {
            return conflict(format!(
                "in file {:?}, not {} (a different baseDir)",
                disk.file_path.as_deref().unwrap_or_default(),
                spec.file_path
            ));
        }
        if !disk.export
            || disk.port != Some(export.port.get())
            || disk.nqn.as_deref() != Some(export.nqn.as_str())
        {
            return conflict(format!(
                "exported differently (export {}, port {:?}, NQN {:?}) from the requested port \
                 {} and NQN {}",
                disk.export,
                disk.port,
                disk.nqn.as_deref().unwrap_or_default(),
                export.port,
                export.nqn
            ));
        }
        let wanted: BTreeMap<String, String> = params
            .volume_context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if recorded.context != wanted {
            return conflict(format!(
                "with parameters {:?}, not {wanted:?}",
                recorded.context
            ));
        }
        let wanted_source = source.map(|s| &s.slot);
        if recorded.source.as_ref() != wanted_source {
            let shown = |slot: Option<&Slot>| slot.map_or("no source", Slot::as_str).to_owned();
            return conflict(format!(
                "made from {}, not from {}",
                shown(recorded.source.as_ref()),
                shown(wanted_source)
            ));
        }
        Ok((disk, recorded))
    }
}

/// The volume `slot` once `copy` into it ends, or ABORTED (the provisioner retries it) while
/// it runs past `within`.
async fn volume_copied(
    slot: &Slot,
    copy: super::copies::Copy,
    within: Option<Duration>,
) -> Result<DiskRecord, Status> {
    let source = copy.source.clone();
    match copy.wait(within).await {
        Waited::Done(result) => Ok(result?),
        Waited::Running => Err(Status::aborted(format!(
            "volume {slot} is being copied from {source}; the copy continues on the RDS and a \
             retry answers once it is complete"
        ))),
    }
}

/// The CSI spec bans these characters in names (U+0000–U+0008, U+000B, U+000C, U+000E–U+001F,
/// U+007F–U+009F).
fn check_name(name: &str) -> Result<(), Status> {
    let banned =
        |c: &char| matches!(*c as u32, 0x00..=0x08 | 0x0B | 0x0C | 0x0E..=0x1F | 0x7F..=0x9F);
    match name.chars().find(banned) {
        Some(c) => Err(Status::invalid_argument(format!(
            "name {name:?} holds the control character U+{:04X}, which CSI names may not contain",
            c as u32
        ))),
        None => Ok(()),
    }
}

fn answer(disk: &DiskRecord, params: Parameters) -> CreateVolumeResponse {
    CreateVolumeResponse {
        volume: Some(to_volume(disk, params.volume_context)),
    }
}

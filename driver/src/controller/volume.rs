//! A disk seen as a CSI volume, and the request checks every handler shares.

use std::collections::HashMap;

use tonic::{Code, Status};

use super::ControllerService;
use crate::csi::v1::volume_content_source::{SnapshotSource, Type, VolumeSource};
use crate::csi::v1::{Volume, VolumeCondition, VolumeContentSource};
use crate::ids::{self, IdKind, Metadata};
use crate::rds::parse::DiskRecord;
use crate::rds::value::Slot;

pub use crate::contract::require;

/// The slot of a volume id this driver could have made; `None` for any other id.
pub fn volume_slot(volume_id: &str) -> Option<Slot> {
    match ids::parse_id(volume_id)? {
        (IdKind::Volume, slot) => Some(slot),
        (IdKind::Snapshot, _) => None,
    }
}

pub fn not_found(volume_id: &str) -> Status {
    Status::not_found(format!("volume {volume_id:?} does not exist on the RDS"))
}

/// `status` when a volume's disk could not be read, `missing()` when it is not there: an RDS
/// that did not answer is a passing failure the caller retries, never a missing source (found by
/// rds-chaos, with a restart of the RDS during a clone and during a snapshot).
pub fn only_when_missing(status: Status, missing: impl FnOnce() -> Status) -> Status {
    match status.code() {
        Code::NotFound => missing(),
        _ => status,
    }
}

/// The metadata of a disk this driver made as a volume.
pub fn metadata(disk: &DiskRecord) -> Option<Metadata> {
    Metadata::of_disk(disk.comment.as_deref(), IdKind::Volume).ok()
}

/// The nodes a disk is published to: the host NQNs on its allow-list.
pub fn published_nodes(disk: &DiskRecord) -> Vec<String> {
    disk.allowed_hosts.clone()
}

pub fn to_volume(disk: &DiskRecord, volume_context: HashMap<String, String>) -> Volume {
    Volume {
        capacity_bytes: disk
            .size
            .and_then(|size| i64::try_from(size).ok())
            .unwrap_or(0),
        volume_id: disk.slot.clone(),
        volume_context,
        content_source: metadata(disk).and_then(|recorded| content_source(recorded.source?)),
        ..Volume::default()
    }
}

/// The snapshot or volume a volume was made from, as CSI names it. Read back from the source
/// the disk's comment records, so a CreateVolume, its idempotent repeat and ListVolumes all
/// report the same source: the spec asks every answer about a pre-populated volume to name it.
fn content_source(source: Slot) -> Option<VolumeContentSource> {
    let r#type = match ids::parse_id(source.as_str())? {
        (IdKind::Snapshot, slot) => Type::Snapshot(SnapshotSource {
            snapshot_id: slot.to_string(),
        }),
        (IdKind::Volume, slot) => Type::Volume(VolumeSource {
            volume_id: slot.to_string(),
        }),
    };
    Some(VolumeContentSource {
        r#type: Some(r#type),
    })
}

/// The slot prefixes of this driver's volumes ([`ids::volume_id`]).
const VOLUME_PREFIXES: [&str; 2] = ["pvc-", "vol-"];

impl ControllerService {
    /// Every disk in a volume slot, ordered by slot.
    pub(super) async fn volume_disks(&self) -> Result<Vec<DiskRecord>, Status> {
        let [pvc, vol] =
            VOLUME_PREFIXES.map(|prefix| Slot::parse(prefix).expect("a valid slot prefix"));
        let (mut disks, more) = tokio::try_join!(self.rds.list(&pvc), self.rds.list(&vol))?;
        disks.extend(more);
        disks.retain(|disk| volume_slot(&disk.slot).is_some());
        disks.sort_by(|a, b| a.slot.cmp(&b.slot));
        Ok(disks)
    }

    /// The existing volume `volume_id` names: NOT_FOUND when the id is not one of this driver's
    /// or no disk of this driver has its slot.
    pub(super) async fn find_volume(&self, volume_id: &str) -> Result<(Slot, DiskRecord), Status> {
        let slot = volume_slot(volume_id).ok_or_else(|| not_found(volume_id))?;
        let disk = self.volume_disk(&slot, volume_id).await?;
        Ok((slot, disk))
    }

    /// The disk in `slot`, when it is a volume this driver made; NOT_FOUND otherwise.
    pub(super) async fn volume_disk(
        &self,
        slot: &Slot,
        volume_id: &str,
    ) -> Result<DiskRecord, Status> {
        let Some(disk) = self.rds.find(slot).await? else {
            return Err(not_found(volume_id));
        };
        match Metadata::of_disk(disk.comment.as_deref(), IdKind::Volume) {
            Ok(_) => Ok(disk),
            Err(why) => Err(Status::not_found(format!(
                "volume {volume_id:?} does not exist: disk {slot} on the RDS {why}"
            ))),
        }
    }

    /// Whether nodes can attach the volume's disk as this driver exported it, and its data is
    /// complete.
    pub(super) fn condition(&self, disk: &DiskRecord) -> VolumeCondition {
        let abnormal = |message: String| VolumeCondition {
            abnormal: true,
            message,
        };
        if let Err(incomplete) = require_complete(disk, &disk.slot) {
            return abnormal(incomplete.message().to_owned());
        }
        let expected = Slot::parse(&disk.slot)
            .ok()
            .and_then(|slot| ids::volume_nqn(&self.settings.nqn_prefix, &slot).ok());
        match (disk.export, disk.nqn.as_deref(), expected) {
            (false, _, _) => abnormal(format!(
                "disk {} is not exported over NVMe/TCP, so no node can attach it; set \
                 nvme-tcp-export=yes on the RDS",
                disk.slot
            )),
            (true, Some(nqn), Some(expected)) if nqn == expected.as_str() => VolumeCondition {
                abnormal: false,
                message: format!(
                    "exported over NVMe/TCP as {nqn} on port {}",
                    disk.port.unwrap_or(self.settings.nvme_port.get())
                ),
            },
            (true, nqn, expected) => abnormal(format!(
                "disk {} is exported as {:?}, not as {:?}: nodes cannot find it",
                disk.slot,
                nqn.unwrap_or_default(),
                expected.as_ref().map(|n| n.as_str()).unwrap_or_default()
            )),
        }
    }
}

/// ABORTED when the copy into volume `volume_id` (a restore or clone) has not finished: its data
/// is incomplete, so it is not published, snapshotted or cloned until the provisioner's retry
/// of its CreateVolume completes the copy.
pub(super) fn require_complete(disk: &DiskRecord, volume_id: &str) -> Result<(), Status> {
    match Metadata::of_disk(disk.comment.as_deref(), IdKind::Volume) {
        Ok(metadata) if metadata.pending => Err(Status::aborted(format!(
            "volume {volume_id:?} is incomplete: the copy of its data from {} has not finished; \
             its CreateVolume, retried, completes it",
            metadata
                .source
                .as_ref()
                .map_or("its source", |source| source.as_str())
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A volume disk whose comment records `source`.
    fn disk_made_from(source: Option<&Slot>) -> DiskRecord {
        let slot = ids::volume_id("pvc-made-from");
        let comment = Metadata {
            kind: IdKind::Volume,
            csi_name: "pvc-made-from".into(),
            source: source.cloned(),
            created: 1,
            requested_bytes: 0,
            context: Default::default(),
            method: None,
            pending: false,
        }
        .to_comment()
        .unwrap();
        DiskRecord {
            slot: slot.to_string(),
            disk_type: "file".into(),
            file_path: None,
            size: Some(1 << 30),
            export: true,
            port: None,
            nqn: None,
            allowed_hosts: Vec::new(),
            comment: Some(comment.as_str().to_owned()),
        }
    }

    #[test]
    fn an_incomplete_volume_is_refused_and_reported_abnormal() {
        let source = Slot::parse("snap-a").unwrap();
        let mut disk = disk_made_from(Some(&source));
        assert!(require_complete(&disk, "v").is_ok());
        let metadata = Metadata::of_disk(disk.comment.as_deref(), IdKind::Volume).unwrap();
        disk.comment = Some(
            Metadata {
                pending: true,
                ..metadata
            }
            .to_comment()
            .unwrap()
            .as_str()
            .to_owned(),
        );
        let refused = require_complete(&disk, "v").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Aborted);
        assert!(
            refused.message().contains("snap-a"),
            "{}",
            refused.message()
        );
    }

    #[test]
    fn a_volume_names_the_snapshot_or_volume_it_was_made_from() {
        let snapshot = ids::snapshot_id("snapshot-1");
        let volume = ids::volume_id("volume-1");
        let from_snapshot = to_volume(&disk_made_from(Some(&snapshot)), HashMap::new());
        assert_eq!(
            from_snapshot.content_source.and_then(|s| s.r#type),
            Some(Type::Snapshot(SnapshotSource {
                snapshot_id: snapshot.to_string()
            }))
        );
        let cloned = to_volume(&disk_made_from(Some(&volume)), HashMap::new());
        assert_eq!(
            cloned.content_source.and_then(|s| s.r#type),
            Some(Type::Volume(VolumeSource {
                volume_id: volume.to_string()
            }))
        );
        let empty = to_volume(&disk_made_from(None), HashMap::new());
        assert_eq!(empty.content_source, None);
    }
}

//! CreateVolume from a snapshot or a volume (CLONE_VOLUME): which disk the data comes from,
//! and the size rules.
//!
//! The new volume is at least as large as its source: a larger request grows it, a smaller
//! one is OUT_OF_RANGE, and a request without a size gets the source's size.

use tonic::Status;

use super::ControllerService;
use super::capacity::Range;
use super::volume::{only_when_missing, require_complete, volume_slot};
use crate::csi::v1::VolumeContentSource;
use crate::csi::v1::volume_content_source::Type;
use crate::rds::value::{ByteSize, Slot};
use crate::snapshot::Method;

/// The snapshot or volume a new volume's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentSource {
    pub slot: Slot,
    /// The source's size in bytes.
    pub size: u64,
    /// How the copy is made: the method that made a snapshot; for a volume, `btrfs` when it is
    /// in its own subvolume, else the configured one.
    pub method: Method,
    /// How CSI named it, for messages.
    pub described: String,
}

impl ContentSource {
    /// The size of the new volume for `range`.
    pub fn size_for(&self, range: &Range) -> Result<ByteSize, Status> {
        let source = self.size;
        if range.limit.is_some_and(|limit| limit < source)
            || (range.required > 0 && range.required < source)
        {
            return Err(Status::out_of_range(format!(
                "{} holds {source} bytes, more than the requested {range}: a volume made from it \
                 must be at least as large",
                self.described
            )));
        }
        if range.required == 0 {
            return ByteSize::new(source)
                .map_err(|e| Status::internal(format!("{}: {e}", self.described)));
        }
        range.size()
    }
}

impl ControllerService {
    /// The disk `source` names: NOT_FOUND when it does not exist, UNAVAILABLE while a
    /// snapshot's copy is still running.
    pub(super) async fn content_source(
        &self,
        source: &VolumeContentSource,
    ) -> Result<ContentSource, Status> {
        match &source.r#type {
            Some(Type::Snapshot(snapshot)) => {
                let id = &snapshot.snapshot_id;
                let described = format!("source snapshot {id:?}");
                let found = self.find_snapshot(id).await?.ok_or_else(|| {
                    Status::not_found(format!("{described} does not exist on the RDS"))
                })?;
                if found.pending {
                    return Err(Status::unavailable(format!(
                        "{described} is not ready yet: its copy is still pending; retry once \
                         it is ready to use"
                    )));
                }
                Ok(ContentSource {
                    slot: found.slot,
                    size: found.size,
                    method: found.method,
                    described,
                })
            }
            Some(Type::Volume(volume)) => {
                let id = &volume.volume_id;
                let described = format!("source volume {id:?}");
                let missing =
                    || Status::not_found(format!("{described} does not exist on the RDS"));
                let slot = volume_slot(id).ok_or_else(missing)?;
                let disk = self
                    .volume_disk(&slot, id)
                    .await
                    .map_err(|status| only_when_missing(status, missing))?;
                require_complete(&disk, id)?;
                // A volume in its own subvolume clones as a Btrfs snapshot of it.
                let file = disk.file_path.as_deref().unwrap_or_default();
                let method =
                    if file.trim_start_matches('/') == self.rds.subvolume_file(&slot).as_str() {
                        Method::Btrfs
                    } else {
                        self.settings.snapshot_method
                    };
                Ok(ContentSource {
                    slot,
                    size: disk.size.unwrap_or(0),
                    method,
                    described,
                })
            }
            None => Err(Status::invalid_argument(
                "volume_content_source names neither a snapshot nor a volume",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn source(size: u64) -> ContentSource {
        ContentSource {
            slot: Slot::parse("snap-a").unwrap(),
            size,
            method: Method::CopyFrom,
            described: "source snapshot \"snap-a\"".into(),
        }
    }

    fn range(required: u64, limit: Option<u64>) -> Range {
        Range { required, limit }
    }

    #[test]
    fn a_volume_is_at_least_its_source() {
        let gib = 1 << 30;
        assert_eq!(source(gib).size_for(&range(0, None)).unwrap().get(), gib);
        assert_eq!(source(gib).size_for(&range(gib, None)).unwrap().get(), gib);
        assert_eq!(
            source(gib).size_for(&range(2 * gib, None)).unwrap().get(),
            2 * gib
        );
        for smaller in [range(gib / 2, None), range(0, Some(gib / 2))] {
            let error = source(gib).size_for(&smaller).unwrap_err();
            assert_eq!(error.code(), Code::OutOfRange);
            assert!(error.message().contains("snap-a"), "{}", error.message());
        }
    }
}

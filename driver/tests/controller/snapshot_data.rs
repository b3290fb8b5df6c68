//! Snapshot requests, and data written into and read from the simulator's backing files.

use std::io::{Read, Seek, SeekFrom, Write};

use rds_csi::snapshot::Method;

use crate::harness::*;

/// Small volumes keep whole-file comparisons quick.
pub const SIZE: i64 = 16 << 20;

pub fn snapshot_request(name: &str, source: &str, method: Method) -> CreateSnapshotRequest {
    CreateSnapshotRequest {
        name: name.into(),
        source_volume_id: source.into(),
        parameters: HashMap::from([("method".into(), method.to_string())]),
        ..Default::default()
    }
}

/// A simulator and driver where `method` can work: a Btrfs pool for `btrfs`.
pub async fn plugin_for(method: Method) -> Plugin {
    Plugin::with(Setup {
        pool_fs: match method {
            Method::Btrfs => PoolFs::Btrfs,
            Method::CopyFrom | Method::DiskCopy => PoolFs::Xfs,
        },
        ..Setup::default()
    })
    .await
}

/// `request` in the StorageClass layout `method` snapshots: its own subvolume for `btrfs`.
pub fn laid_out_for(mut request: CreateVolumeRequest, method: Method) -> CreateVolumeRequest {
    if method == Method::Btrfs {
        request
            .parameters
            .insert("layout".into(), "subvolume".into());
    }
    request
}

/// The `/file` name of a snapshot's data: its disk's file, or for `btrfs` the file in its
/// subvolume.
pub fn snapshot_file(id: &str, method: Method) -> String {
    match method {
        Method::Btrfs => format!("{POOL}/{id}/volume.img"),
        Method::CopyFrom | Method::DiskCopy => file_of(id),
    }
}

pub fn from_snapshot(name: &str, snapshot_id: &str, required: i64) -> CreateVolumeRequest {
    CreateVolumeRequest {
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(volume_content_source::Type::Snapshot(
                volume_content_source::SnapshotSource {
                    snapshot_id: snapshot_id.into(),
                },
            )),
        }),
        ..create_request(name, required, 0)
    }
}

pub fn from_volume(name: &str, volume_id: &str, required: i64) -> CreateVolumeRequest {
    CreateVolumeRequest {
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(volume_content_source::Type::Volume(
                volume_content_source::VolumeSource {
                    volume_id: volume_id.into(),
                },
            )),
        }),
        ..create_request(name, required, 0)
    }
}

impl Plugin {
    pub async fn snapshot(
        &mut self,
        name: &str,
        source: &str,
        method: Method,
    ) -> Result<Snapshot, tonic::Status> {
        let answer = self
            .controller
            .create_snapshot(snapshot_request(name, source, method))
            .await?
            .into_inner();
        Ok(answer.snapshot.expect("CreateSnapshot answers a snapshot"))
    }

    pub async fn delete_snapshot(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.controller
            .delete_snapshot(DeleteSnapshotRequest {
                snapshot_id: id.into(),
                ..Default::default()
            })
            .await
            .map(drop)
    }

    pub async fn delete_volume(&mut self, id: &str) {
        self.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    fn backing(&self, slot: &str) -> std::path::PathBuf {
        let disk = self
            .disk(slot)
            .unwrap_or_else(|| panic!("disk {slot} exists"));
        self.sim().backing_path(&disk)
    }

    /// Writes a pattern derived from `seed` at a few offsets of the disk's backing file, as a
    /// node would through NVMe/TCP.
    pub fn write_pattern(&self, slot: &str, seed: u8) {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(self.backing(slot))
            .unwrap();
        for (n, offset) in [0u64, 1 << 20, (SIZE as u64) - 65_536]
            .into_iter()
            .enumerate()
        {
            let block: Vec<u8> = (0..65_536u32)
                .map(|i| {
                    (i as u8)
                        .wrapping_mul(31)
                        .wrapping_add(seed)
                        .wrapping_add(n as u8)
                })
                .collect();
            file.seek(SeekFrom::Start(offset)).unwrap();
            file.write_all(&block).unwrap();
        }
        file.sync_all().unwrap();
    }

    /// The first `len` bytes of the disk's data.
    pub fn contents(&self, slot: &str, len: u64) -> Vec<u8> {
        read_start(&self.backing(slot), len)
    }

    /// A disk-copy snapshot `name` of `volume`, which must succeed, be ready and hold the
    /// volume's data.
    pub async fn disk_copy_holding_the_data(&mut self, name: &str, volume: &str) -> Snapshot {
        let snapshot = self.snapshot(name, volume, Method::DiskCopy).await.unwrap();
        assert!(snapshot.ready_to_use);
        self.assert_same_data(&snapshot.snapshot_id, volume);
        snapshot
    }

    /// Creates the volume `name` of [`SIZE`] bytes and writes pattern `seed` into it; its id.
    pub async fn volume_with_data(&mut self, name: &str, seed: u8) -> String {
        let volume = self
            .create(create_request(name, SIZE, 0))
            .await
            .unwrap()
            .volume_id;
        self.write_pattern(&volume, seed);
        volume
    }

    /// Asserts that disk `copy` holds the data of disk `original` (the first [`SIZE`] bytes).
    pub fn assert_same_data(&self, copy: &str, original: &str) {
        assert!(
            self.contents(copy, SIZE as u64) == self.contents(original, SIZE as u64),
            "{copy} does not hold the data of {original}"
        );
    }

    /// The first `len` bytes of a snapshot's data, whichever method made it.
    pub fn snapshot_contents(&self, id: &str, method: Method, len: u64) -> Vec<u8> {
        // rds-sim maps a disk's file to a host path; any disk carries the snapshot's file name
        // there.
        let mut disk = self.state().disks.pop().expect("a disk");
        disk.file_path = snapshot_file(id, method);
        read_start(&self.sim().backing_path(&disk), len)
    }
}

fn read_start(path: &std::path::Path, len: u64) -> Vec<u8> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .take(len)
        .read_to_end(&mut data)
        .unwrap();
    data
}

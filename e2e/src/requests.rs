//! CSI requests as a CO sends them, for the suites to start from and then bend.

use std::collections::HashMap;

use rds_csi::csi::v1::volume_capability::access_mode::Mode;
use rds_csi::csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use rds_csi::csi::v1::{
    CapacityRange, ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest,
    CreateVolumeRequest, VolumeCapability,
};

/// A filesystem volume with access mode `mode`, no filesystem type chosen.
pub fn mount_capability(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume::default())),
    }
}

/// A single-node-writer file system volume of type `fs_type`.
pub fn fs_capability(fs_type: &str) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs_type.to_owned(),
            ..Default::default()
        })),
        ..single_node_writer()
    }
}

/// A raw block volume with access mode `mode`.
pub fn block_capability(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

/// The capability csi-sanity uses throughout: a single-node writer filesystem volume.
pub fn single_node_writer() -> VolumeCapability {
    mount_capability(Mode::SingleNodeWriter)
}

/// Exactly `bytes`: csi-sanity's `MakeCreateVolumeReq` asks for required = limit.
pub fn exact_capacity(bytes: u64) -> CapacityRange {
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    CapacityRange {
        required_bytes: bytes,
        limit_bytes: bytes,
    }
}

/// A create request for `name`: single-node writer, exactly `bytes`, with `parameters`.
pub fn create_volume(
    name: &str,
    bytes: u64,
    parameters: &HashMap<String, String>,
) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.to_owned(),
        capacity_range: Some(exact_capacity(bytes)),
        volume_capabilities: vec![single_node_writer()],
        parameters: parameters.clone(),
        ..Default::default()
    }
}

/// Publishes `volume_id` read-write to `node_id` as a single-node writer filesystem.
pub fn publish(volume_id: &str, node_id: &str) -> ControllerPublishVolumeRequest {
    ControllerPublishVolumeRequest {
        volume_id: volume_id.to_owned(),
        node_id: node_id.to_owned(),
        volume_capability: Some(single_node_writer()),
        readonly: false,
        ..Default::default()
    }
}

pub fn unpublish(volume_id: &str, node_id: &str) -> ControllerUnpublishVolumeRequest {
    ControllerUnpublishVolumeRequest {
        volume_id: volume_id.to_owned(),
        node_id: node_id.to_owned(),
        ..Default::default()
    }
}

/// `prefix` and a random suffix, like csi-sanity's `UniqueString`, so repeated runs against a
/// shared RDS never collide.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A unique name of exactly `len` characters (csi-sanity's `UniqueStringWithLength`); `prefix` is
/// cut when it leaves no room for the random part.
pub fn unique_name_of_length(prefix: &str, len: usize) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let mut name: String = prefix
        .chars()
        .take(len.saturating_sub(random.len() + 1))
        .collect();
    name.push('-');
    while name.len() < len {
        name.push_str(&random[..random.len().min(len - name.len())]);
    }
    name.truncate(len);
    name
}

/// `request` in the StorageClass layout snapshots of `method` need: a volume of its own Btrfs
/// subvolume (`layout: subvolume`) for `btrfs`, a plain file disk otherwise.
pub fn laid_out_for(
    mut request: CreateVolumeRequest,
    method: rds_csi::snapshot::Method,
) -> CreateVolumeRequest {
    if method == rds_csi::snapshot::Method::Btrfs {
        request
            .parameters
            .insert("layout".to_owned(), "subvolume".to_owned());
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_have_the_length_asked_for() {
        assert_ne!(unique_name("a"), unique_name("a"));
        for len in [1, 8, 33, 128, 200] {
            let name = unique_name_of_length("sanity-controller-create-maxlen", len);
            assert_eq!(name.len(), len, "{name}");
        }
        assert!(unique_name_of_length("sanity", 128).starts_with("sanity-"));
    }
}

//! Which volume capabilities the driver supports.
//!
//! A volume is one NVMe/TCP subsystem whose allow-list names the hosts that may connect, so every
//! access mode that lets one node use it is supported, as a block device or as an ext4 or xfs
//! file system. Of the modes that share a volume between nodes, only MULTI_NODE_MULTI_WRITER as a
//! raw block device is: KubeVirt asks for it to live-migrate a VM, and ControllerPublishVolume
//! admits the second node only during such a migration (controller/publish.rs). A file system
//! on two nodes at once would be corrupted, so it is never shared.

use tonic::Status;

use crate::csi::v1::VolumeCapability;
use crate::csi::v1::volume_capability::access_mode::Mode;
use crate::csi::v1::volume_capability::{AccessMode, AccessType};

/// The file systems the node plugin can make and mount; empty means its default (ext4).
pub const FS_TYPES: [&str; 2] = ["ext4", "xfs"];

/// The least size mkfs.xfs formats (xfsprogs 5.19 and later refuse a smaller device with
/// "Filesystem must be larger than 300MB"; earlier ones took 16 MiB, so this suits every node).
pub const XFS_MIN_BYTES: u64 = 300 << 20;

/// The file system a volume with `capabilities` gets on the node: the first mount capability's
/// type, else the StorageClass's `fsType` (`parameter`), else the node's default; `None` when
/// it is only ever used as a raw block device.
pub fn fs_type<'a>(
    capabilities: &'a [VolumeCapability],
    parameter: Option<&'a str>,
) -> Option<&'a str> {
    let mounts: Vec<&str> = capabilities
        .iter()
        .filter_map(|c| match &c.access_type {
            Some(AccessType::Mount(mount)) => Some(mount.fs_type.as_str()),
            _ => None,
        })
        .collect();
    let named = mounts.iter().copied().find(|fs| !fs.is_empty());
    (!mounts.is_empty()).then(|| named.or(parameter).unwrap_or(FS_TYPES[0]))
}

/// Why `capability` is not supported, or `None` when it is.
pub fn unsupported(capability: &VolumeCapability) -> Option<String> {
    let mode = capability
        .access_mode
        .as_ref()
        .map(AccessMode::mode)
        .unwrap_or(Mode::Unknown);
    match mode {
        Mode::SingleNodeWriter
        | Mode::SingleNodeReaderOnly
        | Mode::SingleNodeSingleWriter
        | Mode::SingleNodeMultiWriter => {}
        Mode::MultiNodeMultiWriter if is_block(capability) => {}
        Mode::Unknown => return Some("the access mode is missing".to_owned()),
        Mode::MultiNodeMultiWriter if capability.access_type.is_some() => {
            return Some(
                "access mode MULTI_NODE_MULTI_WRITER (ReadWriteMany) is supported only for raw \
                 block volumes (volumeMode: Block), for KubeVirt live migration: a file system \
                 mounted on two nodes at once would be corrupted"
                    .to_owned(),
            );
        }
        Mode::MultiNodeReaderOnly | Mode::MultiNodeSingleWriter | Mode::MultiNodeMultiWriter => {
            return Some(format!(
                "access mode {} is not supported: a volume is attached to one node at a time \
                 (ReadWriteMany raw block volumes excepted, for KubeVirt live migration)",
                mode.as_str_name()
            ));
        }
    }
    match &capability.access_type {
        None => Some("the access type (block or mount) is missing".to_owned()),
        Some(AccessType::Block(_)) => None,
        Some(AccessType::Mount(mount)) => {
            let fs = mount.fs_type.as_str();
            (!fs.is_empty() && !FS_TYPES.contains(&fs)).then(|| {
                format!(
                    "file system {fs:?} is not supported; use {} or leave it empty",
                    FS_TYPES.join(" or ")
                )
            })
        }
    }
}

/// INVALID_ARGUMENT unless `capabilities` is non-empty and every one is supported.
pub fn check_all(capabilities: &[VolumeCapability]) -> Result<(), Status> {
    if capabilities.is_empty() {
        return Err(Status::invalid_argument("volume_capabilities is required"));
    }
    capabilities.iter().try_for_each(check)
}

/// INVALID_ARGUMENT unless `capability` is supported.
pub fn check(capability: &VolumeCapability) -> Result<(), Status> {
    match unsupported(capability) {
        None => Ok(()),
        Some(reason) => Err(Status::invalid_argument(format!(
            "unsupported volume capability: {reason}"
        ))),
    }
}

/// Whether the volume is used as a raw block device (no file system to grow on the node).
pub fn is_block(capability: &VolumeCapability) -> bool {
    matches!(capability.access_type, Some(AccessType::Block(_)))
}

/// Whether the volume is a raw block device that nodes share (ReadWriteMany): what KubeVirt asks
/// for so that a VM can live-migrate, and the one case a volume is published to two nodes.
pub fn is_shared_block(capability: &VolumeCapability) -> bool {
    is_block(capability)
        && capability.access_mode.as_ref().map(AccessMode::mode) == Some(Mode::MultiNodeMultiWriter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csi::v1::volume_capability::{BlockVolume, MountVolume};

    fn capability(mode: Mode, access: AccessType) -> VolumeCapability {
        VolumeCapability {
            access_mode: Some(AccessMode { mode: mode.into() }),
            access_type: Some(access),
        }
    }

    fn mount(fs: &str) -> AccessType {
        AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..MountVolume::default()
        })
    }

    #[test]
    fn single_node_modes_on_block_and_mount_are_supported() {
        for mode in [
            Mode::SingleNodeWriter,
            Mode::SingleNodeReaderOnly,
            Mode::SingleNodeSingleWriter,
            Mode::SingleNodeMultiWriter,
        ] {
            for access in [AccessType::Block(BlockVolume {}), mount(""), mount("xfs")] {
                assert_eq!(unsupported(&capability(mode, access)), None, "{mode:?}");
            }
        }
        let block = capability(Mode::SingleNodeWriter, AccessType::Block(BlockVolume {}));
        assert!(is_block(&block));
        assert!(!is_shared_block(&block));
        assert!(!is_block(&capability(Mode::SingleNodeWriter, mount(""))));
    }

    #[test]
    fn multi_node_multi_writer_is_supported_for_block_only() {
        let shared = capability(
            Mode::MultiNodeMultiWriter,
            AccessType::Block(BlockVolume {}),
        );
        assert_eq!(unsupported(&shared), None);
        assert!(is_shared_block(&shared));
        let filesystem = capability(Mode::MultiNodeMultiWriter, mount("xfs"));
        assert!(!is_shared_block(&filesystem));
        assert!(unsupported(&filesystem).is_some());
    }

    #[test]
    fn the_rest_is_refused_with_the_reason() {
        for (cap, reason) in [
            (
                capability(Mode::MultiNodeMultiWriter, mount("")),
                "supported only for raw block volumes",
            ),
            (
                capability(Mode::MultiNodeReaderOnly, AccessType::Block(BlockVolume {})),
                "one node at a time",
            ),
            (
                capability(Mode::Unknown, mount("")),
                "access mode is missing",
            ),
            (
                capability(Mode::SingleNodeWriter, mount("zfs")),
                "\"zfs\" is not supported",
            ),
            (
                VolumeCapability {
                    access_mode: Some(AccessMode {
                        mode: Mode::SingleNodeWriter.into(),
                    }),
                    access_type: None,
                },
                "access type (block or mount) is missing",
            ),
        ] {
            let found = unsupported(&cap).expect("refused");
            assert!(found.contains(reason), "{found}");
            assert_eq!(
                check(&cap).unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
        assert_eq!(
            check_all(&[]).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}

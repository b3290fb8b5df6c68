//! Which volume capabilities the driver supports.
//!
//! A volume is one NVMe/TCP subsystem whose allow-list names one host, so every access mode that
//! lets one node use it is supported, as a block device or as an ext4 or xfs file system; modes
//! that share a volume between nodes are not.

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
        Mode::Unknown => return Some("the access mode is missing".to_owned()),
        Mode::MultiNodeReaderOnly | Mode::MultiNodeSingleWriter | Mode::MultiNodeMultiWriter => {
            return Some(format!(
                "access mode {} is not supported: a volume is attached to one node at a time",
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
        assert!(!is_block(&capability(Mode::SingleNodeWriter, mount(""))));
    }

    #[test]
    fn the_rest_is_refused_with_the_reason() {
        for (cap, reason) in [
            (
                capability(Mode::MultiNodeMultiWriter, mount("")),
                "MULTI_NODE_MULTI_WRITER is not supported",
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

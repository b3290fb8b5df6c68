//! What kubelet's CSI plugin reads from a pod's volume, its claim and the PV to call the node
//! plugin (`pkg/volume/csi`: `csi_attacher.go` MountDevice, `csi_mounter.go` SetUpAt,
//! `csi_block.go`): pure, so the mapping is unit tested.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{PersistentVolume, SecretReference};
use rds_csi::csi::v1::VolumeCapability;
use rds_csi::csi::v1::volume_capability::access_mode::Mode;
use rds_csi::csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};

/// A pod volume that is ours: a claim bound to a CSI PV of the driver.
#[derive(Debug, Clone, PartialEq)]
pub struct CsiVolume {
    pub pv: String,
    pub handle: String,
    /// The claim's namespace and name.
    pub claim: (String, String),
    /// `volumeMode: Block`.
    pub block: bool,
    pub fs_type: String,
    pub mount_flags: Vec<String>,
    /// The PV's first access mode: kubelet's CSI plugin passes only that one.
    pub access_mode: String,
    /// The pod's `persistentVolumeClaim.readOnly` or the PV's `csi.readOnly`.
    pub read_only: bool,
    pub attributes: HashMap<String, String>,
    pub stage_secret: Option<SecretReference>,
    pub publish_secret: Option<SecretReference>,
    pub expand_secret: Option<SecretReference>,
}

impl CsiVolume {
    /// The volume `pv` describes for a pod's claim `claim`, when it is a CSI PV of `driver`.
    pub fn of(
        driver: &str,
        claim: (String, String),
        claim_read_only: bool,
        pv: &PersistentVolume,
    ) -> Option<CsiVolume> {
        let spec = pv.spec.as_ref()?;
        let csi = spec.csi.as_ref().filter(|csi| csi.driver == driver)?;
        Some(CsiVolume {
            pv: pv.metadata.name.clone().unwrap_or_default(),
            handle: csi.volume_handle.clone(),
            claim,
            block: spec.volume_mode.as_deref() == Some("Block"),
            fs_type: csi.fs_type.clone().unwrap_or_default(),
            mount_flags: spec.mount_options.clone().unwrap_or_default(),
            access_mode: spec
                .access_modes
                .as_ref()
                .and_then(|modes| modes.first().cloned())
                .unwrap_or_else(|| "ReadWriteOnce".to_owned()),
            read_only: claim_read_only || csi.read_only.unwrap_or(false),
            attributes: csi
                .volume_attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            stage_secret: csi.node_stage_secret_ref.clone(),
            publish_secret: csi.node_publish_secret_ref.clone(),
            expand_secret: csi.node_expand_secret_ref.clone(),
        })
    }

    /// The capability kubelet sends: block or mount (fsType and the PV's mount options), with the
    /// access mode mapped as the node's SINGLE_NODE_MULTI_WRITER capability decides.
    pub fn capability(&self, single_node_multi_writer: bool) -> VolumeCapability {
        let access_type = if self.block {
            AccessType::Block(BlockVolume {})
        } else {
            AccessType::Mount(MountVolume {
                fs_type: self.fs_type.clone(),
                mount_flags: self.mount_flags.clone(),
                ..MountVolume::default()
            })
        };
        VolumeCapability {
            access_mode: Some(AccessMode {
                mode: access_mode(&self.access_mode, single_node_multi_writer) as i32,
            }),
            access_type: Some(access_type),
        }
    }
}

/// kubelet's `asCSIAccessModeV1` and, for a node with SINGLE_NODE_MULTI_WRITER,
/// `asSingleNodeMultiWriterCapableCSIAccessModeV1`.
pub fn access_mode(mode: &str, single_node_multi_writer: bool) -> Mode {
    match (mode, single_node_multi_writer) {
        ("ReadWriteOnce", false) | ("ReadWriteOncePod", false) => Mode::SingleNodeWriter,
        ("ReadWriteOnce", true) => Mode::SingleNodeMultiWriter,
        ("ReadWriteOncePod", true) => Mode::SingleNodeSingleWriter,
        ("ReadOnlyMany", _) => Mode::MultiNodeReaderOnly,
        ("ReadWriteMany", _) => Mode::MultiNodeMultiWriter,
        _ => Mode::Unknown,
    }
}

/// The bytes of a resource quantity as PVs carry them: a plain number or one with a binary
/// (`Ki` … `Ei`) or decimal (`k` … `E`) suffix.
pub fn quantity_bytes(quantity: &str) -> Option<i64> {
    const SUFFIXES: [(&str, i64); 12] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| Some((quantity.strip_suffix(suffix)?, *factor)))
        .unwrap_or((quantity, 1));
    number.parse::<i64>().ok()?.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{CSIPersistentVolumeSource, PersistentVolumeSpec};

    fn pv(driver: &str, mode: Option<&str>) -> PersistentVolume {
        PersistentVolume {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("pv-1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                access_modes: Some(vec!["ReadWriteOncePod".into(), "ReadWriteOnce".into()]),
                volume_mode: mode.map(str::to_owned),
                mount_options: Some(vec!["noatime".into()]),
                csi: Some(CSIPersistentVolumeSource {
                    driver: driver.into(),
                    volume_handle: "vol-1".into(),
                    fs_type: Some("xfs".into()),
                    read_only: Some(true),
                    volume_attributes: Some([("k".to_owned(), "v".to_owned())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_csi_pv_of_the_driver_is_ours_and_another_drivers_is_not() {
        let claim = ("ns".to_owned(), "c".to_owned());
        assert!(CsiVolume::of("other", claim.clone(), false, &pv("d", None)).is_none());
        let volume = CsiVolume::of("d", claim, false, &pv("d", None)).unwrap();
        assert_eq!(volume.handle, "vol-1");
        assert_eq!(volume.access_mode, "ReadWriteOncePod");
        assert!(volume.read_only, "the PV's csi.readOnly makes it read-only");
        assert!(!volume.block);
        assert_eq!(volume.attributes["k"], "v");
    }

    #[test]
    fn the_capability_carries_fs_type_flags_and_the_mapped_mode() {
        let claim = ("ns".to_owned(), "c".to_owned());
        let volume = CsiVolume::of("d", claim.clone(), false, &pv("d", None)).unwrap();
        let cap = volume.capability(true);
        assert_eq!(
            cap.access_mode.unwrap().mode,
            Mode::SingleNodeSingleWriter as i32
        );
        let Some(AccessType::Mount(mount)) = cap.access_type else {
            panic!("a file system volume gets a mount capability")
        };
        assert_eq!(mount.fs_type, "xfs");
        assert_eq!(mount.mount_flags, ["noatime"]);
        let block = CsiVolume::of("d", claim, false, &pv("d", Some("Block"))).unwrap();
        assert!(matches!(
            block.capability(false).access_type,
            Some(AccessType::Block(_))
        ));
        assert_eq!(
            block.capability(false).access_mode.unwrap().mode,
            Mode::SingleNodeWriter as i32
        );
    }

    #[test]
    fn quantities_are_bytes() {
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("64Mi"), Some(64 << 20));
        assert_eq!(quantity_bytes("2G"), Some(2_000_000_000));
        assert_eq!(quantity_bytes("1048576"), Some(1 << 20));
        assert_eq!(quantity_bytes("1.5Gi"), None);
    }

    #[test]
    fn access_modes_map_as_kubelets() {
        assert_eq!(access_mode("ReadWriteOnce", false), Mode::SingleNodeWriter);
        assert_eq!(
            access_mode("ReadWriteOnce", true),
            Mode::SingleNodeMultiWriter
        );
        assert_eq!(access_mode("ReadOnlyMany", true), Mode::MultiNodeReaderOnly);
        assert_eq!(
            access_mode("ReadWriteMany", false),
            Mode::MultiNodeMultiWriter
        );
        assert_eq!(access_mode("Bogus", false), Mode::Unknown);
    }
}

//! Read-back checks: what a mutating command promised, compared with the disk RouterOS printed
//! afterwards. Pure, so every mismatch is testable without an RDS.

use std::fmt::Display;

use crate::rds::command::{DiskSpec, NvmeExport};
use crate::rds::parse::DiskRecord;
use crate::rds::value::Nqn;

/// The properties of `disk` that differ from `spec`, as `name=found (expected …)`; empty when
/// the disk is exactly what `/disk add` was asked for.
pub(super) fn created(spec: &DiskSpec, disk: &DiskRecord) -> Vec<String> {
    let mut diffs = Differences::default();
    diffs.check("type", disk.disk_type.as_str(), "file");
    diffs.check("size", shown(disk.size), spec.size.get().to_string());
    diffs.check(
        "file-path",
        shown(disk.file_path.as_deref()),
        spec.file_path.to_string(),
    );
    match &spec.export {
        Some(export) => diffs.exported(disk, export),
        None => diffs.check("nvme-tcp-export", disk.export, false),
    }
    diffs.check(
        "comment",
        shown(disk.comment.as_deref()),
        shown(spec.comment.as_ref().map(|c| c.as_str())),
    );
    diffs.0
}

/// `size` after `/disk set … file-size=`.
pub(super) fn resized(disk: &DiskRecord, size: u64) -> Vec<String> {
    let mut diffs = Differences::default();
    diffs.check("size", shown(disk.size), size.to_string());
    diffs.0
}

/// `nvme-tcp-server-allow-host-name` after it was set to admit `hosts` (none: fenced).
pub(super) fn allowed_hosts(disk: &DiskRecord, hosts: &[Nqn]) -> Vec<String> {
    let mut diffs = Differences::default();
    let expected: Vec<&str> = hosts.iter().map(Nqn::as_str).collect();
    let listed = |hosts: &[&str]| shown(Some(hosts.join(",")).filter(|l| !l.is_empty()));
    let found: Vec<&str> = disk.allowed_hosts.iter().map(String::as_str).collect();
    diffs.check(
        "nvme-tcp-server-allow-host-name",
        listed(&found),
        listed(&expected),
    );
    diffs.0
}

/// The export after it was ended.
pub(super) fn unexported(disk: &DiskRecord) -> Vec<String> {
    let mut diffs = Differences::default();
    diffs.check("nvme-tcp-export", disk.export, false);
    diffs.0
}

/// The export after it was made again with its port and NQN, admitting only `hosts`.
pub(super) fn reexported(disk: &DiskRecord, export: &NvmeExport, hosts: &[Nqn]) -> Vec<String> {
    let mut diffs = Differences::default();
    diffs.exported(disk, export);
    diffs.0.extend(allowed_hosts(disk, hosts));
    diffs.0
}

#[derive(Default)]
struct Differences(Vec<String>);

impl Differences {
    /// The disk is exported with `export`'s port and NQN.
    fn exported(&mut self, disk: &DiskRecord, export: &NvmeExport) {
        self.check("nvme-tcp-export", disk.export, true);
        self.check(
            "nvme-tcp-server-port",
            shown(disk.port),
            export.port.get().to_string(),
        );
        self.check(
            "nvme-tcp-server-nqn",
            shown(disk.nqn.as_deref()),
            export.nqn.to_string(),
        );
    }

    fn check<T: PartialEq + Display>(&mut self, name: &str, found: T, expected: T) {
        if found != expected {
            self.0.push(format!("{name}={found} (expected {expected})"));
        }
    }
}

/// A value as the messages show it; absent (or empty) is `""`.
fn shown<T: Display>(value: Option<T>) -> String {
    value.map_or_else(|| "\"\"".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rds::command::{DEFAULT_NVME_PORT, NvmeExport};
    use crate::rds::value::{ByteSize, Comment, Nqn, RosPath, Slot};

    fn spec() -> DiskSpec {
        DiskSpec {
            slot: Slot::parse("pvc-a").unwrap(),
            file_path: RosPath::parse("pool/csi/pvc-a.img").unwrap(),
            size: ByteSize::new(1 << 30).unwrap(),
            export: Some(NvmeExport {
                port: DEFAULT_NVME_PORT,
                nqn: Nqn::parse("nqn.2000-02.com.mikrotik:pvc-a").unwrap(),
            }),
            comment: Some(Comment::new("rds-csi:1,kind:volume").unwrap()),
        }
    }

    fn disk() -> DiskRecord {
        DiskRecord {
            slot: "pvc-a".into(),
            disk_type: "file".into(),
            file_path: Some("pool/csi/pvc-a.img".into()),
            size: Some(1 << 30),
            export: true,
            port: Some(4420),
            nqn: Some("nqn.2000-02.com.mikrotik:pvc-a".into()),
            allowed_hosts: Vec::new(),
            comment: Some("rds-csi:1,kind:volume".into()),
        }
    }

    #[test]
    fn the_disk_asked_for_has_no_differences() {
        assert!(created(&spec(), &disk()).is_empty());
        assert!(resized(&disk(), 1 << 30).is_empty());
        assert!(allowed_hosts(&disk(), &[]).is_empty());
    }

    #[test]
    fn each_difference_is_named() {
        let other = DiskRecord {
            size: Some(4096),
            port: Some(4421),
            nqn: None,
            comment: None,
            ..disk()
        };
        assert_eq!(
            created(&spec(), &other),
            [
                "size=4096 (expected 1073741824)",
                "nvme-tcp-server-port=4421 (expected 4420)",
                "nvme-tcp-server-nqn=\"\" (expected nqn.2000-02.com.mikrotik:pvc-a)",
                "comment=\"\" (expected rds-csi:1,kind:volume)",
            ]
        );
        let unexported = DiskRecord {
            export: false,
            ..disk()
        };
        assert_eq!(
            created(&spec(), &unexported),
            ["nvme-tcp-export=false (expected true)"]
        );
        assert_eq!(
            allowed_hosts(
                &disk(),
                &[Nqn::parse("nqn.2014-08.org.nvmexpress:uuid:1").unwrap()]
            ),
            ["nvme-tcp-server-allow-host-name=\"\" (expected nqn.2014-08.org.nvmexpress:uuid:1)"]
        );
        let two = DiskRecord {
            allowed_hosts: vec!["nqn.2014-08.org.nvmexpress:uuid:1".into()],
            ..disk()
        };
        assert_eq!(
            allowed_hosts(
                &two,
                &[
                    Nqn::parse("nqn.2014-08.org.nvmexpress:uuid:2").unwrap(),
                    Nqn::parse("nqn.2014-08.org.nvmexpress:uuid:1").unwrap()
                ]
            ),
            [
                "nvme-tcp-server-allow-host-name=nqn.2014-08.org.nvmexpress:uuid:1 (expected \
              nqn.2014-08.org.nvmexpress:uuid:2,nqn.2014-08.org.nvmexpress:uuid:1)"
            ]
        );
        assert_eq!(
            resized(&disk(), 2 << 30),
            ["size=1073741824 (expected 2147483648)"]
        );
    }
}

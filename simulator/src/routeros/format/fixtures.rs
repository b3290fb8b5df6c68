//! Test items rebuilt from the real RDS captures (captures.md §1 and §2, RouterOS 7.24.4).

use super::{FlagDef, Item, Value};

const fn flag(letter: char, name: &'static str, group: u8) -> FlagDef {
    FlagDef {
        letter,
        name,
        group,
    }
}

/// `/disk` flags in the grouping the captures and the 7.24 Disks page show: `B`; `M, S`; `r`;
/// `g, p`; `t`.
pub const DISK_FLAGS: [FlagDef; 7] = [
    flag('B', "BLOCK-DEVICE", 0),
    flag('M', "MOUNTED", 1),
    flag('S', "SWAP-ENABLED", 1),
    flag('r', "RAID-MEMBER", 2),
    flag('g', "GUID-PARTITION-TABLE", 3),
    flag('p', "PARTITION", 3),
    flag('t', "NVME-TCP-EXPORT", 4),
];

fn s(text: &str) -> Value {
    Value::Str(text.to_owned())
}

fn bare(text: &str) -> Value {
    Value::Bare(text.to_owned())
}

const NO: Value = Value::Bool(false);

/// The properties every disk ends with.
fn sharing_tail() -> Vec<(&'static str, Value)> {
    vec![
        ("iscsi-export", NO),
        ("nfs-sharing", NO),
        ("smb-sharing", NO),
        ("media-sharing", NO),
        ("media-interface", bare("none")),
        ("swap", NO),
    ]
}

/// captures.md §1: an exported file disk, index 31, whose file lives at `file_path`.
pub fn file_disk(file_path: &str) -> Item {
    let mut props = vec![
        ("type", bare("file")),
        ("slot", s("vm-storage-001")),
        ("slot-default", s("")),
        ("parent", s("")),
        ("fs", bare("-")),
        ("model", s(file_path)),
        ("size", Value::Num(1 << 40)),
        ("mount-filesystem", NO),
        ("mount-read-only", NO),
        ("compress", NO),
        ("sector-size", Value::Int(512)),
        ("raid-master", bare("none")),
        ("nvme-tcp-export", Value::Bool(true)),
        ("nvme-tcp-server-port", Value::Int(4420)),
        (
            "nvme-tcp-server-nqn",
            s("nqn.2026-09.com.mikrotik:rds2216.vm-storage-001"),
        ),
        ("nvme-tcp-server-allow-host-name", s("")),
    ];
    props.extend(sharing_tail());
    props.extend([
        ("file-path", bare(file_path)),
        ("file-size", Value::Size(1 << 40)),
        ("file-offset", Value::Int(0)),
    ]);
    Item {
        index: 31,
        id: 0x2B,
        flags: vec!['B', 't'],
        comment: None,
        props,
    }
}

/// captures.md §2: the mounted RAID0 pool (index 26).
pub fn raid_pool() -> Item {
    let mut props = vec![
        ("type", bare("raid")),
        ("slot", s("raid10")),
        ("slot-default", s("")),
        ("parent", s("")),
        ("fs-label", s("ocp-storage")),
        ("fs-uuid", s("40437dbc-2318-45dc-817b-b3bb95cf48ab")),
        ("fs", bare("xfs")),
        ("model", s("RAID0 striped")),
        ("size", Value::Num(16_003_143_565_312)),
        ("free", Value::Num(14_789_895_307_264)),
        ("total-inodes", Value::Num(1_562_806_656)),
        ("free-inodes", Value::Num(1_562_806_652)),
        ("use", Value::Percent(8)),
        ("mount-point", s("raid10")),
        ("mount-filesystem", Value::Bool(true)),
        ("mount-read-only", NO),
        ("compress", NO),
        ("sector-size", Value::Int(512)),
        ("raid-type", Value::Int(0)),
        ("raid-device-count", Value::Int(4)),
        ("raid-max-component-size", bare("none")),
        ("raid-chunk-size", bare("256K")),
        ("raid-master", bare("none")),
        ("state", s("clean")),
        ("raid-uuid", s("eadca0af-ecff031c-239758ad-951a47de")),
        ("nvme-tcp-export", NO),
    ];
    props.extend(sharing_tail());
    Item {
        index: 26,
        id: 0x1A,
        flags: vec!['B', 'M'],
        comment: None,
        props,
    }
}

/// captures.md §2: the first RAID1 mirror under the pool (index 27).
pub fn raid_mirror() -> Item {
    let mut props = vec![
        ("type", bare("raid")),
        ("slot", s("raid10-m0")),
        ("slot-default", s("")),
        ("parent", s("")),
        ("fs", bare("-")),
        ("model", s("RAID1 mirrored")),
        ("size", Value::Num(4_000_786_153_472)),
        ("mount-filesystem", NO),
        ("mount-read-only", NO),
        ("compress", NO),
        ("sector-size", Value::Int(512)),
        ("raid-type", Value::Int(1)),
        ("raid-device-count", Value::Int(2)),
        ("raid-max-component-size", bare("none")),
        ("raid-master", bare("raid10")),
        ("raid-role", Value::Int(0)),
        ("raid-member-failed", NO),
        ("raid-member-state", s("0:in_sync")),
        ("state", s("clean")),
        ("raid-uuid", s("5715669c-43873157-0ebaaa3a-7104d138")),
        ("nvme-tcp-export", NO),
    ];
    props.extend(sharing_tail());
    Item {
        index: 27,
        id: 0x1B,
        flags: vec!['B', 'r'],
        comment: None,
        props,
    }
}

//! Store records → printable items, in RouterOS's property order (REFERENCE.md §6.3).

use super::{Engine, ExecError};
use crate::routeros::format::{FlagDef, Item, Value};
use crate::routeros::script::Expr;
use crate::store::{Disk, FileKind, Store};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Internal id of the pool disk; file disks get ids from the state's counter.
pub const POOL_ID: u32 = 1;

static DISK_FLAGS: &[FlagDef] = &[
    FlagDef {
        letter: 'X',
        name: "DISABLED",
        group: 0,
    },
    FlagDef {
        letter: 'B',
        name: "BLOCK-DEVICE",
        group: 1,
    },
    FlagDef {
        letter: 'M',
        name: "MOUNTED",
        group: 2,
    },
    FlagDef {
        letter: 'r',
        name: "RAID-MEMBER",
        group: 3,
    },
    FlagDef {
        letter: 't',
        name: "NVME-TCP-EXPORT",
        group: 4,
    },
];

pub fn disk_flags() -> &'static [FlagDef] {
    DISK_FLAGS
}

pub fn flag_defs(path: &str) -> &'static [FlagDef] {
    match path {
        "disk" => DISK_FLAGS,
        "disk/btrfs/subvolume" => super::btrfs::SUBVOLUME_FLAGS,
        _ => &[],
    }
}

/// The file disks' items, each built again only when its disk has changed: every `/disk print`
/// and `[find]` lists them all, and building them for each was a tenth of the simulator's cost.
#[derive(Default)]
pub struct FileDiskItems(RefCell<Built>);

#[derive(Default)]
struct Built {
    /// The store's generation the items are of; `None` before the first build.
    generation: Option<u64>,
    /// Each disk with the item built from it.
    entries: Vec<(Arc<Disk>, Arc<Item>)>,
}

impl FileDiskItems {
    /// Runs `f` on the store's disks, in list order, each with its item.
    fn with<R>(&self, store: &Store, f: impl FnOnce(&[(Arc<Disk>, Arc<Item>)]) -> R) -> R {
        let mut built = self.0.borrow_mut();
        if built.generation != Some(store.generation()) {
            let mut before: HashMap<u32, (Arc<Disk>, Arc<Item>)> =
                std::mem::take(&mut built.entries)
                    .into_iter()
                    .map(|entry| (entry.0.id, entry))
                    .collect();
            built.entries = store
                .state
                .disks
                .iter()
                .enumerate()
                .map(|(i, d)| match before.remove(&d.id) {
                    Some((was, item)) if was == *d && item.index == i + 1 => (was, item),
                    _ => (d.clone(), Arc::new(disk_item(i + 1, d))),
                })
                .collect();
            built.generation = Some(store.generation());
        }
        f(&built.entries)
    }
}

/// Every `/disk` item: the pool first, then the file disks in creation order.
pub fn disk_items(engine: &Engine) -> Vec<Item> {
    let mut items = vec![pool_item(engine)];
    engine.file_disk_items.with(&engine.store, |disks| {
        items.extend(disks.iter().map(|(_, item)| Item::clone(item)));
    });
    items
}

/// The `/disk` items `expr` selects: only those are copied.
pub fn select_disks(engine: &Engine, expr: Option<&Expr>) -> Result<Vec<Item>, ExecError> {
    let pool = pool_item(engine);
    engine.file_disk_items.with(&engine.store, |disks| {
        let disks = disks.iter().map(|(_, item)| &**item);
        super::filter::select(std::iter::once(&pool).chain(disks), expr)
    })
}

fn pool_item(engine: &Engine) -> Item {
    let store = &engine.store;
    let size = store.pool.size;
    let free = engine.pool_free();
    let used_pct = if size == 0 {
        0
    } else {
        ((size - free) as u128 * 100 / size as u128) as u8
    };
    // One inode per 16 KiB, as a plausible XFS figure; one used per file.
    let total_inodes = size / 16_384;
    let used_inodes = store.file_count();
    let name = store.pool.name.clone();
    Item {
        index: 0,
        id: POOL_ID,
        flags: vec!['B', 'M'],
        comment: None,
        props: vec![
            ("type", Value::Bare("raid".into())),
            ("slot", Value::Str(name.clone())),
            ("slot-default", Value::Str(String::new())),
            ("parent", Value::Str(String::new())),
            ("fs-label", Value::Str(name.clone())),
            ("fs-uuid", Value::Str(super::btrfs::FS_UUID.into())),
            ("fs", Value::Bare(store.fs.name().into())),
            ("model", Value::Str("RAID0 striped".into())),
            ("size", Value::Num(size)),
            ("free", Value::Num(free)),
            ("total-inodes", Value::Num(total_inodes)),
            (
                "free-inodes",
                Value::Num(total_inodes.saturating_sub(used_inodes)),
            ),
            ("use", Value::Percent(used_pct)),
            ("mount-point", Value::Str(name)),
            ("mount-filesystem", Value::Bool(true)),
            ("mount-read-only", Value::Bool(false)),
            ("compress", Value::Bool(false)),
            ("sector-size", Value::Int(512)),
            ("raid-type", Value::Int(0)),
            ("raid-device-count", Value::Int(4)),
            ("raid-max-component-size", Value::Bare("none".into())),
            ("raid-chunk-size", Value::Bare("256K".into())),
            ("raid-master", Value::Bare("none".into())),
            ("state", Value::Str("clean".into())),
            (
                "raid-uuid",
                Value::Str("eadca0af-ecff031c-239758ad-951a47de".into()),
            ),
            ("nvme-tcp-export", Value::Bool(false)),
            ("iscsi-export", Value::Bool(false)),
            ("nfs-sharing", Value::Bool(false)),
            ("smb-sharing", Value::Bool(false)),
            ("media-sharing", Value::Bool(false)),
            ("media-interface", Value::Bare("none".into())),
            ("swap", Value::Bool(false)),
        ],
    }
}

pub fn disk_item(index: usize, d: &Disk) -> Item {
    let path = format!("/{}", d.file_path);
    let mut props = vec![
        ("type", Value::Bare("file".into())),
        ("slot", Value::Str(d.slot.clone())),
        ("slot-default", Value::Str(String::new())),
        ("parent", Value::Str(String::new())),
        ("fs", Value::Bare("-".into())),
        ("model", Value::Str(path.clone())),
        ("size", Value::Num(d.file_size)),
        ("mount-filesystem", Value::Bool(d.mount_filesystem)),
        ("mount-read-only", Value::Bool(d.mount_read_only)),
        ("compress", Value::Bool(d.compress)),
        ("sector-size", Value::Int(512)),
        ("raid-master", Value::Bare("none".into())),
        ("nvme-tcp-export", Value::Bool(d.nvme_tcp_export)),
    ];
    if d.nvme_tcp_export {
        props.extend([
            (
                "nvme-tcp-server-port",
                Value::Int(u64::from(d.nvme_tcp_server_port)),
            ),
            (
                "nvme-tcp-server-nqn",
                Value::Str(d.nvme_tcp_server_nqn.clone()),
            ),
            (
                "nvme-tcp-server-allow-host-name",
                Value::Str(d.nvme_tcp_server_allow_host_name.clone()),
            ),
        ]);
    }
    props.extend([
        ("iscsi-export", Value::Bool(false)),
        ("nfs-sharing", Value::Bool(false)),
        ("smb-sharing", Value::Bool(false)),
        ("media-sharing", Value::Bool(false)),
        ("media-interface", Value::Bare("none".into())),
        ("swap", Value::Bool(false)),
        ("file-path", Value::Bare(path)),
        ("file-size", Value::Size(d.file_size)),
        ("file-offset", Value::Int(d.file_offset)),
    ]);
    let mut flags = vec!['B'];
    if d.nvme_tcp_export {
        flags.push('t');
    }
    Item {
        index,
        id: d.id,
        flags,
        comment: d.comment.clone(),
        props,
    }
}

/// Every `/file` entry; ids follow list order, as RouterOS's do for files it finds on disk.
pub fn file_items(store: &Store) -> Vec<Item> {
    store
        .files()
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let mut props = vec![
                ("name", Value::Bare(f.name.clone())),
                ("type", Value::Bare(f.kind.type_text())),
            ];
            if matches!(f.kind, FileKind::File { .. }) {
                props.push(("size", Value::Size(f.size)));
            }
            props.push(("last-modified", Value::Bare(f.last_modified.clone())));
            Item {
                index: i,
                id: i as u32 + 1,
                flags: Vec::new(),
                comment: None,
                props,
            }
        })
        .collect()
}

/// A property's text as `as-value` holds it.
pub fn prop_text(item: &Item, name: &str) -> Option<String> {
    item.props
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| match v {
            Value::Str(s) | Value::Bare(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Num(n) | Value::Int(n) | Value::Size(n) => n.to_string(),
            Value::Percent(p) => p.to_string(),
        })
}

/// Keeps only the properties `names` (comma-separated) lists.
pub fn project(items: Vec<Item>, names: &str) -> Result<Vec<Item>, ExecError> {
    let wanted: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
    if wanted.is_empty() {
        return Err(ExecError(
            "input does not match any value of proplist".into(),
        ));
    }
    Ok(items
        .into_iter()
        .map(|mut item| {
            item.props.retain(|(n, _)| wanted.contains(n));
            if !wanted.contains(&"comment") {
                item.comment = None;
            }
            item
        })
        .collect())
}

/// Adds each known flag as a boolean property, unless a property of that name exists already.
pub fn with_flag_props(items: Vec<Item>, flags: &'static [FlagDef]) -> Vec<Item> {
    items
        .into_iter()
        .map(|mut item| {
            item.props.reserve(flags.len());
            for f in flags {
                let name = flag_prop_name(f);
                if !item.props.iter().any(|(n, _)| *n == name) {
                    item.props
                        .push((name, Value::Bool(item.flags.contains(&f.letter))));
                }
            }
            item
        })
        .collect()
}

fn flag_prop_name(f: &FlagDef) -> &'static str {
    match f.name {
        "DISABLED" => "disabled",
        "BLOCK-DEVICE" => "block-device",
        "MOUNTED" => "mounted",
        "RAID-MEMBER" => "raid-member",
        "NVME-TCP-EXPORT" => "nvme-tcp-export",
        "SNAPSHOT" => "snapshot",
        "READ-ONLY" => "read-only",
        other => unreachable!("flag {other} has no property name"),
    }
}

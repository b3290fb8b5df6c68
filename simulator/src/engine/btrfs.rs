//! `/disk btrfs filesystem print` and `/disk btrfs subvolume add|remove|print` on a Btrfs pool.

use super::{Args, Engine, ExecError, Run};
use crate::routeros::format::{FlagDef, Item, Value};
use crate::store::{Store, Subvolume};
use std::time::{SystemTime, UNIX_EPOCH};

fn failure(text: &str) -> ExecError {
    ExecError(format!("failure: {text}"))
}

pub static SUBVOLUME_FLAGS: &[FlagDef] = &[
    FlagDef {
        letter: 'S',
        name: "SNAPSHOT",
        group: 0,
    },
    FlagDef {
        letter: 'r',
        name: "READ-ONLY",
        group: 1,
    },
];

/// The file system's UUID, the pool's `fs-uuid`.
pub const FS_UUID: &str = "40437dbc-2318-45dc-817b-b3bb95cf48ab";

/// `/disk btrfs filesystem`: the pool's file system, when it is Btrfs.
pub fn filesystem_items(store: &Store) -> Vec<Item> {
    if store.is_btrfs() {
        vec![Item {
            index: 0,
            id: super::items::POOL_ID,
            flags: Vec::new(),
            comment: None,
            props: vec![
                ("label", Value::Str(store.pool.name.clone())),
                ("uuid", Value::Str(FS_UUID.into())),
                ("total-devs", Value::Int(1)),
                ("devs", Value::Bare(store.pool.name.clone())),
            ],
        }]
    } else {
        Vec::new()
    }
}

/// `/disk btrfs subvolume`: the subvolumes in creation order.
pub fn subvolume_items(store: &Store) -> Vec<Item> {
    store
        .subvolumes()
        .iter()
        .enumerate()
        .map(|(index, s)| {
            // The subvolume this one sits in, or the file system's root.
            let top_level = store
                .subvolumes()
                .iter()
                .filter(|o| s.path.starts_with(&format!("{}/", o.path)))
                .max_by_key(|o| o.path.len())
                .map_or("<FS_ROOT>".to_string(), |o| o.name().to_string());
            let mut props = vec![
                ("fs", Value::Bare(store.pool.name.clone())),
                ("name", Value::Str(s.name().to_string())),
            ];
            if let Some(parent) = &s.parent {
                props.push(("parent", Value::Bare(parent.clone())));
            }
            props.extend([
                ("read-only", Value::Bool(s.read_only)),
                ("top-level", Value::Bare(top_level)),
                ("uuid", Value::Str(s.uuid.clone())),
                (
                    "creation-time",
                    Value::Bare(crate::store::format_utc(s.creation_time)),
                ),
                ("subvolume-id", Value::Int(s.subvolume_id)),
                ("path", Value::Str(s.path.clone())),
            ]);
            let mut flags = Vec::new();
            if s.parent.is_some() {
                flags.push('S');
            }
            if s.read_only {
                flags.push('r');
            }
            Item {
                index,
                id: s.id,
                flags,
                comment: None,
                props,
            }
        })
        .collect()
}

fn uuid_for(id: u64, path: &str) -> String {
    let mut h: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
    for b in path.bytes().chain(id.to_le_bytes()) {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    let x = format!("{h:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

impl Engine {
    /// `add fs=<label> name=<path> [parent=<subvolume>] [read-only=yes|no]`; returns the id.
    pub(super) fn subvolume_add(
        &mut self,
        args: &Args,
        run: &mut Run<'_>,
    ) -> Result<u32, ExecError> {
        match args.text("fs") {
            None => return Err(failure("fs must be set")),
            Some(fs) if self.store.is_btrfs() && fs == self.store.pool.name => {}
            Some(_) => return Err(ExecError("input does not match any value of fs".into())),
        }
        let path = match args.text("name") {
            Some(n) => super::file::file_name("name", n)?,
            None => return Err(failure("name must be set")),
        };
        let parent = match args.text("parent") {
            None => None,
            Some(p) => Some(
                self.subvolume_ref(p)
                    .ok_or_else(|| ExecError("input does not match any value of parent".into()))?,
            ),
        };
        let read_only = args.bool("read-only")?.unwrap_or(false);
        let leaf = path.rsplit('/').next().unwrap_or(&path);
        if self.store.state.subvolume_named(leaf).is_some() {
            return Err(failure("subvolume with such name already exists"));
        }
        let file_name = format!("{}/{path}", self.store.pool.name);
        self.store.check_writable(&file_name)?;
        self.store.create_subvolume_dir(&path, parent.as_ref())?;
        let mut state = self.store.state.clone();
        let id = state.next_id;
        state.next_id += 1;
        let subvolume_id = state.next_subvolume_id;
        state.next_subvolume_id += 1;
        state.subvolumes.push(Subvolume {
            id,
            subvolume_id,
            uuid: uuid_for(subvolume_id, &path),
            path,
            parent: parent.map(|p| p.name().to_string()),
            read_only,
            creation_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        self.commit(state, run)?;
        Ok(id)
    }

    /// A subvolume by name or internal id.
    fn subvolume_ref(&self, text: &str) -> Option<Subvolume> {
        let id = text
            .strip_prefix('*')
            .and_then(|hex| u32::from_str_radix(hex, 16).ok());
        self.store
            .subvolumes()
            .iter()
            .find(|s| Some(s.id) == id || s.name() == text)
            .cloned()
    }

    /// `remove <items>`: refused while a disk's file or another subvolume is inside.
    pub(super) fn subvolume_remove(
        &mut self,
        ids: Vec<u32>,
        run: &mut Run<'_>,
    ) -> Result<(), ExecError> {
        let mut gone = Vec::new();
        for id in &ids {
            let sub = self
                .store
                .subvolumes()
                .iter()
                .find(|s| s.id == *id)
                .cloned()
                .ok_or_else(|| ExecError("no such item".into()))?;
            let users: Vec<_> = self
                .store
                .subvolume_users(&sub)
                .into_iter()
                .filter(|u| !ids.iter().any(|i| self.subvolume_is(*i, u)))
                .collect();
            if let Some(user) = users.first() {
                return Err(failure(&format!("subvolume {} holds {user}", sub.name())));
            }
            gone.push(sub);
        }
        if gone.is_empty() {
            return Ok(());
        }
        let mut state = self.store.state.clone();
        state.subvolumes.retain(|s| !ids.contains(&s.id));
        // The record goes first: a crash in between leaves plain directories, not a subvolume
        // whose directory is gone.
        self.commit(state, run)?;
        for sub in gone {
            self.store.remove_subvolume_dir(&sub)?;
        }
        Ok(())
    }

    /// Whether `user` (from [`Store::subvolume_users`]) names the subvolume with this id.
    fn subvolume_is(&self, id: u32, user: &str) -> bool {
        self.store
            .subvolumes()
            .iter()
            .any(|s| s.id == id && user == format!("subvolume {}", s.name()))
    }
}

//! `/disk add|set|remove|monitor-traffic` on file disks.
//!
//! Each mutating command works on a copy of the state and commits it atomically at the end, after
//! the backing file is in place, so a crash never leaves a disk whose file is missing.

use super::file::file_name;
use super::items::POOL_ID;
use super::quirks::{
    ADD_REFUSED, AddErrors, DUPLICATE_NQN_REFUSED, DefaultNqn, DuplicateNqn, SlotLength,
};
use super::{Args, Engine, Event, ExecError, Run, invalid};
use crate::routeros::format;
use crate::routeros::menu::DISK_TYPES;
use crate::store::{CopySemantics, Disk};
use std::sync::Arc;

/// RouterOS refuses slot names longer than this on 7.24.4 (routeros/README.md, assumption 2).
pub const MAX_SLOT_LEN: usize = 32;
const DEFAULT_PORT: u16 = 4420;

fn failure(text: &str) -> ExecError {
    ExecError(format!("failure: {text}"))
}

fn check_slot(slot: &str, length: SlotLength) -> Result<(), ExecError> {
    if slot.is_empty()
        || slot
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '/')
    {
        return Err(invalid("slot"));
    }
    if length == SlotLength::Max32 && slot.chars().count() > MAX_SLOT_LEN {
        return Err(failure("slot name too long (max 32 characters)"));
    }
    Ok(())
}

fn port(args: &Args) -> Result<Option<u16>, ExecError> {
    match args.num("nvme-tcp-server-port")? {
        None => Ok(None),
        Some(p) if (1..=65535).contains(&p) => Ok(Some(p as u16)),
        Some(_) => Err(invalid("nvme-tcp-server-port")),
    }
}

fn check_compress(args: &Args) -> Result<(), ExecError> {
    // The pool is XFS; RouterOS compresses only on Btrfs.
    if args.bool("compress")? == Some(true) {
        return Err(ExecError("compression only available for btrfs".into()));
    }
    Ok(())
}

fn uuid_for(seed: u32, slot: &str) -> String {
    // Stable per disk and distinct between disks: derived from the internal id and slot.
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in slot.bytes().chain(seed.to_le_bytes()) {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    format!("{h:032x}")
}

impl Engine {
    /// `/disk add`; in the `add-errors=opaque` position every refusal it prints as `failure: …`
    /// becomes [`ADD_REFUSED`] (argument errors keep RouterOS's generic texts).
    pub(super) fn disk_add(&mut self, args: &Args, run: &mut Run<'_>) -> Result<u32, ExecError> {
        let added = self.add_file_disk(args, run);
        match (added, self.config.quirks.add_errors) {
            (Err(ExecError(text)), AddErrors::Opaque) if text.starts_with("failure:") => {
                Err(ExecError(ADD_REFUSED.into()))
            }
            (added, _) => added,
        }
    }

    fn add_file_disk(&mut self, args: &Args, run: &mut Run<'_>) -> Result<u32, ExecError> {
        let source = match args.items("copy-from") {
            None => None,
            Some([id]) => Some(
                self.store
                    .state
                    .disks
                    .iter()
                    .find(|d| d.id == *id)
                    .cloned()
                    .ok_or_else(|| failure("copy-from must name a file disk"))?,
            ),
            Some([]) => return Err(ExecError("no such item".into())),
            Some(_) => return Err(failure("copy-from must name one item")),
        };
        match args.text("type") {
            Some("file") => {}
            None if source.is_some() => {}
            None => return Err(failure("type must be set")),
            Some(t) if DISK_TYPES.contains(&t) => {
                return Err(failure(&format!(
                    "rds-sim models only type=file disks, not type={t}"
                )));
            }
            Some(_) => return Err(ExecError("input does not match any value of type".into())),
        }
        check_compress(args)?;
        let path = match args.text("file-path") {
            Some(p) => file_name("file-path", p)?,
            None => return Err(failure("file-path must be set")),
        };
        if !self.store.on_mounted_disk(&path) || path == self.store.pool.name {
            return Err(failure("no such mount point"));
        }
        self.store.check_writable(&path)?;
        if let Some(d) = self.store.state.disks.iter().find(|d| d.file_path == path) {
            return Err(ExecError(format!(
                "failure: file is used by disk {}",
                d.slot
            )));
        }
        let copy = self.config.copy_from;
        let exists = self.store.host_path(&path).exists();
        let size = match (args.size("file-size")?, &source) {
            (Some(0), _) => return Err(invalid("file-size")),
            (Some(s), _) => Some(s),
            (None, Some(src)) => Some(src.file_size),
            (None, None) => None,
        };
        let slot = match args.text("slot") {
            Some(s) => s.to_string(),
            None => format!("file-{}", path.replace('/', "-")),
        };
        check_slot(&slot, self.config.quirks.slot_length)?;
        if self.store.disk_by_slot(&slot).is_some() {
            return Err(failure("already have such entry"));
        }
        let export_default = match (&source, copy) {
            (Some(src), CopySemantics::Settings) => src.nvme_tcp_export,
            _ => false,
        };
        let inherit = |f: fn(&Disk) -> String| match (&source, copy) {
            (Some(src), CopySemantics::Settings) => Some(f(src)),
            _ => None,
        };
        let export = args.bool("nvme-tcp-export")?.unwrap_or(export_default);
        let nqn = args
            .text("nvme-tcp-server-nqn")
            .map(str::to_string)
            .or_else(|| inherit(|d| d.nvme_tcp_server_nqn.clone()))
            .unwrap_or_else(|| match self.config.quirks.default_nqn {
                DefaultNqn::Slot => slot.clone(),
                DefaultNqn::Empty => String::new(),
            });
        self.check_nqn_free(&nqn, None)?;
        let allow = args
            .text("nvme-tcp-server-allow-host-name")
            .map(str::to_string)
            .or_else(|| inherit(|d| d.nvme_tcp_server_allow_host_name.clone()))
            .unwrap_or_default();
        let port = port(args)?
            .or(source.as_ref().map(|s| s.nvme_tcp_server_port))
            .unwrap_or(DEFAULT_PORT);
        let comment = args
            .text("comment")
            .map(str::to_string)
            .or_else(|| source.as_ref().and_then(|s| s.comment.clone()));

        // The backing file: copied, attached as it is, or created sparse.
        let file_size = match (&source, copy, size, exists) {
            (_, _, Some(_), true) => return Err(failure("file already exists")),
            (Some(src), CopySemantics::Data, Some(s), false) => {
                self.ensure_space(s)?;
                self.store.copy_backing(&src.file_path, &path)?;
                if s > src.file_size {
                    self.store.grow_backing(&path, s)?;
                }
                s.max(src.file_size)
            }
            (_, _, Some(s), false) => {
                self.ensure_space(s)?;
                self.store.create_backing(&path, s)?;
                s
            }
            (_, _, None, true) => std::fs::metadata(self.store.host_path(&path))
                .map_err(|e| failure(&e.to_string()))?
                .len(),
            (_, _, None, false) => return Err(failure("file-size must be set")),
        };

        let mut state = self.store.state.clone();
        let id = state.next_id;
        state.next_id += 1;
        state.disks.push(Arc::new(Disk {
            id,
            slot: slot.clone(),
            file_path: path,
            file_size,
            file_offset: args.num("file-offset")?.unwrap_or(0),
            mount_filesystem: args.bool("mount-filesystem")?.unwrap_or(true),
            mount_read_only: args.bool("mount-read-only")?.unwrap_or(false),
            compress: false,
            nvme_tcp_export: export,
            nvme_tcp_server_port: port,
            nvme_tcp_server_nqn: nqn,
            nvme_tcp_server_allow_host_name: allow,
            comment,
            uuid: uuid_for(id, &slot),
        }));
        self.commit(state, run)?;
        Ok(id)
    }

    /// In the `duplicate-nqn=refused` position, refuses `nqn` when a disk other than `except`
    /// carries it.
    fn check_nqn_free(&self, nqn: &str, except: Option<u32>) -> Result<(), ExecError> {
        let taken = self
            .store
            .state
            .disks
            .iter()
            .any(|d| Some(d.id) != except && !nqn.is_empty() && d.nvme_tcp_server_nqn == nqn);
        if taken && self.config.quirks.duplicate_nqn == DuplicateNqn::Refused {
            return Err(ExecError(DUPLICATE_NQN_REFUSED.to_owned()));
        }
        Ok(())
    }

    fn ensure_space(&self, bytes: u64) -> Result<(), ExecError> {
        if bytes > self.pool_free() {
            return Err(failure("not enough space"));
        }
        Ok(())
    }

    /// The file disk with this id; the pool and unknown ids are refused.
    fn file_disk_index(&self, id: u32) -> Result<usize, ExecError> {
        if id == POOL_ID {
            return Err(failure("rds-sim changes only type=file disks"));
        }
        self.store
            .state
            .disks
            .iter()
            .position(|d| d.id == id)
            .ok_or_else(|| ExecError("no such item".into()))
    }

    pub(super) fn disk_set(
        &mut self,
        ids: Vec<u32>,
        args: &Args,
        run: &mut Run<'_>,
    ) -> Result<(), ExecError> {
        check_compress(args)?;
        let port = port(args)?;
        let size = args.size("file-size")?;
        let mut state = self.store.state.clone();
        let mut events = Vec::new();
        for id in ids {
            let i = self.file_disk_index(id)?;
            let before = Arc::clone(&state.disks[i]);
            let d = Arc::make_mut(&mut state.disks[i]);
            if let Some(slot) = args.text("slot") {
                check_slot(slot, self.config.quirks.slot_length)?;
                if slot != before.slot && self.store.disk_by_slot(slot).is_some() {
                    return Err(failure("already have such entry"));
                }
                d.slot = slot.to_string();
            }
            if let Some(s) = size {
                if self.config.quirks.grow == super::quirks::Grow::Refused {
                    return Err(ExecError(super::quirks::GROW_REFUSED.to_owned()));
                }
                if s < before.file_size {
                    return Err(failure("new file-size is smaller than the current size"));
                }
                if s > before.file_size {
                    self.ensure_space(s - before.file_size)?;
                    self.store.grow_backing(&before.file_path, s)?;
                    d.file_size = s;
                    if before.nvme_tcp_export {
                        events.push(Event::Resized {
                            nqn: before.nvme_tcp_server_nqn.clone(),
                        });
                    }
                }
            }
            if let Some(b) = args.bool("mount-filesystem")? {
                d.mount_filesystem = b;
            }
            if let Some(b) = args.bool("mount-read-only")? {
                d.mount_read_only = b;
            }
            if let Some(b) = args.bool("nvme-tcp-export")? {
                d.nvme_tcp_export = b;
            }
            if let Some(p) = port {
                d.nvme_tcp_server_port = p;
            }
            if let Some(n) = args.text("nvme-tcp-server-nqn") {
                self.check_nqn_free(n, Some(d.id))?;
                d.nvme_tcp_server_nqn = n.to_string();
            }
            if let Some(a) = args.text("nvme-tcp-server-allow-host-name") {
                d.nvme_tcp_server_allow_host_name = a.to_string();
            }
            if let Some(c) = args.text("comment") {
                d.comment = (!c.is_empty()).then(|| c.to_string());
            }
            let still_served = d.nvme_tcp_export
                && d.nvme_tcp_server_nqn == before.nvme_tcp_server_nqn
                && d.nvme_tcp_server_port == before.nvme_tcp_server_port;
            if before.nvme_tcp_export && !still_served {
                events.push(Event::Unexported {
                    nqn: before.nvme_tcp_server_nqn.clone(),
                });
            }
        }
        if state != self.store.state {
            self.commit(state, run)?;
        }
        run.result.events.extend(events);
        Ok(())
    }

    pub(super) fn disk_remove(
        &mut self,
        ids: Vec<u32>,
        run: &mut Run<'_>,
    ) -> Result<(), ExecError> {
        let quirks = self.config.quirks;
        if ids.is_empty() && quirks.remove_missing == super::quirks::RemoveMissing::NoSuchItem {
            return Err(ExecError("no such item".into()));
        }
        let mut state = self.store.state.clone();
        for id in &ids {
            let i = self.file_disk_index(*id)?;
            if self.store.state.disks[i].nvme_tcp_export
                && quirks.remove_exported == super::quirks::RemoveExported::Refused
            {
                return Err(ExecError(super::quirks::REMOVE_EXPORTED_REFUSED.to_owned()));
            }
        }
        let mut events = Vec::new();
        state.disks.retain(|d| {
            let gone = ids.contains(&d.id);
            if gone && d.nvme_tcp_export {
                events.push(Event::Unexported {
                    nqn: d.nvme_tcp_server_nqn.clone(),
                });
            }
            !gone
        });
        if state != self.store.state {
            self.commit(state, run)?;
        }
        run.result.events.extend(events);
        Ok(())
    }

    pub(super) fn disk_monitor(
        &mut self,
        ids: Vec<u32>,
        once: bool,
        run: &mut Run<'_>,
    ) -> Result<String, ExecError> {
        if !once {
            return Err(failure(
                "rds-sim runs monitor-traffic only with once (streaming needs a terminal)",
            ));
        }
        let [id] = ids.as_slice() else {
            return Err(failure("monitor-traffic takes one disk"));
        };
        let i = self.file_disk_index(*id)?;
        let slot = self.store.state.disks[i].slot.clone();
        let t = (run.traffic)(&slot);
        Ok(format::monitor_block(&[
            ("slot", slot),
            ("read-ops", format::group_digits(t.read_ops)),
            ("read-bytes", format::group_digits(t.read_bytes)),
            ("write-ops", format::group_digits(t.write_ops)),
            ("write-bytes", format::group_digits(t.write_bytes)),
        ]))
    }
}

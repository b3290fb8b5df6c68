//! The target's controllers, keyed by subsystem and controller ID, and the Fabrics Connect rules
//! that create them or attach I/O queues to them (NVMe over Fabrics 1.1, section 3.3).

use std::collections::{BTreeMap, BTreeSet};

use super::command::{ConnectData, connect_data_offset};
use super::controller::{Controller, Reply, Subsystem};
use super::identify::MAX_QUEUE_SIZE;
use super::status::Status;
use super::{DISCOVERY_NQN, Exports};

/// Identifies a controller: controller IDs are unique within a subsystem.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtrlKey {
    pub subsys_nqn: String,
    pub cntlid: u16,
}

/// Controller IDs nvmet hands out by default.
const CNTLID_MIN: u16 = 1;
const CNTLID_MAX: u16 = 0xffef;
const CNTLID_DYNAMIC: u16 = 0xffff;

/// Offsets in the Connect command, reported in IPO when a field is invalid.
mod sqe_offset {
    pub const QID: u32 = 42;
    pub const SQSIZE: u32 = 44;
}

/// Connect Invalid Parameters result naming a byte of the Connect data.
fn in_data(offset: u32) -> u64 {
    u64::from((1 << 16) | offset)
}

/// The fields of a Fabrics Connect command.
pub struct ConnectRequest<'a> {
    pub recfmt: u16,
    pub qid: u16,
    /// Queue size, 0's based.
    pub sqsize: u16,
    pub cattr: u8,
    pub kato_ms: u32,
    pub data: ConnectData<'a>,
}

/// A queue attached to a controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub key: CtrlKey,
    pub qid: u16,
    /// Queue entries (1's based).
    pub queue_size: u16,
    /// The host disabled SQ flow control: completions carry no SQ head pointer.
    pub sqhd_disabled: bool,
}

#[derive(Debug)]
struct Entry {
    ctrl: Controller,
    queues: BTreeSet<u16>,
}

#[derive(Debug, Default)]
pub struct Registry {
    entries: BTreeMap<CtrlKey, Entry>,
}

impl Registry {
    pub fn get(&self, key: &CtrlKey) -> Option<&Controller> {
        self.entries.get(key).map(|e| &e.ctrl)
    }

    pub fn get_mut(&mut self, key: &CtrlKey) -> Option<&mut Controller> {
        self.entries.get_mut(key).map(|e| &mut e.ctrl)
    }

    /// Executes a Connect: an admin queue creates a controller, an I/O queue joins one.
    /// `subsystem` is what the Connect's subsystem NQN names on this port, if anything (see
    /// [`Registry::subsystem`]; looked up by the caller so no lock is held meanwhile).
    pub fn connect(
        &mut self,
        req: &ConnectRequest<'_>,
        subsystem: Option<Subsystem>,
    ) -> Result<Attached, Reply> {
        if req.recfmt != 0 {
            return Err(Reply::err(Status::CONNECT_FORMAT));
        }
        if req.qid == 0 {
            self.connect_admin(req, subsystem)
        } else {
            self.connect_io(req, subsystem)
        }
    }

    /// The subsystem an NQN names on `port`.
    pub fn subsystem(nqn: &str, exports: &dyn Exports, port: u16) -> Option<Subsystem> {
        if nqn == DISCOVERY_NQN {
            return Some(Subsystem::Discovery);
        }
        exports.lookup(nqn, port).map(Subsystem::Nvm)
    }

    fn check_sqsize(sqsize: u16) -> Result<(), Reply> {
        if sqsize == 0 || sqsize > MAX_QUEUE_SIZE - 1 {
            return Err(Reply {
                status: Status::CONNECT_INVALID_PARAM,
                result: u64::from(sqe_offset::SQSIZE),
                data: Vec::new(),
            });
        }
        Ok(())
    }

    fn connect_admin(
        &mut self,
        req: &ConnectRequest<'_>,
        subsystem: Option<Subsystem>,
    ) -> Result<Attached, Reply> {
        let d = &req.data;
        let invalid = |offset| Reply {
            status: Status::CONNECT_INVALID_PARAM,
            result: in_data(offset),
            data: Vec::new(),
        };
        if d.cntlid != CNTLID_DYNAMIC {
            return Err(invalid(connect_data_offset::CNTLID));
        }
        let subsystem = subsystem.ok_or_else(|| invalid(connect_data_offset::SUBNQN))?;
        if let Subsystem::Nvm(export) = &subsystem
            && !export.allows(d.host_nqn)
        {
            return Err(Reply {
                status: Status::CONNECT_INVALID_HOST,
                result: in_data(connect_data_offset::HOSTNQN),
                data: Vec::new(),
            });
        }
        Self::check_sqsize(req.sqsize)?;
        let cntlid = (CNTLID_MIN..=CNTLID_MAX)
            .find(|&id| {
                !self.entries.contains_key(&CtrlKey {
                    subsys_nqn: d.subsys_nqn.to_owned(),
                    cntlid: id,
                })
            })
            .ok_or(Reply::err(Status::CONNECT_INVALID_PARAM))?;
        let key = CtrlKey {
            subsys_nqn: d.subsys_nqn.to_owned(),
            cntlid,
        };
        let ctrl = Controller::new(cntlid, subsystem, d.host_nqn, d.host_id, req.kato_ms);
        self.entries.insert(
            key.clone(),
            Entry {
                ctrl,
                queues: BTreeSet::from([0]),
            },
        );
        Ok(Attached {
            key,
            qid: 0,
            queue_size: req.sqsize + 1,
            sqhd_disabled: req.cattr & 0x04 != 0,
        })
    }

    fn connect_io(
        &mut self,
        req: &ConnectRequest<'_>,
        subsystem: Option<Subsystem>,
    ) -> Result<Attached, Reply> {
        let d = &req.data;
        let invalid = |offset| Reply {
            status: Status::CONNECT_INVALID_PARAM,
            result: in_data(offset),
            data: Vec::new(),
        };
        if subsystem.is_none() {
            return Err(invalid(connect_data_offset::SUBNQN));
        }
        let key = CtrlKey {
            subsys_nqn: d.subsys_nqn.to_owned(),
            cntlid: d.cntlid,
        };
        let entry = self
            .entries
            .get_mut(&key)
            .filter(|e| e.ctrl.host_nqn == d.host_nqn)
            .ok_or_else(|| invalid(connect_data_offset::CNTLID))?;
        if req.qid > entry.ctrl.subsystem.max_qid() {
            return Err(Reply {
                status: Status::INVALID_QID,
                result: u64::from(sqe_offset::QID),
                data: Vec::new(),
            });
        }
        if entry.queues.contains(&req.qid) {
            return Err(Reply::err(Status::CMD_SEQ_ERROR));
        }
        Self::check_sqsize(req.sqsize)?;
        entry.queues.insert(req.qid);
        entry.ctrl.note_traffic();
        Ok(Attached {
            key,
            qid: req.qid,
            queue_size: req.sqsize + 1,
            sqhd_disabled: req.cattr & 0x04 != 0,
        })
    }

    /// A queue's connection closed; the controller goes when its last queue does.
    pub fn release_queue(&mut self, key: &CtrlKey, qid: u16) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.queues.remove(&qid);
            if entry.queues.is_empty() {
                self.entries.remove(key);
            }
        }
    }

    /// Tears a controller down (keep-alive expiry, export removed, fault injection).
    pub fn remove(&mut self, key: &CtrlKey) -> Option<Controller> {
        self.entries.remove(key).map(|e| e.ctrl)
    }

    /// The controllers for which `pred` holds.
    pub fn keys_where(&self, pred: impl Fn(&CtrlKey, &Controller) -> bool) -> Vec<CtrlKey> {
        self.entries
            .iter()
            .filter(|(k, e)| pred(k, &e.ctrl))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The namespace of `nqn` now holds `size` bytes; returns the controllers that queued an
    /// asynchronous event (their admin queues have completions to send).
    pub fn namespace_resized(&mut self, nqn: &str, size: u64) -> Vec<CtrlKey> {
        self.entries
            .iter_mut()
            .filter(|(k, _)| k.subsys_nqn == nqn)
            .filter_map(|(k, e)| e.ctrl.namespace_changed(size).then(|| k.clone()))
            .collect()
    }
}

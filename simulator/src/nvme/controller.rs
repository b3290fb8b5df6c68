//! One NVMe controller: its registers (CC, CSTS), features, asynchronous events and logs, and
//! the admin commands that read and change them. Pure state; the queues drive it.

use std::collections::VecDeque;

use super::command::{Command, admin};
use super::identify::{self, ASYNC_EVENT_LIMIT, ERROR_LOG_SLOTS, OAES_DISCOVERY, OAES_IO, cns};
use super::log_page::{self, CHANGED_NS_CAPACITY, DiscoveryPort, DiscoveryRecord, ErrorEntry, lid};
use super::status::Status;
use super::{DISCOVERY_NQN, Export, NSID};

/// Controller property offsets.
pub mod property {
    pub const CAP: u32 = 0x00;
    pub const VS: u32 = 0x08;
    pub const CC: u32 = 0x14;
    pub const CSTS: u32 = 0x1c;
}

/// CAP as nvmet sets it: NVM and "I/O command sets" supported, CC.EN timeout 7.5 s, 1024
/// queue entries.
pub const CAP: u64 = (1 << 37) | (1 << 43) | (15 << 24) | (identify::MAX_QUEUE_SIZE as u64 - 1);

const CC_EN: u32 = 1;
const CSTS_RDY: u32 = 1;
const CSTS_CFS: u32 = 1 << 1;
const CSTS_SHST_COMPLETE: u32 = 2 << 2;

/// I/O queues a controller grants (nvmet's NVMET_NR_QUEUES).
pub const MAX_IO_QUEUES: u16 = 128;
/// A discovery controller that asks for no keep-alive gets this one (nvmet's NVMET_DISC_KATO_MS).
pub const DISCOVERY_KATO_MS: u32 = 120_000;
/// Serial number of the discovery subsystem.
const DISCOVERY_SERIAL: &str = "52534453494d4449";

const AEN_BIT_NS_ATTR: u32 = 8;
const AEN_BIT_ANA: u32 = 11;
const AEN_BIT_DISCOVERY: u32 = 31;
/// Asynchronous event result for "namespace attribute changed": notice type, Changed
/// Namespace List log page.
pub const AEN_NS_CHANGED: u32 = 0x02 | ((lid::CHANGED_NS as u32) << 16);

/// Feature identifiers.
mod fid {
    pub const ARBITRATION: u8 = 0x01;
    pub const POWER_MGMT: u8 = 0x02;
    pub const TEMP_THRESHOLD: u8 = 0x04;
    pub const ERROR_RECOVERY: u8 = 0x05;
    pub const VOLATILE_WC: u8 = 0x06;
    pub const NUM_QUEUES: u8 = 0x07;
    pub const IRQ_COALESCE: u8 = 0x08;
    pub const IRQ_CONFIG: u8 = 0x09;
    pub const WRITE_ATOMIC: u8 = 0x0a;
    pub const ASYNC_EVENT: u8 = 0x0b;
    pub const KATO: u8 = 0x0f;
    pub const HOST_ID: u8 = 0x81;
}

/// What a controller serves.
#[derive(Clone, Debug)]
pub enum Subsystem {
    Discovery,
    Nvm(Export),
}

impl Subsystem {
    pub fn nqn(&self) -> &str {
        match self {
            Self::Discovery => DISCOVERY_NQN,
            Self::Nvm(e) => &e.nqn,
        }
    }

    /// Highest I/O queue ID a host may connect (none on a discovery controller).
    pub fn max_qid(&self) -> u16 {
        match self {
            Self::Discovery => 0,
            Self::Nvm(_) => MAX_IO_QUEUES,
        }
    }
}

/// What an admin command needs from outside the controller: the port's exports, for the
/// discovery log.
pub struct AdminContext<'a> {
    /// The exports on this port (read only for the discovery log page).
    pub exports: &'a [Export],
    pub port: u16,
    /// The address hosts reach this port at, for discovery log records.
    pub traddr: &'a str,
}

/// The answer to a command: status, completion dwords 0-1 and data for the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub result: u64,
    pub data: Vec<u8>,
}

impl Reply {
    pub fn ok(result: u64) -> Self {
        Self {
            status: Status::SUCCESS,
            result,
            data: Vec::new(),
        }
    }

    pub fn data(data: Vec<u8>) -> Self {
        Self {
            status: Status::SUCCESS,
            result: 0,
            data,
        }
    }

    pub fn err(status: Status) -> Self {
        Self {
            status,
            result: 0,
            data: Vec::new(),
        }
    }
}

impl From<Status> for Reply {
    fn from(status: Status) -> Self {
        Self::err(status)
    }
}

/// An admin command either completes now or (Asynchronous Event Request) is held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Reply(Reply),
    Held,
}

#[derive(Debug)]
pub struct Controller {
    pub cntlid: u16,
    pub host_nqn: String,
    pub host_id: [u8; 16],
    pub subsystem: Subsystem,
    cc: u32,
    csts: u32,
    kato_secs: u32,
    aen_enabled: u32,
    aen_masked: u32,
    held_aers: Vec<u16>,
    events: VecDeque<u32>,
    changed_ns: Vec<u32>,
    changed_ns_overflowed: bool,
    errors: VecDeque<ErrorEntry>,
    error_count: u64,
    traffic: bool,
}

fn expect_transfer(cmd: &Command, len: usize) -> Result<(), Status> {
    if cmd.sgl().length as usize == len {
        Ok(())
    } else {
        Err(Status::SGL_INVALID_DATA)
    }
}

fn log_page_len(cmd: &Command) -> usize {
    let numd = (cmd.cdw(10) >> 16) | ((cmd.cdw(11) & 0xffff) << 16);
    (numd as usize + 1) * 4
}

fn log_page_offset(cmd: &Command) -> u64 {
    u64::from(cmd.cdw(12)) | (u64::from(cmd.cdw(13)) << 32)
}

/// Retain Asynchronous Event: the host reads the log without re-arming its event.
fn retains_event(cmd: &Command) -> bool {
    cmd.cdw(10) & (1 << 15) != 0
}

impl Controller {
    pub fn new(
        cntlid: u16,
        subsystem: Subsystem,
        host_nqn: &str,
        host_id: [u8; 16],
        kato_ms: u32,
    ) -> Self {
        let kato_ms = match (&subsystem, kato_ms) {
            (Subsystem::Discovery, 0) => DISCOVERY_KATO_MS,
            (_, ms) => ms,
        };
        Self {
            cntlid,
            host_nqn: host_nqn.to_owned(),
            host_id,
            subsystem,
            cc: 0,
            csts: 0,
            kato_secs: kato_ms.div_ceil(1000),
            aen_enabled: 0,
            aen_masked: 0,
            held_aers: Vec::new(),
            events: VecDeque::new(),
            changed_ns: Vec::new(),
            changed_ns_overflowed: false,
            errors: VecDeque::new(),
            error_count: 0,
            traffic: false,
        }
    }

    /// Keep-alive timeout in seconds; 0 means none.
    pub fn kato_secs(&self) -> u32 {
        self.kato_secs
    }

    pub fn csts(&self) -> u32 {
        self.csts
    }

    /// Whether the controller accepts I/O: enabled and ready.
    pub fn is_ready(&self) -> bool {
        self.cc & CC_EN != 0 && self.csts & CSTS_RDY != 0
    }

    /// Records host traffic; with traffic-based keep alive any command counts.
    pub fn note_traffic(&mut self) {
        self.traffic = true;
    }

    /// One keep-alive period elapsed: returns false when the host sent nothing during it, in
    /// which case the controller is now in fatal status.
    pub fn keep_alive_period_elapsed(&mut self) -> bool {
        if std::mem::take(&mut self.traffic) {
            return true;
        }
        self.csts |= CSTS_CFS;
        false
    }

    pub fn property_get(&self, cmd: &Command) -> Reply {
        let eight_bytes = cmd.cdw(10) & 1 != 0;
        let value = match (eight_bytes, cmd.cdw(11)) {
            (true, property::CAP) => CAP,
            (false, property::VS) => u64::from(identify::VERSION),
            (false, property::CC) => u64::from(self.cc),
            (false, property::CSTS) => u64::from(self.csts),
            _ => return Reply::err(Status::INVALID_FIELD),
        };
        Reply::ok(value)
    }

    pub fn property_set(&mut self, cmd: &Command) -> Reply {
        let eight_bytes = cmd.cdw(10) & 1 != 0;
        if eight_bytes || cmd.cdw(11) != property::CC {
            return Reply::err(Status::INVALID_FIELD);
        }
        self.update_cc(cmd.cdw(12));
        Reply::ok(0)
    }

    fn update_cc(&mut self, new: u32) {
        let old = std::mem::replace(&mut self.cc, new);
        let shn = |cc: u32| (cc >> 14) & 3 != 0;
        if new & CC_EN != 0 && old & CC_EN == 0 {
            self.start();
        }
        if new & CC_EN == 0 && old & CC_EN != 0 {
            self.clear();
        }
        if shn(new) && !shn(old) {
            self.clear();
            self.csts |= CSTS_SHST_COMPLETE;
        }
        if !shn(new) && shn(old) {
            self.csts &= !CSTS_SHST_COMPLETE;
        }
    }

    /// Enabling checks the queue entry sizes, page size, arbitration and command set the host
    /// chose; a mismatch is a controller fatal status, as in nvmet.
    fn start(&mut self) {
        let cc = self.cc;
        let css = (cc >> 4) & 7;
        let valid = (cc >> 16) & 0xf == 6
            && (cc >> 20) & 0xf == 4
            && (cc >> 7) & 0xf == 0
            && (cc >> 11) & 7 == 0
            && (css == 0 || css == 6);
        self.csts = if valid { CSTS_RDY } else { CSTS_CFS };
        self.traffic = true;
    }

    fn clear(&mut self) {
        self.csts &= !CSTS_RDY;
        self.cc = 0;
    }

    /// Executes an admin (non-Fabrics) command.
    pub fn admin(&mut self, cmd: &Command, ctx: &AdminContext<'_>) -> Outcome {
        let result = match self.subsystem {
            Subsystem::Discovery => self.discovery_admin(cmd, ctx),
            Subsystem::Nvm(_) => self.nvm_admin(cmd),
        };
        match result {
            Ok(outcome) => outcome,
            Err(status) => Outcome::Reply(Reply::err(status)),
        }
    }

    fn discovery_admin(
        &mut self,
        cmd: &Command,
        ctx: &AdminContext<'_>,
    ) -> Result<Outcome, Status> {
        if self.csts & CSTS_RDY == 0 {
            return Err(Status::INVALID_OPCODE);
        }
        let reply = match cmd.opcode() {
            admin::SET_FEATURES => self.set_features(cmd, OAES_DISCOVERY, true)?,
            admin::GET_FEATURES => self.get_features(cmd, true)?,
            admin::ASYNC_EVENT => return self.hold_aer(cmd),
            admin::KEEP_ALIVE => {
                expect_transfer(cmd, 0)?;
                Reply::ok(0)
            }
            admin::GET_LOG_PAGE => {
                let len = log_page_len(cmd);
                expect_transfer(cmd, len)?;
                let offset = log_page_offset(cmd);
                if (cmd.cdw(10) & 0xff) as u8 != lid::DISCOVERY || offset & 3 != 0 {
                    return Err(Status::INVALID_FIELD);
                }
                let page = self.discovery_log(ctx);
                if !retains_event(cmd) {
                    self.aen_masked &= !(1 << AEN_BIT_DISCOVERY);
                }
                Reply::data(log_page::window(&page, offset, len))
            }
            admin::IDENTIFY => {
                expect_transfer(cmd, identify::IDENTIFY_LEN)?;
                if (cmd.cdw(10) & 0xff) as u8 != cns::CONTROLLER {
                    return Err(Status::INVALID_FIELD);
                }
                Reply::data(identify::discovery_controller(
                    self.cntlid,
                    DISCOVERY_SERIAL,
                    DISCOVERY_NQN,
                ))
            }
            _ => return Err(Status::INVALID_OPCODE),
        };
        Ok(Outcome::Reply(reply))
    }

    fn discovery_log(&self, ctx: &AdminContext<'_>) -> Vec<u8> {
        let mut records = vec![DiscoveryRecord {
            subtype: log_page::subtype::CURRENT_DISCOVERY,
            nqn: DISCOVERY_NQN,
        }];
        records.extend(
            ctx.exports
                .iter()
                .filter(|e| e.allows(&self.host_nqn))
                .map(|e| DiscoveryRecord {
                    subtype: log_page::subtype::NVME,
                    nqn: &e.nqn,
                }),
        );
        let port = DiscoveryPort {
            traddr: ctx.traddr,
            ipv6: ctx.traddr.contains(':'),
            port: ctx.port,
        };
        log_page::discovery(&port, &records)
    }

    fn nvm_admin(&mut self, cmd: &Command) -> Result<Outcome, Status> {
        if !self.is_ready() {
            return Err(Status::CMD_SEQ_ERROR);
        }
        let Subsystem::Nvm(export) = &self.subsystem else {
            unreachable!("nvm_admin runs on NVM subsystems only")
        };
        let reply = match cmd.opcode() {
            admin::IDENTIFY => {
                expect_transfer(cmd, identify::IDENTIFY_LEN)?;
                Reply::data(identify_nvm(cmd, self.cntlid, export)?)
            }
            admin::GET_LOG_PAGE => {
                let len = log_page_len(cmd);
                expect_transfer(cmd, len)?;
                let page = self.nvm_log_page(cmd)?;
                Reply::data(log_page::window(&page, log_page_offset(cmd), len))
            }
            admin::SET_FEATURES => self.set_features(cmd, OAES_IO | 0x1f, false)?,
            admin::GET_FEATURES => self.get_features(cmd, false)?,
            admin::ASYNC_EVENT => return self.hold_aer(cmd),
            admin::KEEP_ALIVE => {
                expect_transfer(cmd, 0)?;
                Reply::ok(0)
            }
            _ => return Err(Status::INVALID_OPCODE),
        };
        Ok(Outcome::Reply(reply))
    }

    fn nvm_log_page(&mut self, cmd: &Command) -> Result<Vec<u8>, Status> {
        let lsp = (cmd.cdw(10) >> 8) & 0xf;
        let retain = retains_event(cmd);
        Ok(match (cmd.cdw(10) & 0xff) as u8 {
            lid::ERROR => log_page::errors(self.errors.iter().rev()),
            lid::SMART => log_page::smart(self.error_count),
            lid::FIRMWARE => Vec::new(),
            lid::CHANGED_NS => {
                let page =
                    log_page::changed_namespaces(&self.changed_ns, self.changed_ns_overflowed);
                self.changed_ns.clear();
                self.changed_ns_overflowed = false;
                if !retain {
                    self.aen_masked &= !(1 << AEN_BIT_NS_ATTR);
                }
                page
            }
            lid::CMD_EFFECTS => log_page::command_effects(),
            lid::ANA => {
                if !retain {
                    self.aen_masked &= !(1 << AEN_BIT_ANA);
                }
                log_page::ana(lsp & 1 != 0)
            }
            _ => return Err(Status::INVALID_FIELD),
        })
    }

    fn set_features(
        &mut self,
        cmd: &Command,
        aen_mask: u32,
        discovery: bool,
    ) -> Result<Reply, Status> {
        expect_transfer(cmd, 0)?;
        let value = cmd.cdw(11);
        match ((cmd.cdw(10) & 0xff) as u8, discovery) {
            (fid::KATO, _) => {
                self.kato_secs = value.div_ceil(1000);
                self.traffic = true;
                Ok(Reply::ok(u64::from(self.kato_secs)))
            }
            (fid::ASYNC_EVENT, _) => {
                if value & !aen_mask != 0 {
                    return Err(Status::INVALID_FIELD);
                }
                self.aen_enabled = value;
                Ok(Reply::ok(u64::from(value)))
            }
            (fid::NUM_QUEUES, false) => {
                if value & 0xffff == 0xffff || value >> 16 == 0xffff {
                    return Err(Status::INVALID_FIELD);
                }
                Ok(Reply::ok(granted_queues()))
            }
            (fid::HOST_ID, false) => Err(Status::CMD_SEQ_ERROR),
            _ => Err(Status::INVALID_FIELD),
        }
    }

    fn get_features(&self, cmd: &Command, discovery: bool) -> Result<Reply, Status> {
        let feature = (cmd.cdw(10) & 0xff) as u8;
        if feature == fid::HOST_ID && !discovery {
            if cmd.cdw(11) & 1 == 0 {
                return Err(Status::INVALID_FIELD);
            }
            expect_transfer(cmd, self.host_id.len())?;
            return Ok(Reply::data(self.host_id.to_vec()));
        }
        expect_transfer(cmd, 0)?;
        let value = match (feature, discovery) {
            (fid::KATO, _) => u64::from(self.kato_secs) * 1000,
            (fid::ASYNC_EVENT, _) => u64::from(self.aen_enabled),
            (fid::VOLATILE_WC, false) => 1,
            (fid::NUM_QUEUES, false) => granted_queues(),
            (
                fid::ARBITRATION
                | fid::POWER_MGMT
                | fid::TEMP_THRESHOLD
                | fid::ERROR_RECOVERY
                | fid::IRQ_COALESCE
                | fid::IRQ_CONFIG
                | fid::WRITE_ATOMIC,
                false,
            ) => 0,
            _ => return Err(Status::INVALID_FIELD),
        };
        Ok(Reply::ok(value))
    }

    fn hold_aer(&mut self, cmd: &Command) -> Result<Outcome, Status> {
        expect_transfer(cmd, 0)?;
        if self.held_aers.len() >= ASYNC_EVENT_LIMIT {
            return Err(Status::ASYNC_LIMIT);
        }
        self.held_aers.push(cmd.cid());
        Ok(Outcome::Held)
    }

    /// Pairs held Asynchronous Event Requests with pending events: (command ID, result).
    pub fn take_ready_events(&mut self) -> Vec<(u16, u32)> {
        let mut ready = Vec::new();
        while !self.held_aers.is_empty() && !self.events.is_empty() {
            let cid = self.held_aers.remove(0);
            let event = self.events.pop_front().expect("checked non-empty");
            ready.push((cid, event));
        }
        ready
    }

    /// Queues an event unless the host disabled it or has not yet read the previous one.
    fn add_event(&mut self, bit: u32, result: u32) -> bool {
        let mask = 1 << bit;
        if self.aen_enabled & mask == 0 || self.aen_masked & mask != 0 {
            return false;
        }
        self.aen_masked |= mask;
        self.events.push_back(result);
        true
    }

    /// The namespace changed (resized): logs it and raises a notice. Returns whether an event
    /// was queued.
    pub fn namespace_changed(&mut self, new_size: u64) -> bool {
        if let Subsystem::Nvm(export) = &mut self.subsystem {
            export.size = new_size;
        }
        if !self.changed_ns.contains(&NSID) {
            if self.changed_ns.len() < CHANGED_NS_CAPACITY {
                self.changed_ns.push(NSID);
            } else {
                self.changed_ns_overflowed = true;
            }
        }
        self.add_event(AEN_BIT_NS_ATTR, AEN_NS_CHANGED)
    }

    /// Records a failed command in the error log.
    pub fn record_error(&mut self, sqid: u16, cmd: &Command, status: Status) {
        self.error_count += 1;
        if self.errors.len() == ERROR_LOG_SLOTS {
            self.errors.pop_front();
        }
        self.errors.push_back(ErrorEntry {
            count: self.error_count,
            sqid,
            cid: cmd.cid(),
            status,
            nsid: cmd.nsid(),
        });
    }
}

/// Number of Queues result: 128 submission and completion queues (0's based).
fn granted_queues() -> u64 {
    let n = u64::from(MAX_IO_QUEUES - 1);
    n | (n << 16)
}

fn identify_nvm(cmd: &Command, cntlid: u16, export: &Export) -> Result<Vec<u8>, Status> {
    let nsid = cmd.nsid();
    let csi = (cmd.cdw(11) >> 24) as u8;
    Ok(match (cmd.cdw(10) & 0xff) as u8 {
        cns::CONTROLLER => identify::io_controller(cntlid, export),
        cns::NAMESPACE if nsid == u32::MAX => return Err(Status::INVALID_NS),
        cns::NAMESPACE if nsid == NSID => identify::namespace(export),
        // nvmet answers an inactive namespace ID with zeroes.
        cns::NAMESPACE => vec![0; identify::IDENTIFY_LEN],
        cns::ACTIVE_NS_LIST if nsid >= u32::MAX - 1 => return Err(Status::INVALID_NS),
        cns::ACTIVE_NS_LIST => identify::active_namespaces(nsid),
        cns::NS_DESCRIPTORS if nsid == NSID => identify::descriptors(export),
        cns::NS_DESCRIPTORS => return Err(Status::INVALID_NS),
        // The NVM command set's controller structure: no limits to report.
        cns::CSI_CONTROLLER if csi == 0 => vec![0; identify::IDENTIFY_LEN],
        _ => return Err(Status::INVALID_FIELD),
    })
}

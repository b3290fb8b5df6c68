//! Log pages (NVMe Base Specification 2.0, section 5.16.1; NVMe over Fabrics 1.1, section 5.3),
//! laid out as nvmet fills them.

use super::NSID;
use super::command::{admin, io};
use super::status::Status;

/// Log page identifiers this target answers.
pub mod lid {
    pub const ERROR: u8 = 0x01;
    pub const SMART: u8 = 0x02;
    pub const FIRMWARE: u8 = 0x03;
    pub const CHANGED_NS: u8 = 0x04;
    pub const CMD_EFFECTS: u8 = 0x05;
    pub const ANA: u8 = 0x0c;
    pub const DISCOVERY: u8 = 0x70;
}

/// Entries the Changed Namespace List holds before it reports an overflow.
pub const CHANGED_NS_CAPACITY: usize = 1024;

/// One entry of the Error Information log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorEntry {
    pub count: u64,
    pub sqid: u16,
    pub cid: u16,
    pub status: Status,
    pub nsid: u32,
}

/// The requested window of a log page: `len` bytes from `offset`, zero past the page's end.
pub fn window(page: &[u8], offset: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    if let Ok(start) = usize::try_from(offset)
        && start < page.len()
    {
        let n = (page.len() - start).min(len);
        out[..n].copy_from_slice(&page[start..start + n]);
    }
    out
}

/// Error Information log, newest entry first.
pub fn errors<'a>(newest_first: impl Iterator<Item = &'a ErrorEntry>) -> Vec<u8> {
    let mut page = Vec::new();
    for e in newest_first {
        let mut slot = [0u8; 64];
        slot[0..8].copy_from_slice(&e.count.to_le_bytes());
        slot[8..10].copy_from_slice(&e.sqid.to_le_bytes());
        slot[10..12].copy_from_slice(&e.cid.to_le_bytes());
        slot[12..14].copy_from_slice(&e.status.wire().to_le_bytes());
        slot[14..16].copy_from_slice(&0xffffu16.to_le_bytes()); // parameter location unknown
        slot[24..28].copy_from_slice(&e.nsid.to_le_bytes());
        slot[29] = 3; // transport type: TCP
        page.extend_from_slice(&slot);
    }
    page
}

/// SMART / Health Information: nvmet reports no counters for file-backed namespaces, only the
/// number of error log entries.
pub fn smart(error_count: u64) -> Vec<u8> {
    let mut page = vec![0u8; 512];
    page[176..184].copy_from_slice(&error_count.to_le_bytes());
    page
}

/// Changed Namespace List; an overflowed list reports only 0xffffffff.
pub fn changed_namespaces(changed: &[u32], overflowed: bool) -> Vec<u8> {
    let mut page = vec![0u8; 4 * CHANGED_NS_CAPACITY];
    let list: &[u32] = if overflowed { &[u32::MAX] } else { changed };
    for (i, nsid) in list.iter().enumerate() {
        page[4 * i..4 * i + 4].copy_from_slice(&nsid.to_le_bytes());
    }
    page
}

/// Commands Supported and Effects: every command marked supported, no other effects.
pub fn command_effects() -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    let supported = 1u32.to_le_bytes();
    let admin_cmds = [
        admin::GET_LOG_PAGE,
        admin::IDENTIFY,
        0x08, // Abort
        admin::SET_FEATURES,
        admin::GET_FEATURES,
        admin::ASYNC_EVENT,
        admin::KEEP_ALIVE,
    ];
    for op in admin_cmds {
        let at = 4 * usize::from(op);
        page[at..at + 4].copy_from_slice(&supported);
    }
    for op in [io::READ, io::WRITE, io::FLUSH, io::DSM, io::WRITE_ZEROES] {
        let at = 1024 + 4 * usize::from(op);
        page[at..at + 4].copy_from_slice(&supported);
    }
    page
}

/// Asymmetric Namespace Access log: group 1, optimized, holding the namespace unless the host
/// asked for groups only (RGO).
pub fn ana(groups_only: bool) -> Vec<u8> {
    let nsids: &[u32] = if groups_only { &[] } else { &[NSID] };
    let mut page = vec![0u8; 16 + 32 + 4 * nsids.len()];
    page[8..10].copy_from_slice(&1u16.to_le_bytes()); // NGRPS
    page[16..20].copy_from_slice(&1u32.to_le_bytes()); // ANAGRPID
    page[20..24].copy_from_slice(&(nsids.len() as u32).to_le_bytes());
    page[32] = 0x01; // optimized
    for (i, nsid) in nsids.iter().enumerate() {
        page[48 + 4 * i..52 + 4 * i].copy_from_slice(&nsid.to_le_bytes());
    }
    page
}

/// Discovery log entry subtypes.
pub mod subtype {
    pub const NVME: u8 = 2;
    pub const CURRENT_DISCOVERY: u8 = 3;
}

/// One record of the discovery log.
pub struct DiscoveryRecord<'a> {
    pub subtype: u8,
    pub nqn: &'a str,
}

/// The port fields every discovery record repeats.
pub struct DiscoveryPort<'a> {
    pub traddr: &'a str,
    pub ipv6: bool,
    pub port: u16,
}

/// Discovery log: header, then one 1024-byte record per subsystem. The generation counter
/// stays 0: the simulator's exports are read afresh on every request.
pub fn discovery(port: &DiscoveryPort<'_>, records: &[DiscoveryRecord<'_>]) -> Vec<u8> {
    let mut page = vec![0u8; 1024 * (1 + records.len())];
    page[8..16].copy_from_slice(&(records.len() as u64).to_le_bytes());
    for (i, r) in records.iter().enumerate() {
        let e = &mut page[1024 * (i + 1)..1024 * (i + 2)];
        e[0] = 3; // TRTYPE: TCP
        e[1] = if port.ipv6 { 2 } else { 1 }; // ADRFAM
        e[2] = r.subtype;
        e[3] = 0x04; // TREQ: not specified, SQ flow control disable supported
        e[4..6].copy_from_slice(&1u16.to_le_bytes()); // PORTID
        e[6..8].copy_from_slice(&0xffffu16.to_le_bytes()); // CNTLID: dynamic
        e[8..10].copy_from_slice(&32u16.to_le_bytes()); // ASQSZ
        put_ascii(&mut e[32..64], &port.port.to_string());
        put_ascii(&mut e[256..512], r.nqn);
        put_ascii(&mut e[512..768], port.traddr);
        // TSAS (768..1024): security type none.
    }
    page
}

fn put_ascii(field: &mut [u8], s: &str) {
    let n = s.len().min(field.len() - 1);
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
}

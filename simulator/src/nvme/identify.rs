//! Identify data structures (NVMe Base Specification 2.0, section 5.17.2), filled with the values
//! Linux's nvmet answers (drivers/nvme/target/admin-cmd.c and discovery.c).

use super::{Export, LBA_SHIFT, NSID};

pub const IDENTIFY_LEN: usize = 4096;

/// Identify CNS values this target answers.
pub mod cns {
    pub const NAMESPACE: u8 = 0x00;
    pub const CONTROLLER: u8 = 0x01;
    pub const ACTIVE_NS_LIST: u8 = 0x02;
    pub const NS_DESCRIPTORS: u8 = 0x03;
    pub const CSI_CONTROLLER: u8 = 0x06;
}

/// NVMe version 1.3, as nvmet reports in VS and Identify.
pub const VERSION: u32 = 0x0001_0300;
/// Model number nvmet reports unless configured.
pub const MODEL: &str = "Linux";
/// Firmware revision: nvmet reports the kernel release; RouterOS 7 runs a 5.6 kernel.
pub const FIRMWARE: &str = "5.6.3";
/// Queue entries the controller supports (CAP.MQES + 1) and the MAXCMD value.
pub const MAX_QUEUE_SIZE: u16 = 1024;
/// In-capsule data a command capsule may carry on I/O queues (nvmet-tcp's default).
pub const INLINE_DATA_SIZE: usize = 16384;
/// Keep Alive Support granularity, in 100 ms units (nvmet: one second).
const KAS: u16 = 10;
const MAX_NAMESPACES: u32 = 1024;
const MAX_ANA_GROUPS: u32 = 128;
/// Asynchronous events a controller may hold outstanding (AERL + 1).
pub const ASYNC_EVENT_LIMIT: usize = 4;
/// Error log entries kept (ELPE + 1).
pub const ERROR_LOG_SLOTS: usize = 128;
/// Optional asynchronous events supported: namespace attribute and ANA change notices.
pub const OAES_IO: u32 = (1 << 8) | (1 << 11);
/// Optional asynchronous events of a discovery controller: discovery log change notices.
pub const OAES_DISCOVERY: u32 = 1 << 31;

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn put_padded(buf: &mut [u8], at: usize, len: usize, s: &str) {
    let field = &mut buf[at..at + len];
    field.fill(b' ');
    let n = s.len().min(len);
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
}

fn put_nqn(buf: &mut [u8], at: usize, nqn: &str) {
    let n = nqn.len().min(255);
    put(buf, at, &nqn.as_bytes()[..n]);
}

/// Identify Controller for an I/O controller of `export`'s subsystem.
pub fn io_controller(cntlid: u16, export: &Export) -> Vec<u8> {
    let mut id = vec![0u8; IDENTIFY_LEN];
    put_padded(&mut id, 4, 20, &export.serial);
    put_padded(&mut id, 24, 40, MODEL);
    put_padded(&mut id, 64, 8, FIRMWARE);
    id[72] = 6; // RAB
    id[76] = 0x0b; // CMIC: multiple ports, multiple controllers, ANA reporting
    id[77] = 0; // MDTS: no limit
    put(&mut id, 78, &cntlid.to_le_bytes());
    put(&mut id, 80, &VERSION.to_le_bytes());
    put(&mut id, 92, &OAES_IO.to_le_bytes());
    put(&mut id, 96, &0x41u32.to_le_bytes()); // CTRATT: 128-bit host ID, traffic-based keep alive
    id[111] = 1; // CNTRLTYPE: I/O controller
    id[258] = 3; // ACL
    id[259] = (ASYNC_EVENT_LIMIT - 1) as u8; // AERL
    id[260] = 0x03; // FRMW: slot 1 read-only, one slot
    id[261] = 0x07; // LPA: SMART per namespace, command effects log, extended data
    id[262] = (ERROR_LOG_SLOTS - 1) as u8; // ELPE
    put(&mut id, 320, &KAS.to_le_bytes());
    id[342] = 10; // ANATT
    id[343] = 0x1f; // ANACAP
    put(&mut id, 344, &MAX_ANA_GROUPS.to_le_bytes()); // ANAGRPMAX
    put(&mut id, 348, &MAX_ANA_GROUPS.to_le_bytes()); // NANAGRPID
    id[512] = 0x66; // SQES
    id[513] = 0x44; // CQES
    put(&mut id, 514, &MAX_QUEUE_SIZE.to_le_bytes()); // MAXCMD
    put(&mut id, 516, &MAX_NAMESPACES.to_le_bytes()); // NN
    put(&mut id, 520, &0x000cu16.to_le_bytes()); // ONCS: Dataset Management, Write Zeroes
    id[525] = 1; // VWC: volatile write cache present
    id[531] = 1; // NWPC
    put(&mut id, 536, &sgls().to_le_bytes());
    put(&mut id, 540, &MAX_NAMESPACES.to_le_bytes()); // MNAN
    put_nqn(&mut id, 768, &export.nqn);
    let ioccsz = ((64 + INLINE_DATA_SIZE) / 16) as u32;
    put(&mut id, 1792, &ioccsz.to_le_bytes());
    put(&mut id, 1796, &1u32.to_le_bytes()); // IORCSZ: one 16-byte CQE
    id[1803] = 1; // MSDBD
    // Power state 0, the values nvmet borrows from QEMU.
    put(&mut id, 2048, &0x09c4u16.to_le_bytes());
    put(&mut id, 2052, &0x10u32.to_le_bytes());
    put(&mut id, 2056, &0x4u32.to_le_bytes());
    id
}

/// Identify Controller for a discovery controller.
pub fn discovery_controller(cntlid: u16, serial: &str, nqn: &str) -> Vec<u8> {
    let mut id = vec![0u8; IDENTIFY_LEN];
    put_padded(&mut id, 4, 20, serial);
    put_padded(&mut id, 24, 40, MODEL);
    put_padded(&mut id, 64, 8, FIRMWARE);
    put(&mut id, 78, &cntlid.to_le_bytes());
    put(&mut id, 80, &VERSION.to_le_bytes());
    put(&mut id, 92, &OAES_DISCOVERY.to_le_bytes());
    id[111] = 2; // CNTRLTYPE: discovery controller
    id[261] = 0x04; // LPA: extended data for Get Log Page
    put(&mut id, 514, &MAX_QUEUE_SIZE.to_le_bytes());
    put(&mut id, 536, &sgls().to_le_bytes());
    put_nqn(&mut id, 768, nqn);
    id
}

/// SGL support: SGLs, and SGL offsets for in-capsule data.
fn sgls() -> u32 {
    1 | (1 << 20)
}

/// The Namespace Globally Unique Identifier of an export: its UUID's bytes.
pub fn nguid(export: &Export) -> [u8; 16] {
    export.uuid
}

/// Identify Namespace for the export's namespace.
pub fn namespace(export: &Export) -> Vec<u8> {
    let mut id = vec![0u8; IDENTIFY_LEN];
    let blocks = export.size >> LBA_SHIFT;
    for at in [0, 8, 16] {
        put(&mut id, at, &blocks.to_le_bytes()); // NSZE, NCAP, NUSE
    }
    id[30] = 1; // NMIC: may be shared
    put(&mut id, 92, &1u32.to_le_bytes()); // ANAGRPID
    put(&mut id, 104, &nguid(export));
    id[130] = LBA_SHIFT as u8; // LBAF0.LBADS
    id
}

/// Active Namespace ID list: the IDs greater than `after`.
pub fn active_namespaces(after: u32) -> Vec<u8> {
    let mut id = vec![0u8; IDENTIFY_LEN];
    if after < NSID {
        put(&mut id, 0, &NSID.to_le_bytes());
    }
    id
}

/// Namespace Identification Descriptor list: UUID, NGUID and command set, in nvmet's order.
pub fn descriptors(export: &Export) -> Vec<u8> {
    let mut id = vec![0u8; IDENTIFY_LEN];
    let mut at = 0;
    for (kind, value) in [
        (3u8, &export.uuid[..]),
        (2, &nguid(export)[..]),
        (4, &[0u8][..]),
    ] {
        id[at] = kind;
        id[at + 1] = value.len() as u8;
        put(&mut id, at + 4, value);
        at += 4 + value.len();
    }
    id
}

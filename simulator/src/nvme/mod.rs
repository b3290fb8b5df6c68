//! A real NVMe/TCP target: one NVM subsystem per exported disk, plus the discovery subsystem.
//!
//! The protocol core is pure (no sockets, no timers, no file I/O): [`pdu`] encodes and decodes
//! PDUs, [`queue`] runs one connection's queue and emits [`queue::Action`]s, [`controller`] and
//! [`registry`] hold controller state shared by a controller's queues, [`io`] bounds every
//! file operation to its namespace. [`target`] is the tokio edge that moves bytes and runs
//! file I/O; [`initiator`] is a small blocking host used by tests and benchmarks.

use std::path::PathBuf;

mod backing;
pub mod command;
pub mod controller;
pub mod identify;
pub mod initiator;
pub mod io;
pub mod log_page;
pub mod pdu;
pub mod queue;
pub mod registry;
pub mod status;
pub mod target;

#[cfg(test)]
mod tests;

pub use target::{ConnectionFilter, ConnectionInfo, Target};

/// The well-known NQN of the discovery subsystem.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";
/// The one namespace of every exported subsystem.
pub const NSID: u32 = 1;
/// Logical blocks are 512 bytes, as a loop device over a file reports them.
pub const LBA_SHIFT: u32 = 9;

/// What the target needs to know about exported disks; implemented by the simulator's store.
pub trait Exports: Send + Sync + 'static {
    /// The exported disk with this subsystem NQN and port, if any.
    fn lookup(&self, nqn: &str, port: u16) -> Option<Export>;
    /// Every exported disk on this port (for the discovery log page).
    fn list(&self, port: u16) -> Vec<Export>;
    /// A completed read or write on the disk in `slot`, for its traffic counters. Exports that
    /// keep no counters ignore it.
    fn record_io(&self, slot: &str, read_bytes: u64, written_bytes: u64) {
        let _ = (slot, read_bytes, written_bytes);
    }
}

/// One exported disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// Subsystem NQN.
    pub nqn: String,
    /// The disk's slot, under which its I/O is counted ([`Exports::record_io`]).
    pub slot: String,
    /// Backing file of the namespace.
    pub file: PathBuf,
    /// Namespace size in bytes (whole 512-byte blocks count).
    pub size: u64,
    /// Namespace UUID, also used as its NGUID.
    pub uuid: [u8; 16],
    /// Controller serial number (up to 20 ASCII characters).
    pub serial: String,
    /// Host NQNs allowed to connect; empty allows any host.
    pub allowed_hosts: Vec<String>,
}

impl Export {
    /// Whether `host_nqn` may connect to this subsystem.
    pub fn allows(&self, host_nqn: &str) -> bool {
        self.allowed_hosts.is_empty() || self.allowed_hosts.iter().any(|h| h == host_nqn)
    }
}

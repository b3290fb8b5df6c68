//! Attaching a volume's block device: one module per transport behind [`Fabric`].
//!
//! [`kernel`] is the production path: the kernel's NVMe/TCP initiator, driven through
//! `/dev/nvme-fabrics` and sysfs. [`loopdev`] puts the simulator's backing file behind a loop
//! device, for machines whose kernel has no nvme-tcp (CI), so the rest of the node path (mkfs,
//! mount, publish, stats, expand) runs for real there too.

pub mod kernel;
pub mod loopdev;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{DevNum, HostError};

/// The connection tunables of `nvme connect`. The defaults ride out an RDS reboot of a few
/// minutes (the controller keeps reconnecting for `ctrl_loss_tmo`) without making the node's own
/// reboot hang forever on a dead target, which an infinite `ctrl_loss_tmo` (-1) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunables {
    /// Seconds the kernel keeps reconnecting a lost controller before it gives up; -1 forever.
    pub ctrl_loss_tmo: i32,
    /// Seconds between reconnect attempts.
    pub reconnect_delay: u32,
    /// Keep Alive timeout in seconds: how soon a dead target is noticed.
    pub keep_alive_tmo: u32,
    /// I/O queues; `None` lets the kernel choose (one per CPU).
    pub nr_io_queues: Option<u32>,
}

impl Default for Tunables {
    fn default() -> Tunables {
        Tunables {
            ctrl_loss_tmo: 600,
            reconnect_delay: 5,
            keep_alive_tmo: 15,
            nr_io_queues: None,
        }
    }
}

/// What to attach: a volume as the controller published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub volume_id: String,
    /// The subsystem NQN the RDS exports the volume as.
    pub nqn: String,
    pub address: String,
    pub port: u16,
    /// This node's host NQN, the one the volume's allow-list names.
    pub host_nqn: String,
    /// The disk's `file-path` on the RDS, relative to its `/file` root (loop mode reads it).
    pub file_path: Option<String>,
    pub tunables: Tunables,
}

/// A block device of an attached volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// `/dev/nvme1n1`, `/dev/loop3`.
    pub path: PathBuf,
    pub dev: DevNum,
    /// Size in bytes, as the kernel sees it now.
    pub size: u64,
}

/// A volume attached to this node: the controllers (or loop device) holding it, and its block
/// device when the kernel has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// Kernel controller names (`nvme3`) or the loop device name (`loop3`).
    pub controllers: Vec<String>,
    pub device: Option<Device>,
}

/// One transport. Every method is idempotent; none blocks longer than its bounded wait.
pub trait Fabric: Send + Sync {
    /// Connects `target`, or finds the connection that already exists.
    fn connect(&self, target: &Target) -> Result<(), HostError>;

    /// Waits, with a bounded backoff, for the block device of a connected `target`.
    fn device(&self, target: &Target) -> Result<Device, HostError>;

    /// What of `volume_id` is attached here, if anything.
    fn find(&self, volume_id: &str) -> Result<Option<Attached>, HostError>;

    /// Disconnects everything of `attached`; gone already is success.
    fn disconnect(&self, attached: &Attached) -> Result<(), HostError>;

    /// Makes the kernel re-read the device's size after the volume grew; returns the new size.
    fn rescan(&self, attached: &Attached) -> Result<u64, HostError>;

    /// Why the attachment cannot serve I/O now, if it cannot.
    fn health(&self, attached: &Attached) -> Result<(), Unhealthy>;
}

/// Why an attachment cannot serve I/O now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    /// The kernel is reconnecting: I/O, an unmount's last writes among it, waits until the
    /// controller is back or ctrl_loss_tmo gives it up.
    #[error("{0}")]
    Reconnecting(String),
    /// Nothing will come back: the controller or loop device is gone, or its file deleted.
    #[error("{0}")]
    Broken(String),
}

/// Polls `probe` until it yields, backing off from 5 ms to 250 ms between tries, for at most
/// `limit`. Sysfs offers no event for "this subsystem's namespace appeared" short of a uevent
/// socket, and the device usually appears within milliseconds, so a short bounded backoff
/// answers quickly without spinning.
pub fn wait_for<T>(
    limit: Duration,
    mut probe: impl FnMut() -> Result<Option<T>, HostError>,
) -> Result<Option<T>, HostError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(found) = probe()? {
            return Ok(Some(found));
        }
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_returns_what_the_probe_finds_and_gives_up_at_the_limit() {
        let mut tries = 0;
        let found = wait_for(Duration::from_secs(5), || {
            tries += 1;
            Ok((tries == 3).then_some("dev"))
        })
        .unwrap();
        assert_eq!((found, tries), (Some("dev"), 3));
        let never: Option<()> = wait_for(Duration::from_millis(20), || Ok(None)).unwrap();
        assert_eq!(never, None);
    }
}

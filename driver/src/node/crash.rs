//! Crash points: named steps of stage and publish at which a test build of the plugin kills
//! itself, so the node fault suite (`driver/tests/node_loop/faults.rs`) stops a real plugin
//! between two host operations every time, not when a timer happens to land. Like rds-sim's crash
//! faults they are chosen by name from outside; they exist only with the `crash-points` feature,
//! so a release build carries none.

/// The variable that names the crash point of a test build, kebab-case ([`CrashPoint::name`]).
pub const CRASH_AT: &str = "RDS_CSI_CRASH_AT";

/// A step after which the plugin dies when [`CRASH_AT`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Stage has connected the volume (a loop device or an NVMe/TCP controller), nothing more.
    Connected,
    /// Stage has made the file system and not mounted it.
    Formatted,
    /// Stage has mounted the file system; the CO has no answer yet.
    Mounted,
    /// Publish has bind-mounted the staging mount at the target path.
    Published,
    /// Publish of a block volume has made its device node in the staging directory.
    DeviceNode,
    /// Publish of a block volume has linked that device node at the target path.
    Linked,
}

impl CrashPoint {
    pub const ALL: [CrashPoint; 6] = [
        CrashPoint::Connected,
        CrashPoint::Formatted,
        CrashPoint::Mounted,
        CrashPoint::Published,
        CrashPoint::DeviceNode,
        CrashPoint::Linked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::Connected => "connected",
            CrashPoint::Formatted => "formatted",
            CrashPoint::Mounted => "mounted",
            CrashPoint::Published => "published",
            CrashPoint::DeviceNode => "device-node",
            CrashPoint::Linked => "linked",
        }
    }

    /// Kills the plugin if [`CRASH_AT`] names this point. SIGKILL, as kubelet or the OOM killer
    /// ends a container: no destructor runs, no answer goes out, and nothing is left in memory.
    #[cfg(feature = "crash-points")]
    pub fn reached(self) {
        if std::env::var(CRASH_AT).is_ok_and(|at| at == self.name()) {
            tracing::warn!(
                point = self.name(),
                "crash point reached: killing the plugin"
            );
            // SAFETY: kill(2) on this process touches no memory of ours.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }

    #[cfg(not(feature = "crash-points"))]
    #[inline(always)]
    pub fn reached(self) {}
}

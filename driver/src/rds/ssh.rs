//! The SSH transport to the RDS: one exec channel per RouterOS command line, a pinned host key,
//! and a bounded pool of connections with backoff and a circuit breaker.
//!
//! RouterOS rules this follows (`routeros/README.md`, "Session"): one exec request per command
//! line, no PTY; channels opened one at a time per connection; liveness is probed by opening a
//! channel, because RouterOS does not answer `keepalive@openssh.com` usefully. The exit status
//! is not reliable, so [`SshTransport::run`] returns the text only and the caller judges it.

mod breaker;
mod host_key;
mod pool;
mod transport;

use std::time::Duration;

pub use breaker::{BreakerConfig, BreakerState};
pub use host_key::{HostKeyPin, InvalidHostKeyPin};
pub use pool::{Backoff, PoolConfig, PoolStats, SshPool};
pub use transport::{Exec, SshTransport};

/// How long to wait for the RDS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect, SSH handshake and authentication together.
    pub connect: Duration,
    /// One command, from opening its channel to the channel's close; also a liveness probe.
    pub command: Duration,
    /// One `/disk copy` ([`SshPool::run_copy`]): it holds its channel for the whole block copy,
    /// so it gets its own limit rather than raising every command's.
    pub copy: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            command: Duration::from_secs(30),
            copy: Duration::from_secs(3600),
        }
    }
}

/// Why a command could not be run on the RDS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to the RDS at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error(
        "the RDS at {addr} presented host key {actual}, but {expected} is pinned; if the RDS's \
         host key was changed on purpose (`/ip ssh print` shows it), update the pinned host key \
         (`rds.hostKey`) to {actual}, otherwise something is intercepting the connection"
    )]
    HostKeyMismatch {
        addr: String,
        expected: String,
        actual: String,
    },
    #[error(
        "the RDS at {addr} refused the SSH login of {user}: import the driver's public key for \
         that user (`/user ssh-keys import`) and give the user the ssh, read, write and test policies"
    )]
    Auth { addr: String, user: String },
    #[error(
        "the RDS at {addr} did not finish `{command}` within {after:?} (the limit is \
         rds.copyTimeoutMs for `/disk copy`, rds.commandTimeoutMs for every other command)"
    )]
    Timeout {
        addr: String,
        command: String,
        after: Duration,
    },
    #[error("the SSH connection to the RDS at {addr} was lost: {reason}")]
    Disconnected { addr: String, reason: String },
    #[error(
        "the RDS at {addr} is unavailable: {failures} connection attempts failed in a row \
         (last: {last_error}); the next attempt is in {retry_in:?}"
    )]
    CircuitOpen {
        addr: String,
        failures: u32,
        retry_in: Duration,
        last_error: String,
    },
}

//! [`RdsError`]: everything a typed RDS operation can fail with, and the [`ErrorKind`] a caller
//! decides on.

use super::MIN_ROUTEROS;
use crate::rds::error::RosError;
use crate::rds::parse::{ParseError, RosVersion};
use crate::rds::ssh::SshError;

/// Why an operation on the RDS failed. Every message names the command and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RdsError {
    #[error("`{command}` could not be run: {source}")]
    Ssh { command: String, source: SshError },
    #[error(transparent)]
    Ros(#[from] RosError),
    #[error(
        "cannot read what the RDS printed for `{command}`: {source}; this RouterOS prints \
         something rds-csi does not understand: report it with this message"
    )]
    Parse { command: String, source: ParseError },
    #[error(
        "`{command}` succeeded, but reading disk {slot} back shows {differences}; inspect it with \
         `/disk print detail where slot=\"{slot}\"` on the RDS, then retry"
    )]
    ReadBack {
        command: String,
        slot: String,
        differences: String,
    },
    #[error(
        "`{command}` succeeded, but Btrfs subvolume {name} reads back {differences}; inspect it \
         with `/disk btrfs subvolume print detail where name=\"{name}\"` on the RDS, then retry"
    )]
    Subvolume {
        command: String,
        name: String,
        differences: String,
    },
    #[error("`{command}` found no disk with slot {slot}: it does not exist (any more)")]
    NoDisk { command: String, slot: String },
    #[error(
        "the RDS runs RouterOS {found}, but rds-csi needs RouterOS {MIN_ROUTEROS} or later (the \
         first with nvme-tcp-server-nqn): upgrade RouterOS on the RDS"
    )]
    Unsupported { found: RosVersion },
    #[error(
        "`{command}` shows no disk mounted at {pool}: set rds.pool to the mount point of the \
         storage pool (`/disk print detail where mount-point~\".\"` on the RDS lists them)"
    )]
    NoPool { command: String, pool: String },
    #[error(
        "`{command}` shows {count} disks with slot {slot}, but a slot names one disk: remove the \
         extra disk on the RDS"
    )]
    DuplicateSlot {
        command: String,
        slot: String,
        count: usize,
    },
}

/// What kind of failure an [`RdsError`] is, for callers that map errors to their own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The RDS cannot be reached or refused the connection; retrying later may work.
    Unavailable,
    /// A command did not finish in time; it may or may not have taken effect.
    Timeout,
    NotFound,
    AlreadyExists,
    OutOfSpace,
    /// Another operation holds the item (a copy, a disk on the file) or stopped this one; the
    /// same call succeeds once it is done.
    Busy,
    /// The RDS or the driver's configuration must be fixed by a person.
    Misconfigured,
    /// Anything else: a refused command, unexpected output, a read-back mismatch.
    Internal,
}

impl ErrorKind {
    /// The metric label of this kind.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::OutOfSpace => "out_of_space",
            ErrorKind::Busy => "busy",
            ErrorKind::Misconfigured => "misconfigured",
            ErrorKind::Internal => "internal",
        }
    }
}

impl RdsError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RdsError::Ssh { source, .. } => match source {
                SshError::Timeout { .. } => ErrorKind::Timeout,
                SshError::Connect { .. }
                | SshError::HostKeyMismatch { .. }
                | SshError::Auth { .. }
                | SshError::Disconnected { .. }
                | SshError::CircuitOpen { .. } => ErrorKind::Unavailable,
            },
            RdsError::Ros(error) => match error {
                RosError::NotFound { .. } => ErrorKind::NotFound,
                RosError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
                RosError::OutOfSpace { .. } => ErrorKind::OutOfSpace,
                RosError::Busy { .. } | RosError::Interrupted { .. } => ErrorKind::Busy,
                RosError::Permission { .. } | RosError::Storage { .. } => ErrorKind::Misconfigured,
                RosError::Syntax { .. }
                | RosError::Failure { .. }
                | RosError::Unexpected { .. } => ErrorKind::Internal,
            },
            RdsError::NoDisk { .. } => ErrorKind::NotFound,
            RdsError::Unsupported { .. } | RdsError::NoPool { .. } => ErrorKind::Misconfigured,
            RdsError::Parse { .. }
            | RdsError::ReadBack { .. }
            | RdsError::Subvolume { .. }
            | RdsError::DuplicateSlot { .. } => ErrorKind::Internal,
        }
    }

    /// True when RouterOS answered and refused the command (a `failure: …` or a syntax error):
    /// it arrived and changed nothing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            RdsError::Ros(RosError::Failure { .. } | RosError::Syntax { .. })
        )
    }

    /// True for a `failure: …` whose text names no cause the driver recognises.
    pub fn is_unexplained_refusal(&self) -> bool {
        matches!(self, RdsError::Ros(RosError::Failure { .. }))
    }

    /// True when the command may have reached the RDS and taken effect although no answer came
    /// back, so only reading the state tells what happened.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            RdsError::Ssh {
                source: SshError::Timeout { .. } | SshError::Disconnected { .. },
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rds::command::Cmd;
    use crate::rds::error::classify;
    use crate::rds::value::Slot;

    fn ssh(source: SshError) -> RdsError {
        RdsError::Ssh {
            command: "/disk print".into(),
            source,
        }
    }

    #[test]
    fn transport_failures_are_unavailable_or_timeouts() {
        let addr = String::from("10.0.0.5:22");
        let timeout = ssh(SshError::Timeout {
            addr: addr.clone(),
            command: "/disk print".into(),
            after: Duration::from_secs(1),
        });
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
        assert!(timeout.is_ambiguous());
        let lost = ssh(SshError::Disconnected {
            addr: addr.clone(),
            reason: "reset".into(),
        });
        assert_eq!(lost.kind(), ErrorKind::Unavailable);
        assert!(lost.is_ambiguous());
        let refused = ssh(SshError::HostKeyMismatch {
            addr,
            expected: "SHA256:a".into(),
            actual: "SHA256:b".into(),
        });
        assert_eq!(refused.kind(), ErrorKind::Unavailable);
        assert!(!refused.is_ambiguous());
        let message = refused.to_string();
        assert!(
            message.contains("SHA256:a") && message.contains("SHA256:b"),
            "{message}"
        );
    }

    #[test]
    fn routeros_texts_keep_their_meaning() {
        let cmd = Cmd::disk_remove(&Slot::parse("pvc-a").unwrap());
        for (text, kind) in [
            ("no such item", ErrorKind::NotFound),
            ("failure: already have such entry", ErrorKind::AlreadyExists),
            ("failure: not enough space", ErrorKind::OutOfSpace),
            ("not enough permissions (9)", ErrorKind::Misconfigured),
            ("failure: disk is busy", ErrorKind::Busy),
            ("input does not match any value of src", ErrorKind::NotFound),
            ("failure: execution error", ErrorKind::Internal),
        ] {
            let error = RdsError::from(classify(&cmd, text).unwrap());
            assert_eq!(error.kind(), kind, "{text}");
            assert!(!error.is_ambiguous());
        }
    }

    #[test]
    fn an_old_routeros_is_named_with_the_fix() {
        let error = RdsError::Unsupported {
            found: RosVersion::new(7, 20, 8),
        };
        assert_eq!(error.kind(), ErrorKind::Misconfigured);
        let message = error.to_string();
        assert!(
            message.contains("7.20.8") && message.contains("7.21"),
            "{message}"
        );
        assert!(message.contains("upgrade RouterOS"), "{message}");
    }
}

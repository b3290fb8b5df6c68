//! The one place where failures of the layers below become gRPC status codes.

use tonic::Status;

use crate::guard::Busy;
use crate::rds::disk::{ErrorKind, RdsError};
use crate::snapshot::SnapshotError;
use crate::snapshot::verified::Refused;

impl From<RdsError> for Status {
    fn from(error: RdsError) -> Status {
        let message = error.to_string();
        match error.kind() {
            ErrorKind::Unavailable => Status::unavailable(message),
            ErrorKind::Timeout => Status::deadline_exceeded(message),
            ErrorKind::NotFound => Status::not_found(message),
            ErrorKind::AlreadyExists => Status::already_exists(message),
            ErrorKind::OutOfSpace => Status::resource_exhausted(message),
            // The spec's code for "an operation on this item is in progress": retried.
            ErrorKind::Busy => Status::aborted(message),
            ErrorKind::Misconfigured => Status::failed_precondition(message),
            ErrorKind::Internal => Status::internal(message),
        }
    }
}

impl From<SnapshotError> for Status {
    fn from(error: SnapshotError) -> Status {
        match error {
            SnapshotError::Rds(error) => error.into(),
            // Retrying copies again into the disk the copy left.
            incomplete @ SnapshotError::Incomplete { .. } => {
                Status::aborted(incomplete.to_string())
            }
        }
    }
}

/// A method that does not copy data is a fact of the appliance a person must act on.
impl From<Refused> for Status {
    fn from(refused: Refused) -> Status {
        match refused {
            Refused::Rds(error) => error.into(),
            no_data @ Refused::NoData { .. } => Status::failed_precondition(no_data.to_string()),
        }
    }
}

/// The spec's code for "an operation for this volume is already in progress".
impl From<Busy> for Status {
    fn from(busy: Busy) -> Status {
        Status::aborted(busy.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::Code;

    use super::*;
    use crate::rds::command::Cmd;
    use crate::rds::error::classify;
    use crate::rds::ssh::SshError;
    use crate::rds::value::Slot;

    #[test]
    fn each_kind_has_its_code() {
        let cmd = Cmd::disk_remove(&Slot::parse("pvc-a").unwrap());
        let ros = |text| Status::from(RdsError::from(classify(&cmd, text).unwrap())).code();
        assert_eq!(ros("no such item"), Code::NotFound);
        assert_eq!(ros("failure: already have such entry"), Code::AlreadyExists);
        assert_eq!(ros("failure: not enough space"), Code::ResourceExhausted);
        assert_eq!(ros("not enough permissions (9)"), Code::FailedPrecondition);
        assert_eq!(ros("failure: something else"), Code::Internal);
        // Retried by the sidecars: the source gone, a copy in the way.
        assert_eq!(ros("input does not match any value of src"), Code::NotFound);
        assert_eq!(
            ros("failure: pvc-a is busy with another copy"),
            Code::Aborted
        );
        assert_eq!(
            ros("failure: no such mount point"),
            Code::FailedPrecondition
        );
        let ssh = |source| {
            Status::from(RdsError::Ssh {
                command: "x".into(),
                source,
            })
        };
        let open = ssh(SshError::CircuitOpen {
            addr: "rds:22".into(),
            failures: 5,
            retry_in: Duration::from_secs(3),
            last_error: "refused".into(),
        });
        assert_eq!(open.code(), Code::Unavailable);
        assert!(open.message().contains("rds:22"), "{}", open.message());
        let slow = ssh(SshError::Timeout {
            addr: "rds:22".into(),
            command: "x".into(),
            after: Duration::from_secs(30),
        });
        assert_eq!(slow.code(), Code::DeadlineExceeded);
        assert_eq!(Status::from(Busy("pvc-a".into())).code(), Code::Aborted);
    }
}

#[cfg(test)]
mod table;

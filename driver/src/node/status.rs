//! The one place where host failures become gRPC status codes.

use tonic::Status;

use super::host::HostError;

impl From<HostError> for Status {
    fn from(error: HostError) -> Status {
        let message = error.to_string();
        match error {
            HostError::BadTarget(_) => Status::invalid_argument(message),
            HostError::BackingFileMissing(_) | HostError::Gone(_) => Status::not_found(message),
            HostError::NoFabrics(_)
            | HostError::ForeignData { .. }
            | HostError::FsMismatch { .. } => Status::failed_precondition(message),
            HostError::DeviceTimeout { .. } => Status::unavailable(message),
            HostError::Timeout { .. } => Status::deadline_exceeded(message),
            HostError::Io { .. } | HostError::Command { .. } => Status::internal(message),
        }
    }
}

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::Output;

/// What went wrong with a QEMU guest. [`GuestError::Unavailable`] means this machine cannot run one at
/// all (tests may skip outside CI); every other variant is a failure of the guest or of the code under test.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("a QEMU guest cannot run on this machine: {0}")]
    Unavailable(String),

    #[error("extra file {host} for guest path {guest:?}: {reason}")]
    ExtraFile {
        host: PathBuf,
        guest: String,
        reason: String,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("the guest did not boot: {reason}\n{diagnostics}")]
    Boot { reason: String, diagnostics: String },

    #[error("guest command {command:?} gave no answer within {timeout:?}\n{diagnostics}")]
    Timeout {
        command: String,
        timeout: Duration,
        diagnostics: String,
    },

    #[error("the guest went away while running {command:?}\n{diagnostics}")]
    Gone {
        command: String,
        diagnostics: String,
    },

    #[error("garbled answer from the guest agent: {0}")]
    Protocol(String),

    #[error(
        "guest command {command:?} exited with status {}\n--- stdout ---\n{}--- stderr ---\n{}",
        output.rc, output.stdout, output.stderr
    )]
    CommandFailed { command: String, output: Output },
}

impl GuestError {
    pub(super) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

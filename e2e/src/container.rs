//! rds-sim in a container, as an RDS on a network of its own: started, restarted, killed and cut
//! off by the `testcontainers` crate (through the Docker engine `ci/docker.sh` starts), so the
//! resilience suite's outages are the ones a real RDS has: a reboot drops every connection and
//! comes back with the state on its disk, a partition leaves the far end silent.

pub mod engine;
pub mod image;
pub mod rds;
pub mod rig;

/// Why the container could not be had or handled.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No engine here: a suite says so, and fails under `CI=true`.
    #[error("no Docker engine for the rds-sim container: {0}")]
    Unavailable(String),
    #[error("the rds-sim image: {0}")]
    Image(String),
    #[error("the Docker engine refused {what}: {source}")]
    Engine {
        what: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("rds-sim's control API at {addr}: {reason}")]
    Control { addr: String, reason: String },
    #[error("{0}")]
    Setup(String),
}

impl ContainerError {
    /// Why a test may skip rather than fail: no engine on this machine, outside CI.
    pub fn skip_reason(&self) -> Option<String> {
        match self {
            ContainerError::Unavailable(reason) if std::env::var("CI").as_deref() != Ok("true") => {
                Some(format!("{reason} (CI=true makes this fatal)"))
            }
            _ => None,
        }
    }
}

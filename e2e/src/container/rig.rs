//! The rds-sim container as the RDS of a [`KernelNodeRig`](crate::qemu::kernel_node::KernelNodeRig):
//! the controller on the host and the guest's kernel both reach it at its address.

use std::path::Path;

use super::ContainerError;
use super::rds::RdsContainer;
use crate::qemu::kernel_node::RigRds;

/// The container and the runtime the host's side runs on (the controller, the engine's calls).
pub struct ContainerRds {
    runtime: tokio::runtime::Runtime,
    rds: Option<RdsContainer>,
}

impl ContainerRds {
    /// Starts rds-sim's container with its data and keys under `dir`.
    pub fn start(dir: &Path) -> Result<ContainerRds, ContainerError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ContainerError::Setup(format!("a tokio runtime: {e}")))?;
        let rds = runtime.block_on(RdsContainer::start(dir))?;
        Ok(ContainerRds {
            runtime,
            rds: Some(rds),
        })
    }

    pub fn rds(&self) -> &RdsContainer {
        self.rds.as_ref().expect("present until dropped")
    }
}

impl RigRds for ContainerRds {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    fn rds_table(&self) -> toml::Table {
        self.rds().rds_config()
    }

    fn shutdown(self) {}
}

impl Drop for ContainerRds {
    fn drop(&mut self) {
        // testcontainers removes a container from its drop through the current runtime.
        let _inside = self.runtime.enter();
        drop(self.rds.take());
    }
}

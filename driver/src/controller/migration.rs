//! KubeVirt live migration: the one time a volume is published to two nodes. The Kubernetes side
//! (`crate::kubernetes::migration`) fills [`Migrations`] in every controller replica from the
//! VirtualMachineInstanceMigrations and VirtualMachineInstances the API server shows, so a
//! ControllerPublishVolume to the migration's target is allowed whichever replica serves it, and
//! only while the migration runs within its StorageClass's `migrationTimeoutSeconds`.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

/// A live migration in progress of the VMI that uses a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The VirtualMachineInstanceMigration, as `<namespace>/<name>`.
    pub migration: String,
    /// The VirtualMachineInstance, as `<namespace>/<name>`.
    pub vmi: String,
    /// The host NQNs (CSI node ids) of the nodes it migrates from and to, once KubeVirt names
    /// them and their CSINodes are known.
    pub source: Option<String>,
    pub target: Option<String>,
    /// The StorageClass's `migrationTimeoutSeconds`.
    pub timeout: Duration,
    /// The migration has run longer than `timeout`: its second attachment is refused.
    pub expired: bool,
}

/// The migrations in progress, by volume id.
#[derive(Debug, Default)]
pub struct Migrations(RwLock<BTreeMap<String, Window>>);

impl Migrations {
    /// Replaces the whole set with what the API server shows now.
    pub fn replace(&self, windows: BTreeMap<String, Window>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = windows;
    }

    pub fn get(&self, volume_id: &str) -> Option<Window> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(volume_id)
            .cloned()
    }
}

impl super::ControllerService {
    /// The registry of live migrations that publishing consults.
    pub fn migrations(&self) -> &Migrations {
        &self.migrations
    }
}

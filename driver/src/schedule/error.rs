//! What can go wrong in a run, each naming the object and what to do about it.

use std::fmt;

use super::settings::{ScheduleName, Scope};

/// A failed Kubernetes API call, shown as the API server's own message plus a hint where the
/// usual cause is known.
#[derive(Debug)]
pub struct ApiFailure(pub kube::Error);

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kube::Error::Api(status) = &self.0 else {
            return write!(f, "{}", self.0);
        };
        write!(f, "{} (HTTP {}", status.message, status.code)?;
        if !status.reason.is_empty() {
            write!(f, " {}", status.reason)?;
        }
        f.write_str(")")?;
        let names_an_object = status.details.as_ref().is_some_and(|d| !d.name.is_empty());
        if status.is_forbidden() {
            f.write_str("; give the job's ServiceAccount this permission (the chart's snapshot-schedule Role lists what a run needs)")?;
        } else if status.code == 404 && !names_an_object {
            f.write_str("; the API server does not serve this resource: are the snapshot.storage.k8s.io/v1 CRDs installed?")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cannot list the PersistentVolumeClaims matching {selector:?} {scope}: {source}")]
    ListClaims {
        scope: Scope,
        selector: String,
        source: ApiFailure,
    },
    #[error("PersistentVolumeClaim {namespace}/{name} does not exist; correct --pvc or create it")]
    ClaimNotFound { namespace: String, name: String },
    #[error("cannot read PersistentVolumeClaim {namespace}/{name}: {source}")]
    GetClaim {
        namespace: String,
        name: String,
        source: ApiFailure,
    },
    #[error("cannot create VolumeSnapshot {namespace}/{name} of PVC {pvc}: {source}")]
    Create {
        namespace: String,
        name: String,
        pvc: String,
        source: ApiFailure,
    },
    #[error(
        "VolumeSnapshot {namespace}/{name} already exists but is not schedule {schedule}'s snapshot of PVC {pvc}; rename or delete it, or give this schedule another --schedule name"
    )]
    NameTaken {
        namespace: String,
        name: String,
        pvc: String,
        schedule: ScheduleName,
    },
    #[error("cannot list the VolumeSnapshots of schedule {schedule} {scope}: {source}")]
    ListSnapshots {
        schedule: ScheduleName,
        scope: Scope,
        source: ApiFailure,
    },
    #[error("cannot delete VolumeSnapshot {namespace}/{name}: {source}")]
    Delete {
        namespace: String,
        name: String,
        source: ApiFailure,
    },
}

//! The Kubernetes calls of a run, and nothing else: PVCs are read with the typed k8s-openapi
//! API, VolumeSnapshots (a CRD) through kube's dynamic objects.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
    Preconditions,
};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::error::{ApiFailure, ScheduleError};
use super::naming::{SLOT_ANNOTATION, is_owned, owned_labels, owned_selector, snapshot_name};
use super::retention::OwnedSnapshot;
use super::settings::{Schedule, ScheduleName, Scope};

/// A PVC as a run needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub namespace: String,
    pub name: String,
    /// `status.phase`; a snapshot can only be taken of a `Bound` claim.
    pub phase: Option<String>,
    pub deleting: bool,
}

impl Claim {
    fn from_object(pvc: PersistentVolumeClaim, fallback_namespace: &str) -> Self {
        Claim {
            namespace: pvc
                .namespace()
                .unwrap_or_else(|| fallback_namespace.to_owned()),
            name: pvc.name_any(),
            phase: pvc.status.and_then(|s| s.phase),
            deleting: pvc.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// What a create found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    Created,
    /// An earlier run in the same slot made it.
    AlreadyThere,
}

/// The API server a run talks to.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    volume_snapshots: ApiResource,
}

impl Cluster {
    pub fn new(client: Client) -> Self {
        let gvk = GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot");
        Cluster {
            client,
            volume_snapshots: ApiResource::from_gvk_with_plural(&gvk, "volumesnapshots"),
        }
    }

    /// The namespace of the kubeconfig context, or of the pod running in a cluster.
    pub fn default_namespace(&self) -> &str {
        self.client.default_namespace()
    }

    fn snapshots(&self, scope: &Scope) -> Api<DynamicObject> {
        match scope {
            Scope::Namespace(ns) => {
                Api::namespaced_with(self.client.clone(), ns, &self.volume_snapshots)
            }
            Scope::AllNamespaces => Api::all_with(self.client.clone(), &self.volume_snapshots),
        }
    }

    pub(super) async fn list_claims(
        &self,
        scope: &Scope,
        selector: &str,
    ) -> Result<Vec<Claim>, ScheduleError> {
        let api: Api<PersistentVolumeClaim> = match scope {
            Scope::Namespace(ns) => Api::namespaced(self.client.clone(), ns),
            Scope::AllNamespaces => Api::all(self.client.clone()),
        };
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| ScheduleError::ListClaims {
                scope: scope.clone(),
                selector: selector.to_owned(),
                source: ApiFailure(e),
            })?;
        let fallback = self.default_namespace();
        Ok(list
            .items
            .into_iter()
            .map(|pvc| Claim::from_object(pvc, fallback))
            .collect())
    }

    pub(super) async fn get_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Claim, ScheduleError> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        match api.get(name).await {
            Ok(pvc) => Ok(Claim::from_object(pvc, namespace)),
            Err(kube::Error::Api(status)) if status.is_not_found() => {
                Err(ScheduleError::ClaimNotFound {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
            }
            Err(e) => Err(ScheduleError::GetClaim {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source: ApiFailure(e),
            }),
        }
    }

    /// Creates the slot's snapshot of `claim`, complete with its labels in the one request. A
    /// name already taken is accepted only when it is this schedule's snapshot of this PVC.
    pub(super) async fn create_snapshot(
        &self,
        claim: &Claim,
        schedule: &Schedule,
        slot: Timestamp,
    ) -> Result<(String, Creation), ScheduleError> {
        let name = snapshot_name(&claim.name, &schedule.name, slot);
        let mut object = DynamicObject::new(&name, &self.volume_snapshots)
            .within(&claim.namespace)
            .data(json!({
                "spec": {
                    "volumeSnapshotClassName": schedule.volume_snapshot_class,
                    "source": { "persistentVolumeClaimName": claim.name },
                }
            }));
        object.metadata.labels = Some(owned_labels(&schedule.name));
        object.metadata.annotations = Some(BTreeMap::from([(
            SLOT_ANNOTATION.to_owned(),
            slot.to_string(),
        )]));
        let scope = Scope::Namespace(claim.namespace.clone());
        match self
            .snapshots(&scope)
            .create(&PostParams::default(), &object)
            .await
        {
            Ok(_) => Ok((name, Creation::Created)),
            Err(kube::Error::Api(status)) if status.is_already_exists() => {
                let ours = self
                    .list_owned(&scope, &schedule.name)
                    .await?
                    .into_iter()
                    .any(|s| s.name == name && s.pvc == claim.name);
                if ours {
                    Ok((name, Creation::AlreadyThere))
                } else {
                    Err(ScheduleError::NameTaken {
                        namespace: claim.namespace.clone(),
                        name,
                        pvc: claim.name.clone(),
                        schedule: schedule.name.clone(),
                    })
                }
            }
            Err(e) => Err(ScheduleError::Create {
                namespace: claim.namespace.clone(),
                name,
                pvc: claim.name.clone(),
                source: ApiFailure(e),
            }),
        }
    }

    /// The schedule's own snapshots. The labels are checked again here, so nothing the server
    /// returns without them can reach retention.
    pub(super) async fn list_owned(
        &self,
        scope: &Scope,
        schedule: &ScheduleName,
    ) -> Result<Vec<OwnedSnapshot>, ScheduleError> {
        let list = self
            .snapshots(scope)
            .list(&ListParams::default().labels(&owned_selector(schedule)))
            .await
            .map_err(|e| ScheduleError::ListSnapshots {
                schedule: schedule.clone(),
                scope: scope.clone(),
                source: ApiFailure(e),
            })?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|object| owned_snapshot(object, schedule))
            .collect())
    }

    /// Deletes `snapshot` if it is still the same object (by UID). `false`: it was gone already.
    pub(super) async fn delete_snapshot(
        &self,
        snapshot: &OwnedSnapshot,
    ) -> Result<bool, ScheduleError> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(snapshot.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let scope = Scope::Namespace(snapshot.namespace.clone());
        match self.snapshots(&scope).delete(&snapshot.name, &params).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
            Err(e) => Err(ScheduleError::Delete {
                namespace: snapshot.namespace.clone(),
                name: snapshot.name.clone(),
                source: ApiFailure(e),
            }),
        }
    }
}

/// `None` for anything retention must not touch: not ours, or without a source PVC, UID or
/// creation time (none of which a real API server leaves out of a stored snapshot).
fn owned_snapshot(object: DynamicObject, schedule: &ScheduleName) -> Option<OwnedSnapshot> {
    if !is_owned(object.labels(), schedule) {
        return None;
    }
    let pvc = object.data["spec"]["source"]["persistentVolumeClaimName"].as_str()?;
    let metadata = &object.metadata;
    Some(OwnedSnapshot {
        namespace: metadata.namespace.clone()?,
        name: metadata.name.clone()?,
        uid: metadata.uid.clone()?,
        pvc: pvc.to_owned(),
        created: metadata.creation_timestamp.as_ref()?.0,
        ready: object.data["status"]["readyToUse"] == true,
        deleting: metadata.deletion_timestamp.is_some(),
    })
}

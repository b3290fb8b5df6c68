//! The controller's notices (a refused attach, the RDS unreachable, a refused snapshot) as
//! Events on the object concerned, in its namespace.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc;

use super::events::Events;
use crate::controller::notices::{About, Notice};

/// Records every notice until the controller is dropped.
pub async fn record(
    mut notices: mpsc::Receiver<Notice>,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    events: Arc<Events>,
) {
    while let Some(notice) = notices.recv().await {
        let Some(regarding) = reference(&notice.about, &claims, &volumes) else {
            tracing::debug!(?notice.about, "no object to record a notice on");
            continue;
        };
        events.warning(&regarding, notice.reason, notice.note).await;
    }
}

/// The object an Event about `about` goes on: a volume's claim through its PV.
fn reference(
    about: &About,
    claims: &Store<PersistentVolumeClaim>,
    volumes: &Store<PersistentVolume>,
) -> Option<ObjectReference> {
    let (kind, namespace, name) = match about {
        About::Volume(id) => {
            let claim = volumes.state().into_iter().find_map(|pv| {
                let spec = pv.spec.as_ref()?;
                (&spec.csi.as_ref()?.volume_handle == id).then(|| spec.claim_ref.clone())?
            })?;
            ("PersistentVolumeClaim", claim.namespace?, claim.name?)
        }
        About::Object {
            kind,
            namespace,
            name,
        } => (*kind, namespace.clone(), name.clone()),
    };
    if kind == "PersistentVolumeClaim" {
        let claim = claims
            .state()
            .into_iter()
            .find(|c| c.namespace().as_deref() == Some(namespace.as_str()) && c.name_any() == name);
        if let Some(claim) = claim {
            return Some(claim.object_ref(&()));
        }
    }
    Some(ObjectReference {
        api_version: Some(
            match kind {
                "VolumeSnapshot" => "snapshot.storage.k8s.io/v1",
                _ => "v1",
            }
            .to_owned(),
        ),
        kind: Some(kind.to_owned()),
        namespace: Some(namespace),
        name: Some(name),
        ..ObjectReference::default()
    })
}

//! The volume manager's part in volume expansion: once external-resizer has grown the volume
//! and left FileSystemResizePending on its claim, NodeExpandVolume on the node, then the claim's
//! status as kubelet's `MarkFSResizeFinished` leaves it.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tokio::time::Instant;

use super::volume::{CsiVolume, quantity_bytes};
use super::volume_manager::VolumeManager;

/// The condition external-resizer leaves on a claim whose file system the node must grow.
const RESIZE_PENDING: &str = "FileSystemResizePending";

impl VolumeManager {
    /// NodeExpandVolume for published volumes whose claim has FileSystemResizePending, then the
    /// claim's status: the PV's capacity, the condition gone (kubelet's `MarkFSResizeFinished`).
    pub(super) async fn expand(&mut self) {
        if !self.ops.capabilities.expand {
            return;
        }
        let mounted = self.mounted.lock().expect("mounted").clone();
        let mut seen = BTreeSet::new();
        for ((uid, _), m) in mounted {
            let (namespace, name) = &m.volume.claim;
            let Some(claim) = self
                .stores
                .claims
                .get(&ObjectRef::new(name).within(namespace))
            else {
                continue;
            };
            let pending = claim
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == RESIZE_PENDING));
            let operation = format!("expand/{}", m.volume.handle);
            if !pending
                || !seen.insert(m.volume.handle.clone())
                || !self.backoff.may_run(&operation, Instant::now())
            {
                continue;
            }
            let pod = self
                .stores
                .pods
                .get(&ObjectRef::new(&m.pod).within(&m.namespace));
            match self.expand_one(&uid, &m.volume, &claim).await {
                Ok(()) => self.backoff.succeeded(&operation),
                Err(e) => {
                    self.failed(&operation, pod.as_ref(), "VolumeResizeFailed", &e)
                        .await;
                }
            }
        }
    }

    async fn expand_one(
        &self,
        uid: &str,
        volume: &CsiVolume,
        claim: &PersistentVolumeClaim,
    ) -> anyhow::Result<()> {
        let pv = Api::<PersistentVolume>::all(self.client.clone())
            .get(&volume.pv)
            .await?;
        let capacity = pv
            .spec
            .and_then(|s| s.capacity)
            .and_then(|c| c.get("storage").cloned())
            .ok_or_else(|| anyhow::anyhow!("PV {} has no storage capacity", volume.pv))?;
        let bytes = quantity_bytes(&capacity.0)
            .ok_or_else(|| anyhow::anyhow!("PV {} capacity {:?}", volume.pv, capacity.0))?;
        self.ops.expand(uid, volume, bytes).await?;
        let conditions: Vec<_> = claim
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ != RESIZE_PENDING)
            .collect();
        let patch = json!({"status": {
            "capacity": {"storage": capacity},
            "conditions": conditions,
            "allocatedResourceStatuses": {"storage": null},
        }});
        let (namespace, name) = &volume.claim;
        Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }
}

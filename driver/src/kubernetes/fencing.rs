//! Node failure: a lost node is fenced on the RDS, then its volumes are let go so that they can
//! attach elsewhere (docs/operations.md, "A node is lost: node failure and fencing").
//!
//! Each pass plans from what the API server shows ([`plan`], pure) and then acts
//! ([`Fencing::apply`]); nothing is kept between passes but the API's and the RDS's own state,
//! so a restarted controller carries on where the last one stopped. For a lost node, in order:
//! 1. the Node gets the annotation `<driver>/fenced-host`: from then on no controller replica
//!    publishes a volume to it;
//! 2. every volume published to its host NQN is fenced on the RDS (allow-list to no host, export
//!    ended and made again, read back): the node can no longer read or write them, even if it
//!    comes back;
//! 3. its terminating Pods whose claims are all this driver's are deleted for good (a lost
//!    kubelet never confirms a deletion, and the attach-detach controller keeps a volume attached
//!    while a Pod using it exists);
//! 4. its VolumeAttachments of this driver that no live Pod there needs are deleted. The
//!    external-attacher answers the deletion with ControllerUnpublishVolume (the volume is fenced
//!    already, so that changes nothing), and the attach-detach controller's next sync of attached
//!    volumes finds the attachment gone and lets the volume attach to another node, without its
//!    six-minute wait for an unhealthy node.
//!
//! The fence is lifted (the annotation removed) only once the Node is Ready again and none of
//! this driver's VolumeAttachments to it is attached.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::events::Events;
use super::health::{Health, health, node_id};
use crate::controller::ControllerService;
use crate::controller::fence::FencedNode;
use crate::rds::value::Nqn;

/// What the API server shows, as one pass reads it.
#[derive(Default)]
pub struct Seen {
    pub nodes: Vec<Arc<Node>>,
    pub attachments: Vec<Arc<VolumeAttachment>>,
    pub pods: Vec<Arc<Pod>>,
    pub claims: Vec<Arc<PersistentVolumeClaim>>,
    pub volumes: Vec<Arc<PersistentVolume>>,
}

/// What one pass does about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePlan {
    Lost {
        node: String,
        host: String,
        why: String,
        /// The Node carries the annotation already.
        marked: bool,
        /// Terminating pods to delete for good, as (namespace, name).
        pods: Vec<(String, String)>,
        /// VolumeAttachments to delete, as (name, volume handle).
        attachments: Vec<(String, String)>,
    },
    /// The Node object is deleted, its attachments are not: the hosts on these volumes'
    /// allow-lists that no existing Node claims are fenced, then the attachments no Pod on the
    /// node uses any more (the pod garbage collector deletes them) are deleted.
    Gone {
        node: String,
        volumes: Vec<String>,
        attachments: Vec<(String, String)>,
    },
    Unfence {
        node: String,
    },
}

/// The annotation that records a fence on a Node: its value is the host NQN.
pub fn fenced_annotation(driver: &str) -> String {
    format!("{driver}/fenced-host")
}

/// Why a node is fenced, next to [`fenced_annotation`].
fn reason_annotation(driver: &str) -> String {
    format!("{driver}/fenced-reason")
}

/// The fenced nodes the Nodes' annotations record, by host NQN.
pub fn fenced_nodes(nodes: &[Arc<Node>], driver: &str) -> BTreeMap<String, FencedNode> {
    let (host_key, why_key) = (fenced_annotation(driver), reason_annotation(driver));
    nodes
        .iter()
        .filter_map(|node| {
            let annotations = node.metadata.annotations.as_ref()?;
            let host = annotations.get(&host_key)?;
            let why = annotations
                .get(&why_key)
                .cloned()
                .unwrap_or_else(|| "it was lost".to_owned());
            Some((
                host.clone(),
                FencedNode {
                    node: node.name_any(),
                    why,
                },
            ))
        })
        .collect()
}

/// This driver's VolumeAttachments that are attached.
pub fn attached(seen: &Seen, driver: &str) -> usize {
    seen.attachments
        .iter()
        .filter(|va| va.spec.attacher == driver && va.status.as_ref().is_some_and(|s| s.attached))
        .count()
}

/// The steps of one pass.
pub fn plan(seen: &Seen, driver: &str, now: Timestamp, grace: Duration) -> Vec<NodePlan> {
    let ours: Vec<&VolumeAttachment> = seen
        .attachments
        .iter()
        .map(Arc::as_ref)
        .filter(|va| va.spec.attacher == driver)
        .collect();
    let handles = volume_handles(seen, driver);
    let host_key = fenced_annotation(driver);
    let mut plans = Vec::new();
    for node in &seen.nodes {
        let name = node.name_any();
        let marked = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(&host_key))
            .cloned();
        let on_node: Vec<&VolumeAttachment> = ours
            .iter()
            .copied()
            .filter(|va| va.spec.node_name == name)
            .collect();
        match health(node, now, grace) {
            Health::Lost(why) => {
                let Some(host) = node_id(node, driver).or(marked.clone()) else {
                    continue;
                };
                let used = used_volumes(seen, &name);
                let attachments = on_node
                    .iter()
                    .filter(|va| va.metadata.deletion_timestamp.is_none())
                    .filter_map(|va| {
                        let pv = va.spec.source.persistent_volume_name.as_ref()?;
                        (!used.contains(pv))
                            .then(|| Some((va.name_any(), handles.get(pv)?.clone())))?
                    })
                    .collect();
                plans.push(NodePlan::Lost {
                    pods: stuck_pods(seen, &name, &handles),
                    node: name,
                    host,
                    why,
                    marked: marked.is_some(),
                    attachments,
                });
            }
            Health::Ready if marked.is_some() => {
                let attached = on_node
                    .iter()
                    .any(|va| va.status.as_ref().is_some_and(|s| s.attached));
                if !attached {
                    plans.push(NodePlan::Unfence { node: name });
                }
            }
            Health::Ready | Health::Alive => {}
        }
    }
    let names: BTreeSet<String> = seen.nodes.iter().map(|n| n.name_any()).collect();
    let mut gone: BTreeMap<String, NodePlan> = BTreeMap::new();
    for va in ours.iter().filter(|va| !names.contains(&va.spec.node_name)) {
        let node = &va.spec.node_name;
        let Some(pv) = va.spec.source.persistent_volume_name.as_ref() else {
            continue;
        };
        let Some(handle) = handles.get(pv) else {
            continue;
        };
        let NodePlan::Gone {
            volumes,
            attachments,
            ..
        } = gone.entry(node.clone()).or_insert_with(|| NodePlan::Gone {
            node: node.clone(),
            volumes: Vec::new(),
            attachments: Vec::new(),
        })
        else {
            unreachable!("only Gone plans are made here");
        };
        volumes.push(handle.clone());
        // Pods of a deleted Node still count until the pod garbage collector removes them:
        // while one exists the attach-detach controller wants the volume there.
        let in_use = seen
            .pods
            .iter()
            .filter(|pod| on(pod, node))
            .any(|pod| pod_volumes(seen, pod).contains(pv));
        if va.metadata.deletion_timestamp.is_none() && !in_use {
            attachments.push((va.name_any(), handle.clone()));
        }
    }
    plans.extend(gone.into_values());
    plans
}

/// The volume handle of each of this driver's PersistentVolumes, by PV name.
fn volume_handles(seen: &Seen, driver: &str) -> BTreeMap<String, String> {
    seen.volumes
        .iter()
        .filter_map(|pv| {
            let csi = pv.spec.as_ref()?.csi.as_ref()?;
            (csi.driver == driver).then(|| (pv.name_any(), csi.volume_handle.clone()))
        })
        .collect()
}

/// The PVs that a live Pod (not being deleted, not finished) on `node` uses.
fn used_volumes(seen: &Seen, node: &str) -> BTreeSet<String> {
    seen.pods
        .iter()
        .filter(|pod| on(pod, node) && !ending(pod))
        .flat_map(|pod| pod_volumes(seen, pod))
        .collect()
}

/// Terminating pods on `node` whose claims are all bound to PVs in `handles`, this driver's (and
/// that have at least one): with the node fenced, nothing of theirs can still be written.
fn stuck_pods(
    seen: &Seen,
    node: &str,
    handles: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    seen.pods
        .iter()
        .filter(|pod| on(pod, node) && pod.metadata.deletion_timestamp.is_some())
        .filter(|pod| {
            let claims = pod_claims(pod);
            let volumes = pod_volumes(seen, pod);
            !claims.is_empty()
                && volumes.len() == claims.len()
                && volumes.iter().all(|pv| handles.contains_key(pv))
        })
        .map(|pod| (pod.namespace().unwrap_or_default(), pod.name_any()))
        .collect()
}

fn on(pod: &Pod, node: &str) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
}

fn ending(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// The claims a pod names: its PVC volumes and its generic ephemeral volumes' claims.
fn pod_claims(pod: &Pod) -> Vec<String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| {
            if let Some(claim) = &v.persistent_volume_claim {
                Some(claim.claim_name.clone())
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{}-{}", pod.name_any(), v.name))
            }
        })
        .collect()
}

/// The PVs bound to the claims a pod names.
fn pod_volumes(seen: &Seen, pod: &Pod) -> BTreeSet<String> {
    let namespace = pod.namespace();
    pod_claims(pod)
        .iter()
        .filter_map(|claim| {
            seen.claims
                .iter()
                .find(|c| c.namespace() == namespace && &c.name_any() == claim)?
                .spec
                .as_ref()?
                .volume_name
                .clone()
        })
        .collect()
}

/// Carries out plans against the API server and the RDS.
pub struct Fencing {
    pub client: Client,
    pub driver: String,
    pub controller: Arc<ControllerService>,
    pub events: Arc<Events>,
}

impl Fencing {
    /// One pass's plans; a failed step is logged and the node's remaining steps wait for the
    /// next pass (each step is safe to repeat).
    pub async fn apply(&self, seen: &Seen, plans: Vec<NodePlan>) {
        for plan in plans {
            let node = match &plan {
                NodePlan::Lost { node, .. }
                | NodePlan::Gone { node, .. }
                | NodePlan::Unfence { node } => node.clone(),
            };
            if let Err(error) = self.apply_one(seen, plan).await {
                tracing::warn!(
                    node,
                    error = format!("{error:#}"),
                    "fencing step failed; retrying on the next pass"
                );
            }
        }
    }

    async fn apply_one(&self, seen: &Seen, plan: NodePlan) -> anyhow::Result<()> {
        match plan {
            NodePlan::Lost {
                node,
                host,
                why,
                marked,
                pods,
                attachments,
            } => {
                if !marked {
                    self.mark(&node, Some((&host, &why))).await?;
                    tracing::warn!(node, host, why, "fencing a lost node");
                }
                let fenced = self.fence_host(&host).await?;
                let reference = node_reference(&node);
                // Said once, when the node is marked, and again whenever a pass finds volumes
                // still published to it (Kubernetes may have detached them itself first).
                if !marked || !fenced.is_empty() {
                    self.events
                        .warning(
                            &reference,
                            "NodeFenced",
                            format!(
                                "{why}: its host {host} was fenced out of {} volume(s) on the RDS \
                                 (allow-list emptied, connections ended), so they can attach to \
                                 other nodes",
                                fenced.len()
                            ),
                        )
                        .await;
                }
                self.volumes_fenced(seen, &node, &why, &fenced).await;
                for (namespace, name) in pods {
                    self.remove_pod(&namespace, &name, &node).await?;
                }
                self.clear(seen, &node, attachments).await
            }
            NodePlan::Gone {
                node,
                volumes,
                attachments,
            } => {
                let known: BTreeSet<String> = seen
                    .nodes
                    .iter()
                    .filter_map(|n| node_id(n, &self.driver))
                    .collect();
                for volume in &volumes {
                    let hosts = self.controller.published_hosts(volume).await?;
                    for host in hosts.iter().filter(|h| !known.contains(*h)) {
                        tracing::warn!(node, host, "fencing the host of a deleted node");
                        let fenced = self.fence_host(host).await?;
                        let why = "its Node was deleted";
                        self.volumes_fenced(seen, &node, why, &fenced).await;
                    }
                }
                self.clear(seen, &node, attachments).await
            }
            NodePlan::Unfence { node } => {
                self.mark(&node, None).await?;
                self.events
                    .normal(
                        &node_reference(&node),
                        "NodeUnfenced",
                        "the node is Ready again and none of its old attachments is left: \
                         volumes may be published to it again"
                            .to_owned(),
                    )
                    .await;
                tracing::info!(node, "lifted the fence of a node that is Ready again");
                Ok(())
            }
        }
    }

    /// A `VolumeFenced` Event on the claim of each volume in `fenced`.
    async fn volumes_fenced(&self, seen: &Seen, node: &str, why: &str, fenced: &[String]) {
        for volume in fenced {
            if let Some(claim) = claim_of(seen, volume) {
                self.events
                    .warning(
                        &claim,
                        "VolumeFenced",
                        format!(
                            "node {node} is lost ({why}); volume {volume} was fenced there on \
                             the RDS and can attach to another node"
                        ),
                    )
                    .await;
            }
        }
    }

    async fn fence_host(&self, host: &str) -> anyhow::Result<Vec<String>> {
        let host = Nqn::parse(host)?;
        let fenced = self.controller.fence_host(&host).await?;
        crate::metrics::fenced_volumes(fenced.len());
        Ok(fenced)
    }

    /// Sets (`Some`) or removes (`None`) the fence annotations of `node`.
    async fn mark(&self, node: &str, fence: Option<(&str, &str)>) -> anyhow::Result<()> {
        let (host, why) = fence.unzip();
        let patch = json!({"metadata": {"annotations": {
            fenced_annotation(&self.driver): host,
            reason_annotation(&self.driver): why,
        }}});
        Api::<Node>::all(self.client.clone())
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    async fn remove_pod(&self, namespace: &str, name: &str, node: &str) -> anyhow::Result<()> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), namespace);
        match pods
            .delete(name, &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => {
                tracing::warn!(
                    namespace,
                    name,
                    node,
                    "deleted a terminating pod of a fenced node for good"
                );
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn clear(
        &self,
        seen: &Seen,
        node: &str,
        attachments: Vec<(String, String)>,
    ) -> anyhow::Result<()> {
        let api = Api::<VolumeAttachment>::all(self.client.clone());
        for (name, volume) in attachments {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => continue,
                Err(e) => return Err(e.into()),
            }
            tracing::warn!(
                attachment = name,
                node,
                volume,
                "deleted a stale VolumeAttachment of a fenced node"
            );
            if let Some(claim) = claim_of(seen, &volume) {
                self.events
                    .normal(
                        &claim,
                        "StaleAttachmentRemoved",
                        format!(
                            "the VolumeAttachment {name} of fenced node {node} was deleted so the \
                             volume can attach elsewhere"
                        ),
                    )
                    .await;
            }
        }
        Ok(())
    }
}

fn node_reference(node: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Node".to_owned()),
        name: Some(node.to_owned()),
        ..ObjectReference::default()
    }
}

/// The claim bound to the PV whose volume handle is `volume`.
fn claim_of(seen: &Seen, volume: &str) -> Option<ObjectReference> {
    let claim = seen.volumes.iter().find_map(|pv| {
        let spec = pv.spec.as_ref()?;
        (spec.csi.as_ref()?.volume_handle == volume).then_some(spec.claim_ref.as_ref()?)
    })?;
    let pvc = seen
        .claims
        .iter()
        .find(|c| c.namespace() == claim.namespace && Some(c.name_any()) == claim.name)?;
    Some(pvc.object_ref(&()))
}

#[cfg(test)]
mod tests;

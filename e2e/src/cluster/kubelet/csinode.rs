//! The driver's registration on the node, as node-driver-registrar and kubelet's
//! `nodeinfomanager` do it: NodeGetInfo, then the CSINode's driver entry, the node's topology
//! labels and its `csi.volume.kubernetes.io/nodeid` annotation.

use std::collections::BTreeMap;

use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::{CSINode, CSINodeDriver, CSINodeSpec, VolumeNodeResources};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rds_csi::csi::v1::NodeGetInfoRequest;
use rds_csi::csi::v1::node_client::NodeClient;
use serde_json::json;
use tonic::transport::Channel;

/// The annotation that maps each driver on the node to its node ID.
pub const NODE_ID_ANNOTATION: &str = "csi.volume.kubernetes.io/nodeid";

/// Registers `driver` on Node `node` with what its node plugin reports; returns the node ID.
pub async fn register_driver(
    client: &Client,
    node: &str,
    driver: &str,
    csi: &mut NodeClient<Channel>,
) -> anyhow::Result<String> {
    let info = csi
        .node_get_info(NodeGetInfoRequest {})
        .await
        .with_context(|| format!("NodeGetInfo of {driver}"))?
        .into_inner();
    let segments: BTreeMap<String, String> = info
        .accessible_topology
        .map(|t| t.segments.into_iter().collect())
        .unwrap_or_default();
    let nodes = Api::<Node>::all(client.clone());
    let mut ids: BTreeMap<String, String> = nodes
        .get(node)
        .await?
        .metadata
        .annotations
        .and_then(|a| a.get(NODE_ID_ANNOTATION).cloned())
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    ids.insert(driver.to_owned(), info.node_id.clone());
    let patch = json!({"metadata": {
        "labels": segments,
        "annotations": {NODE_ID_ANNOTATION: serde_json::to_string(&ids)?},
    }});
    let node_object = nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("labelling and annotating Node {node} for {driver}"))?;

    let entry = CSINodeDriver {
        name: driver.to_owned(),
        node_id: info.node_id.clone(),
        topology_keys: Some(segments.keys().cloned().collect()),
        // A limit of 0 means none, which kubelet reports by leaving it out.
        allocatable: (info.max_volumes_per_node > 0).then(|| VolumeNodeResources {
            count: i32::try_from(info.max_volumes_per_node).ok(),
        }),
    };
    let csi_nodes = Api::<CSINode>::all(client.clone());
    let mut csi_node = match csi_nodes.get_opt(node).await? {
        Some(existing) => existing,
        None => {
            let fresh = CSINode {
                metadata: ObjectMeta {
                    name: Some(node.to_owned()),
                    // Deleting the Node deletes its CSINode, as with kubelet's.
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: node.to_owned(),
                        uid: node_object.metadata.uid.clone().unwrap_or_default(),
                        ..OwnerReference::default()
                    }]),
                    ..ObjectMeta::default()
                },
                spec: CSINodeSpec {
                    drivers: Vec::new(),
                },
            };
            csi_nodes.create(&PostParams::default(), &fresh).await?
        }
    };
    csi_node.spec.drivers.retain(|d| d.name != driver);
    csi_node.spec.drivers.push(entry);
    csi_nodes
        .replace(node, &PostParams::default(), &csi_node)
        .await
        .with_context(|| format!("adding {driver} to CSINode {node}"))?;
    Ok(info.node_id)
}

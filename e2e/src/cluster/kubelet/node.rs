//! The Node object and its liveness, as kubelet keeps them: registration (labels, the
//! attach-detach annotation, capacity, addresses, conditions), the Lease in `kube-node-lease`,
//! and the status it posts: the Ready condition's heartbeat and `volumesInUse`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Namespace, Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Mutex;

/// The annotation that hands attach and detach of the node's volumes to the attach-detach
/// controller, which then makes the VolumeAttachments.
pub const CONTROLLER_MANAGED: &str = "volumes.kubernetes.io/controller-managed-attach-detach";
/// Where node leases live.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// kubelet's lease duration (`nodeLeaseDurationSeconds`).
const LEASE_DURATION_SECONDS: i32 = 40;

/// Posts the node's status. The lock orders the patches, so a heartbeat never puts back a
/// `volumesInUse` list that the volume manager has already changed.
pub struct NodeReporter {
    nodes: Api<Node>,
    leases: Api<Lease>,
    name: String,
    ready_since: Time,
    volumes_in_use: Mutex<BTreeSet<String>>,
}

impl NodeReporter {
    /// Registers the node (or takes over the one a previous stand-in left) and its Lease.
    pub async fn register(client: &Client, name: &str) -> anyhow::Result<NodeReporter> {
        let nodes = Api::<Node>::all(client.clone());
        let node = match nodes.create(&PostParams::default(), &new_node(name)).await {
            Ok(node) => node,
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Re-registration, as a restarted kubelet does: the annotations and labels again.
                let metadata = new_node(name).metadata;
                let patch = json!({"metadata": {"labels": metadata.labels, "annotations": metadata.annotations}});
                nodes
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?
            }
            Err(e) => return Err(e).with_context(|| format!("registering Node {name}")),
        };
        // The API server makes the namespace soon after it starts serving: await it.
        let namespaces = Api::<Namespace>::all(client.clone());
        await_condition(namespaces, LEASE_NAMESPACE, conditions::is_created())
            .await
            .with_context(|| format!("waiting for namespace {LEASE_NAMESPACE}"))?;
        let reporter = NodeReporter {
            nodes,
            leases: Api::namespaced(client.clone(), LEASE_NAMESPACE),
            name: name.to_owned(),
            ready_since: Time(Timestamp::now()),
            volumes_in_use: Mutex::new(BTreeSet::new()),
        };
        reporter.create_lease(&node).await?;
        reporter.heartbeat().await?;
        Ok(reporter)
    }

    async fn create_lease(&self, node: &Node) -> anyhow::Result<()> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                // Deleting the Node deletes its Lease, as with kubelet's.
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: self.name.clone(),
                    uid: node.metadata.uid.clone().unwrap_or_default(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.name.clone()),
                lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        match self.leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("creating the Lease of Node {}", self.name)),
        }
    }

    /// One beat: renews the Lease and posts the status with a fresh Ready heartbeat.
    pub async fn heartbeat(&self) -> anyhow::Result<()> {
        let renew = json!({"spec": {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": MicroTime(Timestamp::now()),
        }});
        self.leases
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&renew))
            .await
            .with_context(|| format!("renewing the Lease of Node {}", self.name))?;
        let in_use = self.volumes_in_use.lock().await;
        self.post_status(&in_use).await
    }

    /// Reports `volumes` (unique volume names) in use, when that changes the report.
    pub async fn set_volumes_in_use(&self, volumes: BTreeSet<String>) -> anyhow::Result<()> {
        let mut in_use = self.volumes_in_use.lock().await;
        if *in_use == volumes {
            return Ok(());
        }
        self.post_status(&volumes).await?;
        *in_use = volumes;
        Ok(())
    }

    async fn post_status(&self, in_use: &BTreeSet<String>) -> anyhow::Result<()> {
        let now = Time(Timestamp::now());
        let ready = NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("kubelet is posting ready status (rds-e2e stand-in)".into()),
            last_heartbeat_time: Some(now),
            last_transition_time: Some(self.ready_since.clone()),
        };
        // Strategic merge: conditions merge by type; the list of volumes is replaced whole.
        let patch = json!({"status": {"conditions": [ready], "volumesInUse": in_use}});
        self.nodes
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
            .with_context(|| format!("posting the status of Node {}", self.name))?;
        Ok(())
    }
}

/// The Node kubelet registers: its labels, the attach-detach annotation and a status that makes
/// it Ready and schedulable.
fn new_node(name: &str) -> Node {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), name.to_owned()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("kubernetes.io/arch".to_owned(), arch.to_owned()),
    ]);
    let resources = BTreeMap::from([
        ("cpu".to_owned(), Quantity("2".into())),
        ("memory".to_owned(), Quantity("4Gi".into())),
        ("pods".to_owned(), Quantity("110".into())),
    ]);
    let condition = |type_: &str, reason: &str| NodeCondition {
        type_: type_.into(),
        status: "False".into(),
        reason: Some(reason.into()),
        last_heartbeat_time: Some(Time(Timestamp::now())),
        last_transition_time: Some(Time(Timestamp::now())),
        ..NodeCondition::default()
    };
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                CONTROLLER_MANAGED.to_owned(),
                "true".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(vec![
                condition("MemoryPressure", "KubeletHasSufficientMemory"),
                condition("DiskPressure", "KubeletHasNoDiskPressure"),
                condition("PIDPressure", "KubeletHasSufficientPID"),
            ]),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: "127.0.0.1".into(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: name.to_owned(),
                },
            ]),
            node_info: Some(NodeSystemInfo {
                architecture: arch.to_owned(),
                operating_system: "linux".into(),
                kubelet_version: "v1.36.3".into(),
                container_runtime_version: "none://rds-e2e-kubelet-standin".into(),
                os_image: "rds-e2e".into(),
                ..NodeSystemInfo::default()
            }),
            ..NodeStatus::default()
        }),
    }
}

//! The plan of a pass, from API objects written as the API server shows them.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use serde_json::json;

use super::{NodePlan, Seen, fenced_nodes, plan};

const DRIVER: &str = "rds.csi.mikrotik.com";
const HOST_A: &str = "nqn.2014-08.org.nvmexpress:uuid:a";
const GRACE: Duration = Duration::from_secs(30);
/// Now, in seconds; nodes go NotReady at second 0.
const NOW: i64 = 100;

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Arc<T> {
    Arc::new(serde_json::from_value(value).expect("a valid object"))
}

/// A Node whose Ready condition is `ready` since second 0, with the driver's node id, and the
/// fence annotation when `fenced`.
fn node(name: &str, ready: &str, fenced: bool, taint: bool) -> Arc<Node> {
    let mut annotations = json!({
        "csi.volume.kubernetes.io/nodeid": json!({DRIVER: format!("{HOST_A}-{name}")}).to_string()
    });
    if fenced {
        annotations[format!("{DRIVER}/fenced-host")] = json!(format!("{HOST_A}-{name}"));
        annotations[format!("{DRIVER}/fenced-reason")] = json!("it was lost");
    }
    let taints = if taint {
        json!([{"key": "node.kubernetes.io/out-of-service", "effect": "NoExecute"}])
    } else {
        json!([])
    };
    from_json(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"taints": taints},
        "status": {"conditions": [{
            "type": "Ready", "status": ready, "lastTransitionTime": "1970-01-01T00:00:00Z"
        }]}
    }))
}

fn attachment(
    name: &str,
    node: &str,
    pv: &str,
    attacher: &str,
    attached: bool,
) -> Arc<VolumeAttachment> {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {"attacher": attacher, "nodeName": node, "source": {"persistentVolumeName": pv}},
        "status": {"attached": attached}
    }))
}

fn volume(pv: &str, driver: &str, claim: &str) -> Arc<PersistentVolume> {
    from_json(json!({
        "metadata": {"name": pv},
        "spec": {
            "csi": {"driver": driver, "volumeHandle": format!("handle-{pv}")},
            "claimRef": {"namespace": "default", "name": claim}
        }
    }))
}

fn claim(name: &str, pv: &str) -> Arc<PersistentVolumeClaim> {
    from_json(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"volumeName": pv}
    }))
}

fn pod(name: &str, node: &str, claims: &[&str], terminating: bool) -> Arc<Pod> {
    let volumes: Vec<_> = claims
        .iter()
        .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    let mut metadata = json!({"name": name, "namespace": "default"});
    if terminating {
        metadata["deletionTimestamp"] = json!("1970-01-01T00:00:05Z");
    }
    from_json(json!({
        "metadata": metadata,
        "spec": {"nodeName": node, "containers": [], "volumes": volumes}
    }))
}

/// Node `a` with the PV `pv-1` (claim `data`) attached, used by `pods`.
fn world(ready: &str, fenced: bool, taint: bool, pods: Vec<Arc<Pod>>) -> Seen {
    Seen {
        nodes: vec![
            node("a", ready, fenced, taint),
            node("b", "True", false, false),
        ],
        attachments: vec![attachment("va-1", "a", "pv-1", DRIVER, true)],
        pods,
        claims: vec![claim("data", "pv-1"), claim("other", "pv-2")],
        volumes: vec![
            volume("pv-1", DRIVER, "data"),
            volume("pv-2", "other.csi", "other"),
        ],
    }
}

fn at_now(seen: &Seen) -> Vec<NodePlan> {
    plan(seen, DRIVER, Timestamp::from_second(NOW).unwrap(), GRACE)
}

fn lost(
    marked: bool,
    pods: Vec<(&str, &str)>,
    attachments: Vec<(&str, &str)>,
    why: &str,
) -> NodePlan {
    NodePlan::Lost {
        node: "a".into(),
        host: format!("{HOST_A}-a"),
        why: why.into(),
        marked,
        pods: pods
            .into_iter()
            .map(|(n, p)| (n.into(), p.into()))
            .collect(),
        attachments: attachments
            .into_iter()
            .map(|(n, h)| (n.into(), h.into()))
            .collect(),
    }
}

const NOT_READY: &str = "it has been Ready=Unknown since 1970-01-01T00:00:00Z (longer than \
                         kubernetes.lostNodeGraceSeconds = 30s)";

#[test]
fn ready_nodes_and_nodes_within_the_grace_are_left_alone() {
    assert_eq!(at_now(&world("True", false, false, vec![])), vec![]);
    let seen = world("Unknown", false, false, vec![]);
    assert_eq!(
        plan(&seen, DRIVER, Timestamp::from_second(29).unwrap(), GRACE),
        vec![]
    );
}

#[test]
fn a_lost_node_is_fenced_and_its_attachment_cleared_when_no_live_pod_uses_it() {
    let plans = at_now(&world("Unknown", false, false, vec![]));
    assert_eq!(
        plans,
        vec![lost(
            false,
            vec![],
            vec![("va-1", "handle-pv-1")],
            NOT_READY
        )]
    );
}

#[test]
fn an_attachment_a_live_pod_still_uses_is_kept_while_the_node_is_fenced() {
    let live = pod("writer", "a", &["data"], false);
    assert_eq!(
        at_now(&world("Unknown", true, false, vec![live])),
        vec![lost(true, vec![], vec![], NOT_READY)]
    );
}

#[test]
fn a_terminating_pod_with_only_this_drivers_claims_is_removed_and_its_attachment_cleared() {
    let stuck = pod("writer", "a", &["data"], true);
    assert_eq!(
        at_now(&world("Unknown", true, false, vec![stuck])),
        vec![lost(
            true,
            vec![("default", "writer")],
            vec![("va-1", "handle-pv-1")],
            NOT_READY
        )]
    );
}

#[test]
fn a_terminating_pod_with_another_drivers_claim_is_left_to_kubernetes() {
    let mixed = pod("writer", "a", &["data", "other"], true);
    let Some(NodePlan::Lost { pods, .. }) = at_now(&world("Unknown", true, false, vec![mixed]))
        .into_iter()
        .next()
    else {
        panic!("node a is lost");
    };
    assert_eq!(pods, Vec::<(String, String)>::new());
}

#[test]
fn the_out_of_service_taint_skips_the_grace() {
    let seen = world("Unknown", false, true, vec![]);
    let plans = plan(&seen, DRIVER, Timestamp::from_second(1).unwrap(), GRACE);
    assert_eq!(
        plans,
        vec![lost(
            false,
            vec![],
            vec![("va-1", "handle-pv-1")],
            "it has the node.kubernetes.io/out-of-service taint"
        )]
    );
}

#[test]
fn another_drivers_attachments_are_never_touched() {
    let mut seen = world("Unknown", false, false, vec![]);
    seen.attachments = vec![attachment("va-2", "a", "pv-2", "other.csi", true)];
    assert_eq!(at_now(&seen), vec![lost(false, vec![], vec![], NOT_READY)]);
}

#[test]
fn the_fence_lifts_only_when_ready_and_no_attachment_to_the_node_is_attached() {
    assert_eq!(at_now(&world("True", true, false, vec![])), vec![]);
    let mut seen = world("True", true, false, vec![]);
    seen.attachments = vec![attachment("va-1", "a", "pv-1", DRIVER, false)];
    assert_eq!(at_now(&seen), vec![NodePlan::Unfence { node: "a".into() }]);
}

#[test]
fn attachments_to_a_deleted_node_are_planned_as_gone() {
    let mut seen = world("True", false, false, vec![]);
    seen.nodes
        .retain(|n| n.metadata.name.as_deref() != Some("a"));
    assert_eq!(
        at_now(&seen),
        vec![NodePlan::Gone {
            node: "a".into(),
            volumes: vec!["handle-pv-1".into()],
            attachments: vec![("va-1".into(), "handle-pv-1".into())],
        }]
    );
    // A Pod still bound to the deleted Node keeps its attachment until it is collected.
    seen.pods = vec![pod("writer", "a", &["data"], false)];
    assert_eq!(
        at_now(&seen),
        vec![NodePlan::Gone {
            node: "a".into(),
            volumes: vec!["handle-pv-1".into()],
            attachments: vec![],
        }]
    );
}

#[test]
fn the_fenced_set_comes_from_the_nodes_annotations() {
    let seen = world("Unknown", true, false, vec![]);
    let fenced = fenced_nodes(&seen.nodes, DRIVER);
    assert_eq!(fenced.len(), 1);
    let (host, node) = fenced.into_iter().next().unwrap();
    assert_eq!(host, format!("{HOST_A}-a"));
    assert_eq!(
        (node.node.as_str(), node.why.as_str()),
        ("a", "it was lost")
    );
}

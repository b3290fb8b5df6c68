//! Whether a Node is lost: what fencing starts from. Pure, so every case is a unit test.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;

/// The taint an administrator puts on a node that is shut down (non-graceful node shutdown);
/// Kubernetes then detaches its volumes without waiting for it.
pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
/// Where kubelet records each CSI driver's node id on the Node.
pub const NODE_IDS_ANNOTATION: &str = "csi.volume.kubernetes.io/nodeid";

/// A Node as fencing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Ready, or not reported yet, or NotReady for less than the grace: never fenced.
    Alive,
    /// Ready=True: an old fence may be lifted.
    Ready,
    /// Its volumes may move once it is fenced; the text says why, for Events and errors.
    Lost(String),
}

/// How `node` stands at `now`, with `grace` for a NotReady node.
pub fn health(node: &Node, now: Timestamp, grace: Duration) -> Health {
    let ready = node
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"));
    let Some(ready) = ready else {
        return Health::Alive;
    };
    if ready.status == "True" {
        return Health::Ready;
    }
    let tainted = node
        .spec
        .as_ref()
        .and_then(|spec| spec.taints.as_ref())
        .is_some_and(|taints| taints.iter().any(|t| t.key == OUT_OF_SERVICE));
    if tainted {
        return Health::Lost(format!("it has the {OUT_OF_SERVICE} taint"));
    }
    let since = ready.last_transition_time.as_ref().map(|t| t.0);
    match since {
        Some(since) if since + grace <= now => Health::Lost(format!(
            "it has been Ready={} since {since} (longer than kubernetes.lostNodeGraceSeconds = {}s)",
            ready.status,
            grace.as_secs()
        )),
        _ => Health::Alive,
    }
}

/// The node id `driver` registered on `node` (its host NQN), from kubelet's annotation.
pub fn node_id(node: &Node, driver: &str) -> Option<String> {
    let ids = node
        .metadata
        .annotations
        .as_ref()?
        .get(NODE_IDS_ANNOTATION)?;
    let ids: std::collections::BTreeMap<String, String> = serde_json::from_str(ids).ok()?;
    ids.get(driver).cloned()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    fn node(ready: Option<(&str, i64)>, taint: Option<&str>) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: taint.map(|key| {
                    vec![Taint {
                        key: key.to_owned(),
                        effect: "NoExecute".to_owned(),
                        ..Taint::default()
                    }]
                }),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                conditions: ready.map(|(status, at)| {
                    vec![NodeCondition {
                        type_: "Ready".to_owned(),
                        status: status.to_owned(),
                        last_transition_time: Some(Time(Timestamp::from_second(at).unwrap())),
                        ..NodeCondition::default()
                    }]
                }),
                ..NodeStatus::default()
            }),
            ..Node::default()
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_ready_node_is_never_lost_even_with_the_out_of_service_taint() {
        assert_eq!(
            health(&node(Some(("True", 0)), None), at(1000), GRACE),
            Health::Ready
        );
        assert_eq!(
            health(
                &node(Some(("True", 0)), Some(OUT_OF_SERVICE)),
                at(1000),
                GRACE
            ),
            Health::Ready
        );
    }

    #[test]
    fn a_not_ready_node_is_lost_only_after_the_grace() {
        for status in ["False", "Unknown"] {
            assert_eq!(
                health(&node(Some((status, 100)), None), at(129), GRACE),
                Health::Alive
            );
            let Health::Lost(why) = health(&node(Some((status, 100)), None), at(130), GRACE) else {
                panic!("{status} past the grace is lost");
            };
            assert!(why.contains(&format!("Ready={status}")), "{why}");
        }
    }

    #[test]
    fn the_out_of_service_taint_on_a_not_ready_node_skips_the_grace() {
        let Health::Lost(why) = health(
            &node(Some(("Unknown", 100)), Some(OUT_OF_SERVICE)),
            at(101),
            GRACE,
        ) else {
            panic!("tainted and not ready is lost");
        };
        assert!(why.contains(OUT_OF_SERVICE), "{why}");
        let other = node(
            Some(("Unknown", 100)),
            Some("node.kubernetes.io/unreachable"),
        );
        assert_eq!(health(&other, at(101), GRACE), Health::Alive);
    }

    #[test]
    fn a_node_that_never_reported_is_left_alone() {
        assert_eq!(health(&node(None, None), at(1000), GRACE), Health::Alive);
    }

    #[test]
    fn the_node_id_is_read_from_kubelets_annotation() {
        let mut n = node(None, None);
        n.metadata.annotations = Some(
            [(
                NODE_IDS_ANNOTATION.to_owned(),
                r#"{"rds.csi.mikrotik.com":"nqn.2014-08.org.nvmexpress:uuid:1","other":"x"}"#
                    .to_owned(),
            )]
            .into(),
        );
        assert_eq!(
            node_id(&n, "rds.csi.mikrotik.com").as_deref(),
            Some("nqn.2014-08.org.nvmexpress:uuid:1")
        );
        assert_eq!(node_id(&n, "missing"), None);
    }
}

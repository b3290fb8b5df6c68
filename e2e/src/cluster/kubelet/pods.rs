//! What kubelet's status manager does to a Pod: the status of a started pod, the final delete of
//! a terminated one, and the Events that say why a volume is not ready.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

/// Whether the pod is going away: deleted gracefully, or finished.
pub fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

pub fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// The pod's status once its volumes are set up: Running and Ready, as if every container had
/// started and passed its probes.
pub async fn mark_running(client: &Client, pod: &Pod) -> kube::Result<()> {
    let now = Time(Timestamp::now());
    let conditions: Vec<_> = [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ]
    .iter()
    .map(|type_| json!({"type": type_, "status": "True", "lastTransitionTime": now}))
    .collect();
    let patch = json!({"status": {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": "127.0.0.1",
        "startTime": now,
    }});
    api(client, pod)
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// kubelet's final delete once the pod's volumes are torn down: grace period 0, for this pod
/// only (a pod of the same name made since is not touched).
pub async fn final_delete(client: &Client, pod: &Pod) -> kube::Result<()> {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api(client, pod).delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

fn api(client: &Client, pod: &Pod) -> Api<Pod> {
    Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default())
}

/// Warning Events on pods, reported as kubelet of the node.
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: Client, node: &str) -> Events {
        let reporter = Reporter {
            controller: "kubelet".into(),
            instance: Some(node.to_owned()),
        };
        Events {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// A Warning `reason` on `pod`; a failure to record is only logged, as kubelet's.
    pub async fn warn(&self, pod: &Pod, reason: &str, message: &str) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            // Events take at most 1 kB of message.
            note: Some(message.chars().take(1000).collect()),
            action: "SetUpVolume".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &pod.object_ref(&())).await {
            eprintln!(
                "kubelet stand-in: recording {reason} on pod {}: {e}",
                pod.name_any()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(deleted: bool, phase: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "p",
                "deletionTimestamp": deleted.then_some("2026-01-01T00:00:00Z"),
            },
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn a_deleted_or_finished_pod_is_terminating_and_a_running_one_is_not() {
        assert!(terminating(&pod(true, Some("Running"))));
        assert!(terminating(&pod(false, Some("Succeeded"))));
        assert!(terminating(&pod(false, Some("Failed"))));
        assert!(!terminating(&pod(false, Some("Running"))));
        assert!(!terminating(&pod(false, None)));
        assert!(running(&pod(true, Some("Running"))));
        assert!(!running(&pod(false, Some("Pending"))));
    }
}

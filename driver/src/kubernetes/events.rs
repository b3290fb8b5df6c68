//! Events for what a person must act on, rate limited: the same reason about the same object is
//! recorded at most once per [`MIN_INTERVAL`] (kube's recorder folds repeats within its window
//! into one Event's series; this keeps a reconciler that retries every few seconds from patching
//! it on every pass).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

pub const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// The controller's Event recorder.
pub struct Events {
    recorder: Recorder,
    last: Mutex<HashMap<(String, String), Instant>>,
}

impl Events {
    /// Events reported as `controller` (the driver name), from this `instance` (the pod).
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Events {
        let reporter = Reporter {
            controller: controller.to_owned(),
            instance,
        };
        Events {
            recorder: Recorder::new(client, reporter),
            last: Mutex::default(),
        }
    }

    pub async fn normal(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(regarding, EventType::Normal, reason, note)
            .await;
    }

    pub async fn warning(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(regarding, EventType::Warning, reason, note)
            .await;
    }

    /// Records the Event unless the same one went out within [`MIN_INTERVAL`]; a failure is
    /// logged, never passed on: an Event is worth less than the work it describes.
    async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let object = regarding
            .uid
            .clone()
            .or_else(|| regarding.name.clone())
            .unwrap_or_default();
        let key = (object, reason.to_owned());
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            last.retain(|_, at| now.duration_since(*at) < MIN_INTERVAL);
            if last.contains_key(&key) {
                return;
            }
            last.insert(key, now);
        }
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(%error, reason, "could not record an Event");
        }
    }
}

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
    client: Client,
    reporter: Reporter,
    last: Mutex<HashMap<(String, String, String), Instant>>,
}

impl Events {
    /// Events reported as `controller` (the driver name), from this `instance` (the pod).
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Events {
        let reporter = Reporter {
            controller: controller.to_owned(),
            instance,
        };
        Events {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            client,
            reporter,
            last: Mutex::default(),
        }
    }

    pub async fn normal(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(regarding, None, EventType::Normal, reason, note)
            .await;
    }

    pub async fn warning(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(regarding, None, EventType::Warning, reason, note)
            .await;
    }

    /// An Event about `subject`, something on the RDS with no Kubernetes object of its own,
    /// recorded on `regarding`: rate limited per subject, and never folded into the series of
    /// an Event about another subject.
    pub async fn normal_about(
        &self,
        regarding: &ObjectReference,
        subject: &str,
        reason: &str,
        note: String,
    ) {
        self.publish(regarding, Some(subject), EventType::Normal, reason, note)
            .await;
    }

    /// [`Events::normal_about`], a warning.
    pub async fn warning_about(
        &self,
        regarding: &ObjectReference,
        subject: &str,
        reason: &str,
        note: String,
    ) {
        self.publish(regarding, Some(subject), EventType::Warning, reason, note)
            .await;
    }

    /// Records the Event unless the same one went out within [`MIN_INTERVAL`]; a failure is
    /// logged, never passed on: an Event is worth less than the work it describes.
    async fn publish(
        &self,
        regarding: &ObjectReference,
        subject: Option<&str>,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let object = regarding
            .uid
            .clone()
            .or_else(|| regarding.name.clone())
            .unwrap_or_default();
        let key = (
            object,
            reason.to_owned(),
            subject.unwrap_or_default().to_owned(),
        );
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
        // kube's recorder folds Events of one reason about one object into one series, which
        // would show the first subject's note for every other subject: those get a recorder of
        // their own, and the rate limit above stands in for the folding.
        let published = match subject {
            None => self.recorder.publish(&event, regarding).await,
            Some(_) => {
                Recorder::new(self.client.clone(), self.reporter.clone())
                    .publish(&event, regarding)
                    .await
            }
        };
        if let Err(error) = published {
            tracing::warn!(%error, reason, "could not record an Event");
        }
    }
}

//! What a person must act on, noticed while answering a CSI call and handed to the Kubernetes
//! side, which records it as an Event on the object concerned (`crate::kubernetes`). Without a
//! subscriber (no `kubernetes.enabled`) nothing is kept; a subscriber that falls behind loses
//! notices rather than slowing the calls down.

use std::collections::HashMap;
use std::sync::OnceLock;

use tokio::sync::mpsc;
use tonic::{Code, Status};

/// Notices waiting for the subscriber at most; more are dropped.
const BACKLOG: usize = 256;

/// The object a notice is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum About {
    /// A volume by id: the Kubernetes side finds its claim through the PV.
    Volume(String),
    /// A namespaced object by kind (`PersistentVolumeClaim`, `VolumeSnapshot`), as the sidecars'
    /// `--extra-create-metadata` parameters name it.
    Object {
        kind: &'static str,
        namespace: String,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub about: About,
    /// The Event's reason: `AttachRefused`, `RdsUnreachable`, `SnapshotMethodRefused`.
    pub reason: &'static str,
    pub note: String,
}

#[derive(Debug, Default)]
pub struct Notices(OnceLock<mpsc::Sender<Notice>>);

impl Notices {
    /// The notices from now on; `None` when something subscribed already.
    pub fn subscribe(&self) -> Option<mpsc::Receiver<Notice>> {
        let (sender, receiver) = mpsc::channel(BACKLOG);
        self.0.set(sender).ok()?;
        Some(receiver)
    }

    /// Tells the subscriber, if any, about a failed call that a person must act on: the RDS
    /// unreachable, or a refusal whose `reason` the call gives for FAILED_PRECONDITION.
    pub(super) fn failed<T>(
        &self,
        about: Option<About>,
        answer: &Result<T, Status>,
        refusal: &'static str,
    ) {
        let (Some(about), Err(status)) = (about, answer) else {
            return;
        };
        let reason = match status.code() {
            Code::Unavailable => "RdsUnreachable",
            Code::FailedPrecondition => refusal,
            _ => return,
        };
        if let Some(sender) = self.0.get() {
            let _ = sender.try_send(Notice {
                about,
                reason,
                note: status.message().to_owned(),
            });
        }
    }
}

/// The object the sidecars' `--extra-create-metadata` parameters name: `prefix` is `pvc` or
/// `volumesnapshot`.
pub(super) fn named_in(
    parameters: &HashMap<String, String>,
    prefix: &str,
    kind: &'static str,
) -> Option<About> {
    let get = |key: &str| parameters.get(&format!("csi.storage.k8s.io/{prefix}/{key}"));
    Some(About::Object {
        kind,
        namespace: get("namespace")?.clone(),
        name: get("name")?.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreachable_and_refusals_are_told_and_only_to_a_subscriber() {
        let notices = Notices::default();
        let about = || Some(About::Volume("pvc-1".into()));
        notices.failed::<()>(
            about(),
            &Err(Status::unavailable("no RDS")),
            "AttachRefused",
        );
        let mut receiver = notices.subscribe().expect("the first subscriber");
        assert!(notices.subscribe().is_none(), "one subscriber only");
        notices.failed::<()>(
            about(),
            &Err(Status::unavailable("no RDS")),
            "AttachRefused",
        );
        notices.failed::<()>(
            about(),
            &Err(Status::failed_precondition("held")),
            "AttachRefused",
        );
        notices.failed::<()>(
            about(),
            &Err(Status::invalid_argument("bad")),
            "AttachRefused",
        );
        notices.failed(about(), &Ok(()), "AttachRefused");
        notices.failed::<()>(None, &Err(Status::unavailable("no RDS")), "AttachRefused");
        let reasons: Vec<_> = std::iter::from_fn(|| receiver.try_recv().ok())
            .map(|n| (n.reason, n.note))
            .collect();
        assert_eq!(
            reasons,
            [
                ("RdsUnreachable", "no RDS".to_owned()),
                ("AttachRefused", "held".to_owned())
            ]
        );
    }

    #[test]
    fn the_object_comes_from_the_sidecars_parameters() {
        let parameters = HashMap::from([
            ("csi.storage.k8s.io/pvc/name".to_owned(), "data".to_owned()),
            (
                "csi.storage.k8s.io/pvc/namespace".to_owned(),
                "apps".to_owned(),
            ),
        ]);
        assert_eq!(
            named_in(&parameters, "pvc", "PersistentVolumeClaim"),
            Some(About::Object {
                kind: "PersistentVolumeClaim",
                namespace: "apps".into(),
                name: "data".into()
            })
        );
        assert_eq!(
            named_in(&parameters, "volumesnapshot", "VolumeSnapshot"),
            None
        );
    }
}

//! `rds-csi snapshot-schedule` against a fake Kubernetes API server: the real kube-rs client,
//! its URLs, query strings and bodies, answered as the API server answers them.

#[path = "snapshot_schedule/fake_kube.rs"]
mod fake_kube;
#[path = "snapshot_schedule/label_selector.rs"]
mod label_selector;

use std::num::NonZeroUsize;

use fake_kube::{Answer, Call, FakeKube, Resource};
use hyper::Method;
use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use rds_csi::schedule::{
    Cluster, Expiry, MANAGED_BY, MANAGED_BY_LABEL, Report, Retention, RunFailed, SCHEDULE_LABEL,
    SLOT_ANNOTATION, Schedule, ScheduleError, Scope, Target, run,
};
use serde_json::{Value, json};

const OWN: [(&str, &str); 2] = [(MANAGED_BY_LABEL, MANAGED_BY), (SCHEDULE_LABEL, "daily")];
const CLASS: &str = "rds-nvme";

/// 02:00:07 UTC on day `n` of November 2026: a run a few seconds into its 02:00 slot.
fn day(n: i64) -> Timestamp {
    at(&format!("2026-11-{n:02}T02:00:07Z"))
}

fn at(rfc3339: &str) -> Timestamp {
    rfc3339.parse().expect("a valid timestamp")
}

/// The name the schedule gives its snapshot of `pvc` for the 02:00 slot of day `n`.
fn name(pvc: &str, n: i64) -> String {
    format!("{pvc}-daily-202611{n:02}-0200")
}

fn in_apps(selector: &str) -> Target {
    Target::Selector {
        scope: Scope::Namespace("apps".into()),
        selector: selector.into(),
    }
}

fn keep(n: usize) -> Retention {
    Retention {
        keep: NonZeroUsize::new(n),
        max_age: None,
    }
}

fn schedule(target: Target, retention: Retention) -> Schedule {
    Schedule {
        name: "daily".parse().unwrap(),
        volume_snapshot_class: CLASS.into(),
        target,
        retention,
        slot: SignedDuration::from_hours(1),
    }
}

async fn run_at(fake: &FakeKube, schedule: &Schedule, now: Timestamp) -> Result<Report, RunFailed> {
    fake.set_now(now);
    run(&Cluster::new(fake.client("apps")), schedule, now).await
}

fn names(snapshots: &[rds_csi::schedule::SnapshotOf]) -> Vec<String> {
    snapshots.iter().map(|s| s.name.clone()).collect()
}

fn deleted_names(report: &Report) -> Vec<String> {
    report.deleted.iter().map(|(s, _)| s.name.clone()).collect()
}

/// Snapshots of `namespace` not being deleted.
fn live(fake: &FakeKube, namespace: &str) -> Vec<String> {
    fake.snapshots(namespace)
        .iter()
        .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

fn requests(fake: &FakeKube, method: Method) -> Vec<String> {
    fake.requests()
        .into_iter()
        .filter(|(m, _)| *m == method)
        .map(|(_, path)| path)
        .collect()
}

fn snapshot(fake: &FakeKube, namespace: &str, name: &str) -> Value {
    fake.snapshots(namespace)
        .into_iter()
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no VolumeSnapshot {namespace}/{name}"))
}

/// A snapshot the schedule created holds everything in its first and only version.
fn assert_complete(object: &Value, pvc: &str, slot: &str) {
    assert_eq!(
        object["metadata"]["labels"],
        json!({ MANAGED_BY_LABEL: MANAGED_BY, SCHEDULE_LABEL: "daily" }),
        "{object}"
    );
    assert_eq!(object["metadata"]["annotations"][SLOT_ANNOTATION], slot);
    assert_eq!(
        object["spec"],
        json!({ "volumeSnapshotClassName": CLASS, "source": { "persistentVolumeClaimName": pvc } })
    );
    assert_eq!(
        object["metadata"]["generation"], 1,
        "never modified after create"
    );
}

fn posts_named(prefix: &'static str) -> impl Fn(&Call) -> bool + Send + 'static {
    move |call| {
        call.method == Method::POST
            && call.resource == Resource::VolumeSnapshot
            && call.name.as_deref().is_some_and(|n| n.starts_with(prefix))
    }
}

/// PVCs a, b and c in `apps`, each with own snapshots of days 20, 21 and 22.
fn three_pvcs_with_history() -> FakeKube {
    let fake = FakeKube::new(day(25));
    for pvc in ["a", "b", "c"] {
        fake.add_pvc("apps", pvc, &[("backup", "daily")], "Bound");
        for n in 20..=22 {
            fake.add_snapshot("apps", &name(pvc, n), pvc, &OWN, day(n), true);
        }
    }
    fake
}

#[tokio::test]
async fn a_label_selector_picks_the_bound_pvcs_of_its_namespace() {
    let fake = FakeKube::new(day(25));
    fake.add_pvc("apps", "db", &[("backup", "daily")], "Bound");
    fake.add_pvc(
        "apps",
        "cache",
        &[("backup", "daily"), ("tier", "cache")],
        "Bound",
    );
    fake.add_pvc("apps", "scratch", &[("backup", "never")], "Bound");
    fake.add_pvc("apps", "fresh", &[("backup", "daily")], "Pending");
    fake.add_pvc("staging", "db", &[("backup", "daily")], "Bound");

    let report = run_at(&fake, &schedule(in_apps("backup=daily"), keep(7)), day(25))
        .await
        .unwrap();

    assert_eq!(names(&report.created), [name("cache", 25), name("db", 25)]);
    assert_eq!(
        report.skipped,
        [(
            "apps/fresh".to_owned(),
            "the PVC is Pending, not Bound".to_owned()
        )]
    );
    assert_eq!(live(&fake, "apps"), [name("cache", 25), name("db", 25)]);
    assert!(live(&fake, "staging").is_empty());
    assert_complete(
        &snapshot(&fake, "apps", &name("db", 25)),
        "db",
        "2026-11-25T02:00:00Z",
    );
    let lists = requests(&fake, Method::GET);
    assert!(
        lists.contains(
            &"/api/v1/namespaces/apps/persistentvolumeclaims?&labelSelector=backup%3Ddaily"
                .to_owned()
        ),
        "the selector goes to the API server: {lists:?}"
    );
    assert_eq!(report.kept, Some(2));
}

#[tokio::test]
async fn a_set_based_selector_across_all_namespaces() {
    let fake = FakeKube::new(day(25));
    fake.add_pvc("apps", "db", &[("tier", "db")], "Bound");
    fake.add_pvc("apps", "web", &[("tier", "web")], "Bound");
    fake.add_pvc("staging", "queue", &[("tier", "queue")], "Bound");
    fake.add_pvc("staging", "plain", &[], "Bound");
    let target = Target::Selector {
        scope: Scope::AllNamespaces,
        selector: "tier in (db,queue)".into(),
    };

    let report = run_at(&fake, &schedule(target, keep(3)), day(25))
        .await
        .unwrap();

    let created: Vec<_> = report
        .created
        .iter()
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect();
    assert_eq!(
        created,
        [
            format!("apps/{}", name("db", 25)),
            format!("staging/{}", name("queue", 25))
        ]
    );
    assert!(
        requests(&fake, Method::GET)
            .iter()
            .any(|p| p.starts_with("/apis/snapshot.storage.k8s.io/v1/volumesnapshots?")),
        "retention lists the schedule's snapshots of every namespace"
    );
}

#[tokio::test]
async fn a_name_list_picks_those_pvcs_whatever_their_labels() {
    let fake = FakeKube::new(day(25));
    fake.add_pvc("apps", "db", &[], "Bound");
    fake.add_pvc("apps", "scratch", &[("backup", "never")], "Bound");
    fake.add_pvc("apps", "other", &[], "Bound");
    let target = Target::Names {
        namespace: "apps".into(),
        names: vec!["scratch".into(), "db".into()],
    };

    let report = run_at(&fake, &schedule(target, keep(3)), day(25))
        .await
        .unwrap();

    assert_eq!(
        names(&report.created),
        [name("scratch", 25), name("db", 25)]
    );
    assert_eq!(live(&fake, "apps"), [name("db", 25), name("scratch", 25)]);
}

#[tokio::test]
async fn a_missing_named_pvc_fails_the_run_but_not_the_others() {
    let fake = three_pvcs_with_history();
    let target = Target::Names {
        namespace: "apps".into(),
        names: vec!["a".into(), "gone".into(), "c".into()],
    };

    let failed = run_at(&fake, &schedule(target, keep(1)), day(25))
        .await
        .unwrap_err();

    assert!(
        matches!(&failed.failures[..], [ScheduleError::ClaimNotFound { name, .. }] if name == "gone"),
        "{failed}"
    );
    assert!(failed.to_string().contains("correct --pvc"), "{failed}");
    assert_eq!(
        names(&failed.report.created),
        [name("a", 25), name("c", 25)]
    );
    assert!(requests(&fake, Method::DELETE).is_empty());
    assert_eq!(failed.report.kept, None);
}

#[tokio::test]
async fn retention_by_count_deletes_only_the_schedules_own_oldest() {
    let fake = FakeKube::new(day(25));
    fake.add_pvc("apps", "db", &[("backup", "daily")], "Bound");
    for n in 21..=24 {
        fake.add_snapshot("apps", &name("db", n), "db", &OWN, day(n), true);
    }
    // Old snapshots of the same PVC that are not this schedule's.
    let hourly = [(MANAGED_BY_LABEL, MANAGED_BY), (SCHEDULE_LABEL, "hourly")];
    fake.add_snapshot("apps", "db-hourly-old", "db", &hourly, day(1), true);
    fake.add_snapshot("apps", "db-by-hand", "db", &[], day(1), true);
    fake.add_snapshot(
        "apps",
        "db-half-labelled",
        "db",
        &[(SCHEDULE_LABEL, "daily")],
        day(1),
        true,
    );
    fake.add_snapshot("staging", &name("db", 1), "db", &OWN, day(1), true);

    let report = run_at(&fake, &schedule(in_apps("backup=daily"), keep(2)), day(25))
        .await
        .unwrap();

    assert_eq!(
        deleted_names(&report),
        [name("db", 21), name("db", 22), name("db", 23)]
    );
    assert!(
        report
            .deleted
            .iter()
            .all(|(_, why)| *why == Expiry::BeyondKeep { keep: 2 })
    );
    let mut left = live(&fake, "apps");
    left.sort();
    assert_eq!(
        left,
        [
            "db-by-hand".to_owned(),
            name("db", 24),
            name("db", 25),
            "db-half-labelled".to_owned(),
            "db-hourly-old".to_owned()
        ]
    );
    assert_eq!(live(&fake, "staging"), [name("db", 1)], "out of scope");
    assert_eq!(requests(&fake, Method::DELETE).len(), 3);
    assert_eq!(report.kept, Some(2));
}

#[tokio::test]
async fn retention_by_age_deletes_what_is_strictly_older() {
    let fake = FakeKube::new(day(25));
    fake.add_pvc("apps", "db", &[("backup", "daily")], "Bound");
    for n in 21..=24 {
        fake.add_snapshot("apps", &name("db", n), "db", &OWN, day(n), true);
    }
    fake.add_snapshot("apps", "db-by-hand", "db", &[], day(1), true);
    let two_days = SignedDuration::from_hours(48);
    let retention = Retention {
        keep: None,
        max_age: Some(two_days),
    };

    // Day 23's snapshot is exactly two days old at this instant: it stays.
    let report = run_at(&fake, &schedule(in_apps("backup"), retention), day(25))
        .await
        .unwrap();

    assert_eq!(deleted_names(&report), [name("db", 21), name("db", 22)]);
    assert!(
        report
            .deleted
            .iter()
            .all(|(_, why)| *why == Expiry::OlderThan { max_age: two_days })
    );
    assert!(live(&fake, "apps").contains(&name("db", 23)));
    assert!(live(&fake, "apps").contains(&"db-by-hand".to_owned()));
}

#[tokio::test]
async fn the_newest_ready_snapshot_outlives_the_retention() {
    let fake = FakeKube::new(day(25));
    fake.add_pvc("apps", "db", &[("backup", "daily")], "Bound");
    fake.add_snapshot("apps", &name("db", 21), "db", &OWN, day(21), true);
    for n in 22..=24 {
        fake.add_snapshot("apps", &name("db", n), "db", &OWN, day(n), false);
    }

    let report = run_at(&fake, &schedule(in_apps("backup"), keep(1)), day(25))
        .await
        .unwrap();

    assert_eq!(
        deleted_names(&report),
        [name("db", 22), name("db", 23), name("db", 24)]
    );
    assert_eq!(live(&fake, "apps"), [name("db", 21), name("db", 25)]);
}

#[tokio::test]
async fn an_api_error_mid_run_leaves_nothing_half_done_and_a_rerun_converges() {
    let fake = three_pvcs_with_history();
    fake.fail_once(posts_named("b-"), Answer::internal_error());
    let daily = schedule(in_apps("backup=daily"), keep(2));

    let failed = run_at(&fake, &daily, day(25)).await.unwrap_err();

    // The run says so, naming the PVC and the server's reason.
    assert!(
        matches!(&failed.failures[..], [ScheduleError::Create { pvc, .. }] if pvc == "b"),
        "{failed}"
    );
    let message = failed.to_string();
    assert!(
        message.contains("etcdserver: request timed out"),
        "{message}"
    );
    assert!(message.contains("No snapshot was deleted"), "{message}");
    // The other PVCs got their snapshots, each complete.
    assert_eq!(
        names(&failed.report.created),
        [name("a", 25), name("c", 25)]
    );
    for pvc in ["a", "c"] {
        assert_complete(
            &snapshot(&fake, "apps", &name(pvc, 25)),
            pvc,
            "2026-11-25T02:00:00Z",
        );
    }
    // Nothing was deleted, though the history is beyond the retention.
    assert!(requests(&fake, Method::DELETE).is_empty());
    assert_eq!(failed.report.kept, None);
    assert_eq!(live(&fake, "apps").len(), 9 + 2);

    // The CronJob's retry, minutes later in the same slot.
    let report = run_at(&fake, &daily, at("2026-11-25T02:04:00Z"))
        .await
        .unwrap();
    assert_eq!(names(&report.created), [name("b", 25)]);
    assert_eq!(names(&report.already_there), [name("a", 25), name("c", 25)]);
    assert_eq!(report.deleted.len(), 6);

    // The same state a run without the error reaches.
    let clean = three_pvcs_with_history();
    run_at(&clean, &daily, day(25)).await.unwrap();
    assert_eq!(live(&fake, "apps"), live(&clean, "apps"));
    for name in live(&clean, "apps") {
        let (ours, theirs) = (
            snapshot(&fake, "apps", &name),
            snapshot(&clean, "apps", &name),
        );
        assert_eq!(ours["metadata"]["labels"], theirs["metadata"]["labels"]);
        assert_eq!(ours["spec"], theirs["spec"]);
    }
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_by_the_retry() {
    let fake = three_pvcs_with_history();
    fake.fail_once_after_commit(posts_named("a-"), Answer::Disconnect);
    let daily = schedule(in_apps("backup=daily"), keep(2));

    let failed = run_at(&fake, &daily, day(25)).await.unwrap_err();
    assert!(
        matches!(&failed.failures[..], [ScheduleError::Create { pvc, .. }] if pvc == "a"),
        "{failed}"
    );
    assert!(requests(&fake, Method::DELETE).is_empty());

    let report = run_at(&fake, &daily, at("2026-11-25T02:01:00Z"))
        .await
        .unwrap();
    assert!(report.created.is_empty());
    assert_eq!(
        names(&report.already_there),
        [name("a", 25), name("b", 25), name("c", 25)]
    );
    let slot_snapshots: Vec<_> = live(&fake, "apps")
        .into_iter()
        .filter(|n| n.ends_with("-20261125-0200"))
        .collect();
    assert_eq!(
        slot_snapshots,
        [name("a", 25), name("b", 25), name("c", 25)],
        "one snapshot per PVC and slot"
    );
}

#[tokio::test]
async fn runs_in_one_slot_share_names_and_the_next_slot_gets_new_ones() {
    let fake = FakeKube::new(day(25));
    fake.add_pvc("apps", "db", &[("backup", "daily")], "Bound");
    let daily = schedule(in_apps("backup"), keep(5));

    run_at(&fake, &daily, day(25)).await.unwrap();
    let again = run_at(&fake, &daily, at("2026-11-25T02:59:59Z"))
        .await
        .unwrap();
    assert!(again.created.is_empty());
    assert_eq!(names(&again.already_there), [name("db", 25)]);

    let next = run_at(&fake, &daily, at("2026-11-25T03:00:00Z"))
        .await
        .unwrap();
    assert_eq!(names(&next.created), ["db-daily-20261125-0300"]);
}

#[tokio::test]
async fn a_foreign_snapshot_holding_the_name_is_reported_and_left_alone() {
    let fake = FakeKube::new(day(25));
    fake.add_pvc("apps", "db", &[("backup", "daily")], "Bound");
    fake.add_snapshot("apps", &name("db", 25), "db", &[], day(24), true);
    fake.add_snapshot("apps", &name("db", 1), "db", &OWN, day(1), true);

    let failed = run_at(&fake, &schedule(in_apps("backup"), keep(1)), day(25))
        .await
        .unwrap_err();

    assert!(
        matches!(&failed.failures[..], [ScheduleError::NameTaken { name: n, .. }] if *n == name("db", 25)),
        "{failed}"
    );
    assert!(
        failed.to_string().contains("rename or delete it"),
        "{failed}"
    );
    assert!(requests(&fake, Method::DELETE).is_empty());
    assert_eq!(live(&fake, "apps").len(), 2);
}

#[tokio::test]
async fn snapshots_already_being_deleted_are_not_deleted_again() {
    let fake = FakeKube::new(day(24));
    fake.add_pvc("apps", "db", &[("backup", "daily")], "Bound");
    for n in 21..=23 {
        fake.add_snapshot("apps", &name("db", n), "db", &OWN, day(n), true);
    }
    let daily = schedule(in_apps("backup"), keep(2));

    let first = run_at(&fake, &daily, day(24)).await.unwrap();
    assert_eq!(deleted_names(&first), [name("db", 21), name("db", 22)]);
    // The snapshot-controller's finalizer holds them: they are still listed, being deleted.
    assert_eq!(fake.snapshot_names("apps").len(), 4);

    fake.mark_ready("apps", &name("db", 24));
    let second = run_at(&fake, &daily, day(25)).await.unwrap();
    assert_eq!(deleted_names(&second), [name("db", 23)]);
    let deletes = requests(&fake, Method::DELETE);
    assert_eq!(deletes.len(), 3, "one DELETE per snapshot: {deletes:?}");
}

#[tokio::test]
async fn a_cluster_without_the_snapshot_crds_is_named_as_the_cause() {
    let fake = FakeKube::new(day(25));
    fake.without_snapshot_crd();
    fake.add_pvc("apps", "db", &[("backup", "daily")], "Bound");

    let failed = run_at(&fake, &schedule(in_apps("backup"), keep(1)), day(25))
        .await
        .unwrap_err();

    let message = failed.to_string();
    assert!(
        message.contains("the server could not find the requested resource"),
        "{message}"
    );
    assert!(
        message.contains("snapshot.storage.k8s.io/v1 CRDs installed"),
        "{message}"
    );
}

#[tokio::test]
async fn a_forbidden_list_names_the_missing_permission_and_creates_nothing() {
    let fake = FakeKube::new(day(25));
    fake.add_pvc("apps", "db", &[("backup", "daily")], "Bound");
    fake.fail_once(
        |call| {
            call.method == Method::GET
                && call.resource == Resource::Pvc
                && call.namespace.as_deref() == Some("apps")
        },
        Answer::Status(
            403,
            "Forbidden",
            "persistentvolumeclaims is forbidden: User \"system:serviceaccount:kube-system:rds-csi-snapshot-schedule\" cannot list resource \"persistentvolumeclaims\" in API group \"\" in the namespace \"apps\"".into(),
        ),
    );

    let failed = run_at(&fake, &schedule(in_apps("backup"), keep(1)), day(25))
        .await
        .unwrap_err();

    let message = failed.to_string();
    assert!(
        message.contains("cannot list resource \"persistentvolumeclaims\""),
        "{message}"
    );
    assert!(message.contains("HTTP 403 Forbidden"), "{message}");
    assert!(message.contains("ServiceAccount"), "{message}");
    assert!(requests(&fake, Method::POST).is_empty());
}

/// The fake answers kube-rs as an API server does, so the tests above mean something.
#[tokio::test]
async fn the_fake_answers_with_real_status_objects() {
    let fake = FakeKube::new(day(25));
    let gvk = GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "volumesnapshots");
    let api: Api<DynamicObject> = Api::namespaced_with(fake.client("apps"), "apps", &resource);
    let object = DynamicObject::new("s1", &resource)
        .data(json!({ "spec": { "source": { "persistentVolumeClaimName": "db" } } }));

    let created = api.create(&PostParams::default(), &object).await.unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("apps"));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    let api_status = |result: Result<_, kube::Error>| match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason),
        other => panic!("expected an API error, got {:?}", other.map(|_| ())),
    };
    assert_eq!(
        api_status(
            api.create(&PostParams::default(), &object)
                .await
                .map(|_| ())
        ),
        (409, "AlreadyExists".to_owned())
    );
    let sourceless = DynamicObject::new("s2", &resource).data(json!({ "spec": {} }));
    assert_eq!(
        api_status(
            api.create(&PostParams::default(), &sourceless)
                .await
                .map(|_| ())
        ),
        (422, "Invalid".to_owned())
    );
    assert_eq!(
        api_status(api.get("nope").await.map(|_| ())),
        (404, "NotFound".to_owned())
    );
    let wrong_uid = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("another".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    assert_eq!(
        api_status(api.delete("s1", &wrong_uid).await.map(|_| ())),
        (409, "Conflict".to_owned())
    );
    api.delete("s1", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        api_status(api.delete("s1", &DeleteParams::default()).await.map(|_| ())),
        (404, "NotFound".to_owned())
    );
    let bad_selector = api
        .list(&kube::api::ListParams::default().labels("tier in db"))
        .await
        .map(|_| ());
    assert_eq!(api_status(bad_selector), (400, "BadRequest".to_owned()));
}

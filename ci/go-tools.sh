#!/usr/bin/env bash
# Builds, from their Go modules with the ordinary `go` client, the upstream tools the suites run as
# processes: csi-sanity, etcd, kube-apiserver, kube-controller-manager and the kubernetes-csi sidecars
# at exactly the versions charts/rds-csi/values.yaml pins, plus the snapshot CRDs of that
# external-snapshotter release. Each lands in .cache/go-tools/<name>-<version>/ (outside target/, so
# `cargo clean` keeps it); a tool whose directory is complete is neither fetched nor built again.
#
# Usage: bash ci/go-tools.sh          build what is missing, then print NAME=PATH lines
#        bash ci/go-tools.sh --print  only print NAME=PATH lines (exit 3 if something is missing)
# Exit status: 0 all there, 1 a build failed, 3 a tool is missing and could not be built (no go, or
# the module proxy refused a module).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache=$root/.cache/go-tools
values=charts/rds-csi/values.yaml

csi_test_version=v5.6.0
kubernetes_version=v1.36.3
# The chart's kubeVersion floor (charts/rds-csi/Chart.yaml): the chart is installed on this API
# server too.
kubernetes_floor_version=v1.29.15
etcd_version=v3.6.16

# The sidecar versions are the chart's: what runs in the cluster target is what the chart deploys.
chart_tag() {
  local image=$1
  awk -v image="$image" '
    $1 == "repository:" && $2 ~ ("/" image "$") { found = 1; next }
    found && $1 == "tag:" { print $2; exit }
  ' "$values"
}
provisioner_version=$(chart_tag csi-provisioner)
attacher_version=$(chart_tag csi-attacher)
resizer_version=$(chart_tag csi-resizer)
snapshotter_version=$(chart_tag csi-snapshotter)

fail() {
  echo "ci/go-tools.sh: FAILED: $*" >&2
  exit 1
}
unavailable() {
  echo "ci/go-tools.sh: TOOLS UNAVAILABLE: $*" >&2
  exit 3
}

# Every tool: NAME VERSION MODULE PACKAGE... (packages are relative to MODULE; `.` is the module).
tools=(
  "csi-sanity $csi_test_version github.com/kubernetes-csi/csi-test/v5 cmd/csi-sanity"
  "etcd $etcd_version go.etcd.io/etcd/server/v3 etcdmain"
  "kubernetes $kubernetes_version k8s.io/kubernetes cmd/kube-apiserver cmd/kube-controller-manager"
  "kubernetes-floor $kubernetes_floor_version k8s.io/kubernetes cmd/kube-apiserver cmd/kube-controller-manager"
  "csi-provisioner $provisioner_version github.com/kubernetes-csi/external-provisioner/v6 cmd/csi-provisioner"
  "csi-attacher $attacher_version github.com/kubernetes-csi/external-attacher/v4 cmd/csi-attacher"
  "csi-resizer $resizer_version github.com/kubernetes-csi/external-resizer/v2 cmd/csi-resizer"
  "external-snapshotter $snapshotter_version github.com/kubernetes-csi/external-snapshotter/v8 cmd/csi-snapshotter cmd/snapshot-controller"
)

# The go.mod of MODULE@VERSION, from the module proxy (or the module cache).
module_gomod() {
  go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p'
}
module_dir() {
  go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# A module that replaces its own dependencies with directories inside its repository (Kubernetes'
# staging modules, a sidecar's client module) cannot be built with `go install pkg@version`. A
# throw-away module requires it and replaces each such directory by the published module of the
# same release: for Kubernetes v1.X.Y the staging modules are published as v0.X.Y.
wrapper_replaces() {
  local module=$1 version=$2 gomod published
  gomod=$(module_gomod "$module" "$version")
  [ -n "$gomod" ] || return 1
  published=$version
  [ "$module" = k8s.io/kubernetes ] && published=v0.${version#v1.}
  # A directory replacement of a module the tool does not require (etcd's FORBIDDEN_DEPENDENCY
  # guards) is left out; one it requires becomes the published module at the same release.
  go mod edit -json "$gomod" | python3 -c '
import json, sys
mod, published = json.load(sys.stdin), sys.argv[1]
required = {r["Path"] for r in mod.get("Require") or []}
for r in mod.get("Replace") or []:
    old, new = r["Old"], r["New"]
    if new.get("Version"):
        print("replace %s => %s %s" % (old["Path"], new["Path"], new["Version"]))
    elif old["Path"] in required:
        print("replace %s => %s %s" % (old["Path"], old["Path"], published))
' "$published"
}

build_tool() {
  local name=$1 version=$2 module=$3
  shift 3
  local dest=$cache/$name-$version
  [ -f "$dest/.complete" ] && return 0
  command -v go >/dev/null || unavailable "go is not installed; it builds $name $version"
  echo "ci/go-tools.sh: building $name $version from $module (once; cached in ${dest#"$root"/})" >&2
  local work
  work=$(mktemp -d "$cache/.build-$name.XXXXXX")
  local -a packages=()
  local package
  for package in "$@"; do
    if [ "$package" = etcdmain ]; then
      continue
    fi
    packages+=("$module/$package")
  done
  (
    cd "$work"
    export GOFLAGS=-mod=mod GOWORK=off
    go mod init "rds-csi.local/tools/$name" >/dev/null 2>&1
    if ! replaces=$(wrapper_replaces "$module" "$version"); then
      exit 3
    fi
    printf '%s\n' "$replaces" >>go.mod
    if [ "$name" = etcd ]; then
      # etcd's own main package lives in another module; its whole body is this call.
      cat >main.go <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
      go get "$module/etcdmain@$version" >&2 || exit 3
      go mod tidy >&2 || exit 3
      go build -trimpath -ldflags='-s -w' -o "$work/bin/etcd" . >&2 || exit 1
    else
      local -a at=()
      for package in "${packages[@]}"; do at+=("$package@$version"); done
      go get "${at[@]}" >&2 || exit 3
      mkdir -p bin
      local ldflags="-s -w -X main.version=$version"
      if [ "$module" = k8s.io/kubernetes ]; then
        # A module build has no git tree to stamp the version from: without these, the API
        # server says v0.0.0-master and helm refuses any chart with a kubeVersion floor.
        local minor=${version#v1.}
        ldflags+=" -X k8s.io/component-base/version.gitVersion=$version"
        ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
        ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
      fi
      go build -trimpath -ldflags="$ldflags" -o "$work/bin/" "${packages[@]}" >&2 || exit 1
    fi
  ) || {
    local status=$?
    rm -rf "$work"
    [ $status -eq 3 ] && unavailable "the module proxy did not give $module@$version (see above)"
    fail "building $name $version"
  }
  rm -rf "$dest"
  mkdir -p "$dest"
  mv "$work/bin" "$dest/bin"
  rm -rf "$work"
  touch "$dest/.complete"
}

# The VolumeSnapshot CRDs of the same external-snapshotter release, from its client module.
fetch_snapshot_crds() {
  local dest=$cache/snapshot-crds-$snapshotter_version
  [ -f "$dest/.complete" ] && return 0
  local dir
  dir=$(module_dir github.com/kubernetes-csi/external-snapshotter/client/v8 "$snapshotter_version") ||
    unavailable "the module proxy did not give external-snapshotter/client/v8@$snapshotter_version"
  [ -d "$dir/config/crd" ] || fail "no config/crd in external-snapshotter/client/v8@$snapshotter_version"
  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$dir"/config/crd/snapshot.storage.k8s.io_*.yaml "$dest/"
  touch "$dest/.complete"
}

print_paths() {
  local entry name version dest
  for entry in "${tools[@]}"; do
    read -r name version _ <<<"$entry"
    dest=$cache/$name-$version
    [ -f "$dest/.complete" ] || unavailable "$name $version is not built; run bash ci/go-tools.sh"
    echo "$name=$dest/bin"
  done
  dest=$cache/snapshot-crds-$snapshotter_version
  [ -f "$dest/.complete" ] || unavailable "the snapshot CRDs are not fetched; run bash ci/go-tools.sh"
  echo "snapshot-crds=$dest"
}

mkdir -p "$cache"
if [ "${1:-}" != --print ]; then
  # Tests and scripts may run this concurrently: one build at a time.
  exec 9>"$cache/.lock"
  flock 9
  for entry in "${tools[@]}"; do
    # shellcheck disable=SC2086
    build_tool $entry
  done
  fetch_snapshot_crds
  flock -u 9
fi
print_paths

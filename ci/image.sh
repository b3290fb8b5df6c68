#!/usr/bin/env bash
# Builds the rds-csi image (Dockerfile) with this machine's Docker engine, no registry needed, tags
# it rds-csi:<the chart's appVersion> (the chart's default image), builds the rds-sim image beside
# it (rds-sim:<the same version>), and checks that both run.
#
# Where the base images can be pulled, the Dockerfile builds everything itself. Where they cannot
# (no registry, as on our CI machines), this script makes what it needs locally: the binary is
# compiled on the host (`--no-default-features`, stripped) and handed to the Dockerfile's
# `prebuilt` stage, and the runtime base is a minimal Debian made with debootstrap from Debian's
# package mirror, imported as rds-csi-runtime-base:bookworm.
#
# Usage: bash ci/image.sh        build, check, print the sizes
# Needs root where it must install and start a Docker engine (Debian's docker.io).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
version=$(awk '$1 == "appVersion:" { gsub(/"/, "", $2); print $2 }' charts/rds-csi/Chart.yaml)
tag=rds-csi:$version
sim_tag=rds-sim:$version
base=rds-csi-runtime-base:bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { echo "ci/image.sh: $*" >&2; }
fail() {
  say "FAILED: $*"
  exit 1
}

# Debian's client: its builder is BuildKit without the buildx plugin that newer clients need.
docker=docker
[ -x /usr/bin/docker ] && docker=/usr/bin/docker

pullable() { $docker pull -q "$1" >/dev/null 2>&1; }

runtime_base() {
  if pullable debian:bookworm-slim; then
    echo debian:bookworm-slim
    return
  fi
  if ! $docker image inspect "$base" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >/dev/null
    local rootfs
    rootfs=$(mktemp -d)
    say "debootstrap of a minimal bookworm with e2fsprogs, xfsprogs and util-linux into $rootfs"
    debootstrap --variant=minbase --include=e2fsprogs,xfsprogs,util-linux bookworm "$rootfs" \
      "$mirror" >"$root/.cache/image/debootstrap.log" 2>&1 ||
      fail "debootstrap (see .cache/image/debootstrap.log)"
    # What a runtime never reads: documentation, locales, package caches.
    rm -rf "$rootfs"/usr/share/{doc,man,info,locale} "$rootfs"/var/cache/apt/* \
      "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | $docker import - "$base" >/dev/null
    rm -rf "$rootfs"
  fi
  echo "$base"
}

bash ci/docker.sh || fail "no Docker engine (ci/docker.sh)"
mkdir -p "$root/.cache/image"
runtime=$(runtime_base)
args=(--build-arg "RUNTIME_IMAGE=$runtime")
# Our own base already has the tools: a RUN step needs no network.
[ "$runtime" = "$base" ] && args+=(--network none)
if pullable rust:1.95-bookworm; then
  args+=(--build-arg BINARY=build)
else
  say "no Rust image to pull: compiling the binary on the host"
  cargo build --release --locked -p rds-csi --no-default-features --bin rds-csi
  cargo build --release --locked -p rds-sim --bin rds-sim
  mkdir -p target/image
  strip -o target/image/rds-csi target/release/rds-csi
  strip -o target/image/rds-sim target/release/rds-sim
  args+=(--build-arg BINARY=prebuilt)
fi
DOCKER_BUILDKIT=1 $docker build "${args[@]}" --target runtime -t "$tag" . >&2 ||
  fail "docker build"
DOCKER_BUILDKIT=1 $docker build "${args[@]}" --target rds-sim -t "$sim_tag" . >&2 ||
  fail "docker build --target rds-sim"

# The image runs: the binary, the CLI the chart calls, and the node's tools.
$docker run --rm "$tag" --version
$docker run --rm "$tag" doctor --help >/dev/null || fail "rds-csi doctor --help in the image"
$docker run --rm "$tag" dev --help >/dev/null 2>&1 && fail "the image's binary carries rds-csi dev"
for tool in mkfs.ext4 resize2fs mkfs.xfs xfs_growfs; do
  flag=-V
  [ "$tool" = resize2fs ] && flag=-P
  $docker run --rm --user 0 --entrypoint "$tool" "$tag" $flag >/dev/null 2>&1 ||
    [ $? -ne 127 ] || fail "$tool does not run in the image"
done
# A real file system made in the image, as the node plugin would.
$docker run --rm --user 0 --entrypoint mkfs.ext4 "$tag" -q -F /tmp/probe 8M ||
  fail "mkfs.ext4 in the image"
[ "$($docker image inspect -f '{{.Config.User}}' "$tag")" = 65532:65532 ] ||
  fail "the image's user is not 65532"

# rds-sim serves SSH: its banner on the port it was told (the host's network: nothing to find out
# about the container's address). A port another program took meanwhile only costs a new try.
sim_answers() {
  local ssh_port=$((20000 + RANDOM % 20000)) container banner="" answered=1
  container=$($docker run -d --network host -e RDS_SIM_PASSWORD=probe "$sim_tag" \
    --data-dir /data --ssh-listen "127.0.0.1:$ssh_port" \
    --nvme-listen "127.0.0.1:$((ssh_port + 1))" --control-listen "127.0.0.1:$((ssh_port + 2))")
  for _ in $(seq 50); do
    banner=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$ssh_port && head -c 7 <&3" \
      2>/dev/null) && [ "$banner" = SSH-2.0 ] && answered=0 && break
    [ "$($docker inspect -f '{{.State.Running}}' "$container")" = true ] || break
    sleep 0.2
  done
  [ $answered = 0 ] || $docker logs "$container" >&2
  $docker rm -f "$container" >/dev/null
  return $answered
}
sim_answers || sim_answers || fail "rds-sim in its image did not answer SSH"

sim_size=$($docker image inspect -f '{{.Size}}' "$sim_tag")
echo "image $sim_tag: $((sim_size / 1024 / 1024)) MiB ($sim_size bytes)"
size=$($docker image inspect -f '{{.Size}}' "$tag")
binary=$(stat -c %s target/image/rds-csi 2>/dev/null || echo "?")
echo "image $tag: $((size / 1024 / 1024)) MiB ($size bytes); /usr/bin/rds-csi: $binary bytes"

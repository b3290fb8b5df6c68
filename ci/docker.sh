#!/usr/bin/env bash
# Starts a Docker engine when none answers: Debian's docker.io, installed when missing (as root).
# Idempotent: an engine that already answers is left as it is.
#
# The engine keeps its default bridge (docker0): the resilience suite gives rds-sim a network of
# its own whose address the host reaches and which the suite disconnects to cut the RDS off. No
# iptables rules: nothing here needs NAT or published ports, and the engine leaves the host's
# firewall alone.
#
# Usage: bash ci/docker.sh       prints nothing when the engine answers; exits 1 when it cannot
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

say() { echo "ci/docker.sh: $*" >&2; }

# Debian's client: newer clients want the buildx plugin for builds.
docker=docker
[ -x /usr/bin/docker ] && docker=/usr/bin/docker

$docker info >/dev/null 2>&1 && exit 0
if ! command -v dockerd >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    say "no Docker engine and not root: install docker.io (Debian) or start an engine"
    exit 1
  fi
  say "installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  }
  [ -x /usr/bin/docker ] && docker=/usr/bin/docker
fi
if [ "$(id -u)" -ne 0 ]; then
  say "the Docker engine is not running and starting it needs root"
  exit 1
fi
say "starting dockerd (default bridge, no iptables rules)"
mkdir -p "$root/.cache/docker"
# setsid: the engine outlives this script and the test run's process group.
setsid nohup dockerd --iptables=false >"$root/.cache/docker/dockerd.log" 2>&1 </dev/null &
for _ in $(seq 120); do
  $docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
say "dockerd did not start; the end of .cache/docker/dockerd.log:"
tail -20 "$root/.cache/docker/dockerd.log" >&2
exit 1

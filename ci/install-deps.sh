#!/usr/bin/env bash
# Installs, idempotently, the host packages the test suites use. Safe to run again: it installs only
# what is missing. Needs root (CI runs as root); elsewhere it says what is missing and goes on.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ssh || need+=(openssh-client)
have ssh-keygen || need+=(openssh-client)
have mkfs.ext4 || need+=(e2fsprogs)
have mkfs.xfs || need+=(xfsprogs)
have losetup || need+=(mount)
# The node fault suite interrupts mkfs.ext4 at a fixed write with strace's fault injection.
have strace || need+=(strace)
# The node plugin copied into the QEMU guest is stripped of its debug info first.
have strip || need+=(binutils)
# The cluster target signs ServiceAccount tokens with a key made by openssl.
have openssl || need+=(openssl)
# ci/go-tools.sh and ci/chart.sh take a lock so that concurrent tests build their tools once.
have flock || need+=(util-linux)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ci/install-deps.sh: missing ${need[*]}; run as root or install them" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

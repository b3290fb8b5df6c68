#!/usr/bin/env bash
# The test command: installs what the suites need, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install-deps.sh
if [ -x ci/qemu/build-guest.sh ] || [ -f ci/qemu/build-guest.sh ]; then
  bash ci/qemu/build-guest.sh
fi
# As root this script has installed QEMU and built the guest, so a suite that finds no guest is
# failing, not skipping (CI=true makes the QEMU suites say so).
if [ "$(id -u)" -eq 0 ]; then
  export CI="${CI:-true}"
fi
# Incremental artifacts double the size of target/ and a one-off build gains nothing from them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
exec cargo nextest run --workspace --no-fail-fast "$@"

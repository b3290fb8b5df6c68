#!/usr/bin/env bash
# The test command: installs what the suites need, then runs every test in the workspace.
# Everything it installs or builds is cached, so a second run fetches and builds none of it:
#   - host packages (ci/install-deps.sh), the QEMU guest (.cache/qemu);
#   - csi-sanity, etcd, kube-apiserver, kube-controller-manager, the chart's sidecars and the
#     snapshot CRDs, built from their Go modules (ci/go-tools.sh, .cache/go-tools);
#   - helm and kubectl (ci/chart.sh --tools, .cache/tools);
#   - cargo-nextest, pinned, from the Rust crate registry when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
nextest_version=0.9.128
bash ci/install-deps.sh
if [ -x ci/qemu/build-guest.sh ] || [ -f ci/qemu/build-guest.sh ]; then
  bash ci/qemu/build-guest.sh
fi
# As root this script has installed QEMU and built the guest, so a suite that finds no guest is
# failing, not skipping (CI=true makes the QEMU suites say so).
if [ "$(id -u)" -eq 0 ]; then
  export CI="${CI:-true}"
fi
# In CI a tool that cannot be built fails the run here; elsewhere the suites that need it say so
# and skip.
for tools in "ci/go-tools.sh" "ci/chart.sh --tools"; do
  # shellcheck disable=SC2086
  if ! bash $tools >/dev/null; then
    [ "${CI:-}" = true ] && exit 1
    echo "ci/test.sh: $tools failed; the suites that need its tools will skip" >&2
  fi
done
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked "cargo-nextest@$nextest_version"
fi
# Incremental artifacts double the size of target/ and a one-off build gains nothing from them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
exec cargo nextest run --workspace --no-fail-fast "$@"

#!/usr/bin/env bash
# The test command: installs what the suites need, then runs every test in the workspace.
# Everything it installs or builds is cached, so a second run fetches and builds none of it:
#   - host packages (ci/install-deps.sh), the QEMU guest (.cache/qemu);
#   - csi-sanity, etcd, kube-apiserver, kube-controller-manager, the chart's sidecars and the
#     snapshot CRDs, built from their Go modules (ci/go-tools.sh, .cache/go-tools);
#   - helm and kubectl (ci/chart.sh --tools, .cache/tools);
#   - cargo-nextest, pinned, from the Rust crate registry when it is missing;
#   - a Docker engine (ci/docker.sh: Debian's docker.io, started when none answers) and the
#     release rds-sim, which the resilience suite runs in a container (its image is made from
#     that binary by the suite, once per binary).
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
# Incremental artifacts double the size of target/ and a one-off build gains nothing from them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The upstream tools build while cargo installs nextest and builds the tests: on a fresh machine
# each takes minutes, and the Go side waits on downloads. In CI a tool that cannot be built fails
# the run; elsewhere the suites that need it say so and skip.
logs=target/ci-tools
mkdir -p "$logs"
bash ci/go-tools.sh >"$logs/go-tools.log" 2>&1 &
go_tools=$!
bash ci/chart.sh --tools >"$logs/chart-tools.log" 2>&1 &
chart_tools=$!
trap 'kill "$go_tools" "$chart_tools" 2>/dev/null || true' EXIT
if ! cargo nextest --version >/dev/null 2>&1; then
  # Without self-update: its HTTP client and archive readers are compile time the tests never use.
  cargo install --locked --no-default-features --features default-no-update \
    "cargo-nextest@$nextest_version"
fi
cargo nextest run --workspace --no-run
# The resilience suite's rds-sim container: an engine, and the release binary its image holds.
# Without an engine here the suite says why; in CI that fails it.
bash ci/docker.sh || echo "ci/test.sh: no Docker engine; the resilience suite will say so" >&2
cargo build --release --locked -p rds-sim --bin rds-sim
for job in "go-tools:$go_tools" "chart-tools:$chart_tools"; do
  if ! wait "${job#*:}"; then
    cat "$logs/${job%%:*}.log" >&2
    [ "${CI:-}" = true ] && exit 1
    echo "ci/test.sh: ${job%%:*} failed; the suites that need its tools will skip" >&2
  fi
done
exec cargo nextest run --workspace --no-fail-fast "$@"

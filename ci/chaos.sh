#!/usr/bin/env bash
# The long chaos job: rds-chaos drives rds-csi through its CSI API against an in-process rds-sim
# that injects every fault it has, one process per seed, all at once (a run mostly waits on
# injected latency and retries, not on the CPU). Each seed prints a progress line every
# --progress steps; at the end, each seed's summary (steps per second, faults per kind). A
# failing seed prints the command that replays it and a shrunk schedule, and fails the job.
#
#   bash ci/chaos.sh [--steps N] [--seeds "1 2 3 4 5"] [--progress N] [--shrink-runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=5000
seeds="1 2 3 4 5"
progress=500
shrink_runs=16
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --progress) progress="$2"; shift 2 ;;
    --shrink-runs) shrink_runs="$2"; shift 2 ;;
    *) echo "ci/chaos.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo build -p rds-chaos --bin rds-chaos
logs=target/chaos
mkdir -p "$logs"
pids=()
for seed in $seeds; do
  # Progress lines go to the terminal as they come; the summary and any failure to the log.
  target/debug/rds-chaos run --seed "$seed" --steps "$steps" --progress "$progress" \
    --shrink-runs "$shrink_runs" >"$logs/seed-$seed.log" &
  pids+=("$!")
done
failed=0
for pid in "${pids[@]}"; do
  wait "$pid" || failed=1
done
for seed in $seeds; do
  cat "$logs/seed-$seed.log"
done
exit "$failed"

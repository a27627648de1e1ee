#!/usr/bin/env bash
# Median of three: one node on the memory backend against two nodes on one Redis, with the same
# `load` bench (benches/load.rs), runs interleaved (memory, fleet, memory, fleet, …) so a change
# in the machine's load hits both modes alike. Prints every run's RESULT line, then the median of
# each mode's checks/s and latency percentiles, and the fleet's share of one memory node's
# throughput (issue 10's target: ≥ 80 %). Any failed run (a non-2xx answer, a socket error)
# stops the script.
#
#   benches/fleet-load.sh [SECONDS] [CONNECTIONS] [guest|host] [RUNS]     (defaults: 10 16 guest 3)
#
# Needs wrk and redis-server (apt-get install wrk redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-16}
crypto=${3:-guest}
runs=${4:-3}

# Build once, outside the measured runs.
cargo bench --bench load --no-run

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for run in $(seq 1 "$runs"); do
  for mode in memory fleet; do
    echo "== run $run/$runs: $mode" >&2
    line=$(cargo bench --bench load -- "$seconds" "$connections" "$crypto" "$mode" | tee /dev/stderr | grep '^RESULT ')
    echo "$line" >>"$results"
  done
done

echo
cat "$results"
echo
# The median of each field, per mode (odd run counts: the middle value; even: the lower middle).
median() { # mode field
  grep " mode=$1 " "$results" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2 | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
for mode in memory fleet; do
  printf '%-6s median of %s: %s checks/s, p50 %s ms, p75 %s ms, p90 %s ms, p99 %s ms\n' "$mode" "$runs" \
    "$(median "$mode" checks_per_s)" "$(median "$mode" p50_ms)" "$(median "$mode" p75_ms)" "$(median "$mode" p90_ms)" "$(median "$mode" p99_ms)"
done
awk -v f="$(median fleet checks_per_s)" -v m="$(median memory checks_per_s)" 'BEGIN { printf "fleet / memory: %.1f %%\n", 100 * f / m }'

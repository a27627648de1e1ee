#!/bin/bash
# One campaign: every target once until DEADLINE (unix seconds), the time left split by weight
# (parsers and the differential target get more). STREAMS (default 1) targets run side by side,
# one per core: the targets are dealt round-robin to the streams. Run from fuzz/:
#   tools/campaign.sh $(( $(date +%s) + 3600 ))
#   STREAMS=2 tools/campaign.sh $(( $(date +%s) + 3600 ))
# Logs: $LOGS/<target>.log (default /tmp/agentgate-fuzz-campaign); then tools/campaign-table.sh.
set -u
DEADLINE=$1
STREAMS=${STREAMS:-1}
LOGS=${LOGS:-/tmp/agentgate-fuzz-campaign}
# The corpora the runs read and grow (default: the committed ones; a scratch copy keeps them
# minimal until `-merge=1` folds in what is new).
CORPUS=${CORPUS:-corpus}
mkdir -p "$LOGS"
order=(jws revocation routing request_json entities_context config authzen forward_auth policy_index access_token dpop identity status_list engine differential)
declare -A weight=([jws]=12 [revocation]=10 [routing]=10 [request_json]=10 [entities_context]=10 [config]=8 [authzen]=10 [forward_auth]=10 [policy_index]=10 [access_token]=8 [dpop]=8 [identity]=7 [status_list]=7 [engine]=10 [differential]=12)

stream() { # targets…
  local mine=("$@")
  for i in "${!mine[@]}"; do
    local t=${mine[$i]}
    local left=$((DEADLINE - $(date +%s)))
    local wsum=0 u
    for u in "${mine[@]:$i}"; do wsum=$((wsum + weight[$u])); done
    local n=$(( left * weight[$t] / wsum - 15 ))   # about 15 s of start-up per run
    [ $n -lt 30 ] && n=30
    echo "$(date -u +%FT%TZ) $t max_total_time=$n" >> "$LOGS/summary.txt"
    nice -n 19 cargo +nightly fuzz run -O "$t" "$CORPUS/$t" -- -max_total_time=$n -print_final_stats=1 -rss_limit_mb=4096 > "$LOGS/$t.log" 2>&1
    echo "$(date -u +%FT%TZ) $t exit $?" >> "$LOGS/summary.txt"
  done
}

for s in $(seq 0 $((STREAMS - 1))); do
  mine=()
  for i in "${!order[@]}"; do
    [ $((i % STREAMS)) -eq "$s" ] && mine+=("${order[$i]}")
  done
  stream "${mine[@]}" &
done
wait

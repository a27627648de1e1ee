#!/bin/bash
# One campaign: every target once, one at a time, until DEADLINE (unix seconds), the time left
# split by weight (parsers and the differential target get more). Run from fuzz/:
#   tools/campaign.sh $(( $(date +%s) + 3600 ))
# Logs: $LOGS/<target>.log (default /tmp/agentgate-fuzz-campaign); then tools/campaign-table.sh.
set -u
DEADLINE=$1
LOGS=${LOGS:-/tmp/agentgate-fuzz-campaign}
mkdir -p "$LOGS"
order=(jws revocation routing request_json entities_context config authzen forward_auth access_token dpop identity status_list engine differential)
declare -A weight=([jws]=12 [revocation]=10 [routing]=10 [request_json]=10 [entities_context]=10 [config]=8 [authzen]=10 [forward_auth]=10 [access_token]=8 [dpop]=8 [identity]=7 [status_list]=7 [engine]=10 [differential]=12)
for i in "${!order[@]}"; do
  t=${order[$i]}
  left=$((DEADLINE - $(date +%s)))
  wsum=0; for u in "${order[@]:$i}"; do wsum=$((wsum + weight[$u])); done
  n=$(( left * weight[$t] / wsum - 15 ))   # about 15 s of start-up per run
  [ $n -lt 30 ] && n=30
  echo "$(date -u +%FT%TZ) $t max_total_time=$n" >> "$LOGS/summary.txt"
  nice -n 19 cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time=$n -print_final_stats=1 -rss_limit_mb=4096 > "$LOGS/$t.log" 2>&1
  echo "$(date -u +%FT%TZ) $t exit $?" >> "$LOGS/summary.txt"
done

#!/bin/bash
# The campaign table (docs/security.md, "Fuzzing") from tools/campaign.sh's logs: executions, exec/s, new units,
# coverage at start and end, corpus size, crash or not. Run from fuzz/.
LOGS=${LOGS:-/tmp/agentgate-fuzz-campaign}
printf "| target | seconds | executions | exec/s | new units | cov start → end | corpus files | result |\n|---|---|---|---|---|---|---|---|\n"
for t in jws revocation routing request_json entities_context config authzen forward_auth access_token dpop identity status_list engine differential; do
  f="$LOGS/$t.log"
  [ -f "$f" ] || continue
  secs=$(grep " $t max_total_time" "$LOGS/summary.txt" | tail -1 | sed 's/.*=//')
  ex=$(grep -a 'stat::number_of_executed_units' "$f" | tail -1 | awk '{print $2}')
  eps=$(grep -a 'stat::average_exec_per_sec' "$f" | tail -1 | awk '{print $2}')
  nu=$(grep -a 'stat::new_units_added' "$f" | tail -1 | awk '{print $2}')
  c0=$(grep -a 'INITED' "$f" | head -1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  c1=$(grep -aE '(NEW|REDUCE|pulse|DONE).*cov:' "$f" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  files=$(ls "corpus/$t" 2>/dev/null | wc -l)
  res=ok; grep -aqE 'panicked at|SUMMARY: AddressSanitizer|ERROR: libFuzzer' "$f" && res=CRASH
  printf "| %s | %s | %s | %s | %s | %s → %s | %s | %s |\n" "$t" "$secs" "$ex" "$eps" "$nu" "$c0" "$c1" "$files" "$res"
done

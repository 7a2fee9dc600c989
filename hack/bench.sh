#!/usr/bin/env bash
# Benchmarks, each next to its target or a reference measured in the same run:
#  1. gpuwarden server: binary size, start-to-ready on a cold and a warm data dir, RSS after
#     an idle period, SIGTERM-to-exit (the whole server, from exec to the ready line).
#  2. audit writer throughput with group commit, next to writing and fsyncing each event.
#  3. `gpuwarden events --user U --type gpu --since 7d` over 1,000,000 events, next to jq
#     running the same filter on the same file.
#  4. allocation create→Bound latency (p50/p99) and binds/s at 50 concurrent requests on the
#     embedded API server, next to the bare API round trip (create, status write, watch).
# IDLE_SECONDS (default 60) sets the idle period; RUNS (default 3) the warm starts;
# SKIP_SERVER=1 skips part 1.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build >/dev/null
bin=bin/gpuwarden
idle=${IDLE_SECONDS:-60}
runs=${RUNS:-3}
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$dir"; true' EXIT

start_server() {
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" server --data-dir "$dir/data" --api-port 0 --metrics-bind-address 0 --health-probe-bind-address 0 \
    --fake-gpus h100-mig >"$dir/out" 2>&1 &
  pid=$!
  until grep -q "is ready" "$dir/out"; do
    kill -0 $pid 2>/dev/null || { cat "$dir/out"; exit 1; }
    sleep 0.02
  done
  t1=$(date +%s.%N)
  elapsed=$(echo "$t1 - $t0" | bc)
}

stop_server() {
  local t0 t1
  t0=$(date +%s.%N)
  kill -TERM $pid
  wait $pid
  t1=$(date +%s.%N)
  elapsed=$(echo "$t1 - $t0" | bc)
}

for tool in bc jq; do
  command -v $tool >/dev/null || { apt-get update -qq; apt-get install -y -qq $tool >/dev/null; }
done
if [ -z "${SKIP_SERVER:-}" ]; then
printf "binary size:            %s bytes (%s MiB)\n" "$(stat -c %s $bin)" "$(( $(stat -c %s $bin) / 1048576 ))"
start_server
printf "start to ready, cold:   %.2f s   (target <= 2.5 s)\n" "$elapsed"
sleep "$idle"
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
printf "RSS after %ss idle:     %d kB = %d MiB   (target <= 250 MB)\n" "$idle" "$rss" "$((rss / 1024))"
stop_server
printf "SIGTERM to exit:        %.2f s\n" "$elapsed"
for i in $(seq 1 "$runs"); do
  start_server
  printf "start to ready, warm %d: %.2f s   (target <= 2.5 s)\n" "$i" "$elapsed"
  stop_server
done
fi

echo
echo "== audit writer (go test -bench)"
go test -run XXX -bench 'WriterGroupCommit|WriterSyncPerEvent' -benchtime 2s ./internal/audit/ | grep -E '^Benchmark'

echo
echo "== query over 1,000,000 events: gpuwarden events vs jq"
log=$dir/audit/events.jsonl
go run ./hack/genlog -file "$log" -n 1000000
printf "log: %s bytes\n" "$(stat -c %s "$log")"
since=$(date -u -d '7 days ago' +%Y-%m-%dT%H:%M:%S)
best() { # best wall time of 3 runs of "$@", in seconds
  local b=999 t0 t1 t
  for _ in 1 2 3; do
    t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N)
    t=$(echo "$t1 - $t0" | bc); (( $(echo "$t < $b" | bc) )) && b=$t
  done
  echo "$b"
}
jq_filter='select(.user == "user07" and (.event_type == "gpu" or (.event_type | startswith("gpu."))) and .timestamp >= $since)'
n_jq=$(jq -c --arg since "$since" "$jq_filter" "$log" | wc -l)
n_gw=$("$bin" events --file "$log" --user user07 --type gpu --since 7d --limit 0 --json | wc -l)
t_jq=$(best jq -c --arg since "$since" "$jq_filter" "$log")
t_gw=$(best "$bin" events --file "$log" --user user07 --type gpu --since 7d --limit 0 --json)
printf "jq:                %.3f s (%d events)\n" "$t_jq" "$n_jq"
printf "gpuwarden events:  %.3f s (%d events)\n" "$t_gw" "$n_gw"
printf "speed-up:          %.1fx   (target >= 20x)\n" "$(echo "$t_jq / $t_gw" | bc -l)"
[ "$n_jq" = "$n_gw" ] || echo "WARNING: jq found $n_jq events, gpuwarden events $n_gw"

echo
echo "== allocation on the embedded API server (50 concurrent requests, 64 simulated GPUs)"
CGO_CFLAGS=${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations} go test -run XXX -bench 'BenchmarkAllocation|BenchmarkAPIRoundTrip' -benchtime 1000x ./test/integration/ 2>/dev/null | grep -E '^Benchmark|ns/op'
echo "targets: p99 < 100 ms, >= 200 binds/s"

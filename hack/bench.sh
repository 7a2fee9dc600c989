#!/usr/bin/env bash
# Benchmarks of gpuwarden server: binary size, start-to-ready on a cold and a warm data dir,
# RSS after an idle period, and SIGTERM-to-exit, each printed next to its target. The numbers
# are for the whole server (control plane, CRDs and controllers), from exec to the ready line.
# IDLE_SECONDS (default 60) sets the idle period; RUNS (default 3) the warm starts.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build >/dev/null
bin=bin/gpuwarden
idle=${IDLE_SECONDS:-60}
runs=${RUNS:-3}
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$dir"' EXIT

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

command -v bc >/dev/null || { apt-get install -y -qq bc >/dev/null; }
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

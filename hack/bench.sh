#!/usr/bin/env bash
# Benchmarks, each next to its target or a reference measured in the same run:
#  1. gpuwarden server: binary size, start-to-ready on a cold and a warm data dir, RSS after
#     an idle period, SIGTERM-to-exit (the whole server, from exec to the ready line).
#  1b. idle reclaim over a seeded lab week (GPU-hours idle beyond the timeout: none / hourly
#      sweep / gpuwarden), and the cost of one sample round with 200 containers.
#  2. audit writer throughput with group commit, next to writing and fsyncing each event.
#  3. `gpuwarden events --user U --type gpu --since 7d` over 1,000,000 events, next to jq
#     running the same filter on the same file.
#  4. allocation create→Bound latency (p50/p99) and binds/s at 50 concurrent requests on the
#     embedded API server, next to the bare API round trip (create, status write, watch).
#  5. `docker rm` to the allocation Released (p50/p99), next to the engine's own destroy event
#     reaching a bare events client.
#  6. CPU of `gpuwarden server` watching 200 idle containers over CPU_SECONDS (default 600),
#     next to a server that watches no Docker engine, run at the same time, and dockerd.
#  7. /metrics: one scrape with 8 GPUs, 56 MIG instances and 200 containers (p50/p99), next
#     to a bare controller-runtime registry; the server's CPU scraped every 15 s over
#     METRICS_CPU_SECONDS (default 300), next to the same server with metrics off.
#  8. the Docker gateway: `docker run --rm` through it vs straight at the engine (target
#     ratio <= 1.15), `docker ps -a` with 200 containers (<= 1.2), `docker run --gpus 1 --rm`
#     through it vs `docker run --rm` straight, and bytes/s of `docker exec … cat` of 256 MiB
#     (>= 0.8). GATEWAY_RUNS (default 20) sets the runs; SKIP_GATEWAY=1 skips it.
# IDLE_SECONDS (default 60) sets the idle period; RUNS (default 3) the warm starts;
# SKIP_SERVER=1 skips part 1; SKIP_CPU=1 parts 6 and 7.
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
echo "== idle reclaim over a seeded lab week (40 users, 8 GPUs): no policy, hourly sweep, gpuwarden at 60 s"
go test -run XXX -bench 'BenchmarkLabWeek' -benchtime 1x ./internal/lifecycle/labweek/ | grep -E '^Benchmark'
echo "== one sample round over 200 running GPU containers, next to its stats calls and GPU read alone"
go test -run XXX -bench 'BenchmarkSampleRound' -benchtime 50x ./controllers/ | grep -E '^Benchmark'

echo "== /metrics with 8 GPUs in 56 MIG instances and 200 running GPU containers, next to a bare controller-runtime registry"
go test -run XXX -bench 'BenchmarkScrape' -benchtime 500x ./controllers/ | grep -E '^Benchmark'
echo "target: p99 < 20 ms"
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

echo
echo "== docker rm to allocation Released (real engine, embedded API server)"
CGO_CFLAGS=${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations} go test -run XXX -bench 'BenchmarkDockerRemoveToReleased' -benchtime 100x ./test/integration/ 2>/dev/null | grep -E '^Benchmark|ns/op'
echo "target: p99 < 1 s (DS01: up to an hour)"

if [ -z "${SKIP_CPU:-}" ]; then
echo
cpu_seconds=${CPU_SECONDS:-600}
echo "== CPU over ${cpu_seconds}s with 200 idle containers"
sock=/run/gpuwarden-test/bench.sock
GPUWARDEN_TEST_DOCKER_SOCK=$sock GPUWARDEN_DOCKER_STATE=/var/lib/gpuwarden-test/bench hack/docker-up.sh >/dev/null
export DOCKER_HOST=unix://$sock
docker rm -f $(docker ps -aq) >/dev/null 2>&1 || true
seq 1 200 | xargs -P 4 -I{} docker run -d --name idle-{} --label gpuwarden.io/user=user$(( RANDOM % 20 )) \
  gpuwarden-test/busybox:latest sleep 1000000 >/dev/null
ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
serve() { # name, docker host
  "$bin" server --data-dir "$dir/$1" --api-port 0 --metrics-bind-address 0 --health-probe-bind-address 0 \
    --fake-gpus h100x8 --docker-host "$2" --audit-log "$dir/$1.jsonl" >"$dir/$1.out" 2>&1 &
  echo $!
}
watched=$(serve watched "$DOCKER_HOST")
ref=$(serve reference none)
until [ "$(grep -l "is ready" "$dir/watched.out" "$dir/reference.out" 2>/dev/null | wc -l)" -eq 2 ]; do
  kill -0 $watched 2>/dev/null && kill -0 $ref 2>/dev/null || { cat "$dir"/*.out; exit 1; }
  sleep 0.2
done
sleep 10 # let start-up settle: the first relist of 200 containers is not idle work
dockerd_pid=$(cat /var/lib/gpuwarden-test/bench/dockerd.pid)
w0=$(ticks $watched); r0=$(ticks $ref); d0=$(ticks $dockerd_pid)
sleep "$cpu_seconds"
w1=$(ticks $watched); r1=$(ticks $ref); d1=$(ticks $dockerd_pid)
hz=$(getconf CLK_TCK)
pct() { echo "scale=3; 100 * ($1) / $hz / $cpu_seconds" | bc; }
printf "gpuwarden server watching 200 containers: %s%% of a core\n" "$(pct "$w1 - $w0")"
printf "reference server, no Docker:              %s%% of a core\n" "$(pct "$r1 - $r0")"
printf "difference (the container controllers):   %s%% of a core\n" "$(pct "($w1 - $w0) - ($r1 - $r0)")"
printf "dockerd itself:                           %s%% of a core\n" "$(pct "$d1 - $d0")"
grep -q "Docker engine unreachable" "$dir/watched.out" && echo "WARNING: the watched server could not reach Docker"
kill $watched $ref; wait $watched $ref 2>/dev/null || true
docker rm -f $(docker ps -aq) >/dev/null 2>&1 || true
kill "$dockerd_pid"
fi

if [ -z "${SKIP_CPU:-}" ]; then
echo
metrics_seconds=${METRICS_CPU_SECONDS:-300}
echo "== CPU over ${metrics_seconds}s scraped every 15 s, next to the same server with metrics off (h100-mig, no Docker)"
mport=$(( 20000 + RANDOM % 20000 ))
"$bin" server --data-dir "$dir/scraped" --api-port 0 --metrics-bind-address "127.0.0.1:$mport" --health-probe-bind-address 0 \
  --fake-gpus h100-mig --docker-host none --audit-log "$dir/scraped.jsonl" >"$dir/scraped.out" 2>&1 &
scraped=$!
"$bin" server --data-dir "$dir/dark" --api-port 0 --metrics-bind-address 0 --health-probe-bind-address 0 \
  --fake-gpus h100-mig --docker-host none --audit-log "$dir/dark.jsonl" >"$dir/dark.out" 2>&1 &
dark=$!
until [ "$(grep -l "is ready" "$dir/scraped.out" "$dir/dark.out" 2>/dev/null | wc -l)" -eq 2 ]; do
  kill -0 $scraped 2>/dev/null && kill -0 $dark 2>/dev/null || { cat "$dir"/scraped.out "$dir"/dark.out; exit 1; }
  sleep 0.2
done
sleep 10
s0=$(ticks $scraped); k0=$(ticks $dark); t_end=$(( $(date +%s) + metrics_seconds ))
while [ "$(date +%s)" -lt "$t_end" ]; do curl -sf "127.0.0.1:$mport/metrics" >/dev/null; sleep 15; done
s1=$(ticks $scraped); k1=$(ticks $dark)
hz=$(getconf CLK_TCK)
printf "scraped every 15 s:   %s%% of a core\n" "$(echo "scale=3; 100 * ($s1 - $s0) / $hz / $metrics_seconds" | bc)"
printf "metrics off:          %s%% of a core\n" "$(echo "scale=3; 100 * ($k1 - $k0) / $hz / $metrics_seconds" | bc)"
kill $scraped $dark; wait $scraped $dark 2>/dev/null || true
fi

if [ -z "${SKIP_GATEWAY:-}" ]; then
echo
echo "== the Docker gateway vs the engine itself"
sock=/run/gpuwarden-test/bench.sock
GPUWARDEN_TEST_DOCKER_SOCK=$sock GPUWARDEN_DOCKER_STATE=/var/lib/gpuwarden-test/bench hack/docker-up.sh >/dev/null
engine=unix://$sock
gwdir=$(mktemp -d) # reachable by the unprivileged user the runs go as
chmod 755 "$gwdir"
gw=$gwdir/docker.sock
"$bin" server --data-dir "$dir/gwserver" --api-port 0 --metrics-bind-address 0 --health-probe-bind-address 0 \
  --fake-gpus h100x8 --docker-host "$engine" --gateway-socket "$gw" --audit-log "$dir/gw.jsonl" >"$dir/gw.out" 2>&1 &
gwpid=$!
until grep -q "is ready" "$dir/gw.out"; do kill -0 $gwpid 2>/dev/null || { cat "$dir/gw.out"; exit 1; }; sleep 0.2; done
sleep 2
runs=${GATEWAY_RUNS:-20}
img=gpuwarden-test/busybox:latest
# Through the gateway as an unprivileged user (its checks run), straight as root; both
# through runuser, so that its own cost is on both sides.
id gwbench >/dev/null 2>&1 || useradd -m gwbench
who_for() { [ "$1" = "$engine" ] && echo root || echo gwbench; }
timed() { # host, runs, docker args…
  local host=$1 n=$2; shift 2
  local t0 t1 who
  who=$(who_for "$host")
  t0=$(date +%s.%N)
  for _ in $(seq "$n"); do runuser -u "$who" -- env DOCKER_HOST="$host" HOME=/tmp docker "$@" >/dev/null; done
  t1=$(date +%s.%N)
  echo "($t1 - $t0) / $n" | bc -l
}
direct=$(timed "$engine" "$runs" run --rm $img true)
through=$(timed "unix://$gw" "$runs" run --rm $img true)
printf "docker run --rm:         direct %.3f s, gateway %.3f s, ratio %.2f (target <= 1.15)\n" "$direct" "$through" "$(echo "$through / $direct" | bc -l)"
gpu=$(timed "unix://$gw" "$runs" run --rm --gpus 1 $img true)
printf "docker run --gpus 1 --rm through the gateway: %.3f s, vs docker run --rm direct: ratio %.2f\n" "$gpu" "$(echo "$gpu / $direct" | bc -l)"
DOCKER_HOST=$engine docker rm -f $(DOCKER_HOST=$engine docker ps -aq) >/dev/null 2>&1 || true
seq 1 200 | xargs -P 4 -I{} runuser -u gwbench -- env DOCKER_HOST="unix://$gw" HOME=/tmp docker create --name ps-{} $img true >/dev/null
direct=$(timed "$engine" "$runs" ps -a)
through=$(timed "unix://$gw" "$runs" ps -a)
printf "docker ps -a, 200:       direct %.3f s, gateway %.3f s, ratio %.2f (target <= 1.2)\n" "$direct" "$through" "$(echo "$through / $direct" | bc -l)"
DOCKER_HOST=$engine docker rm -f $(DOCKER_HOST=$engine docker ps -aq) >/dev/null 2>&1 || true
runuser -u gwbench -- env DOCKER_HOST="unix://$gw" HOME=/tmp docker run -d --name cat-src $img sleep 3600 >/dev/null
bytes=$((256 << 20))
stream() { # host
  local t0 t1
  t0=$(date +%s.%N)
  runuser -u "$(who_for "$1")" -- env DOCKER_HOST="$1" HOME=/tmp docker exec cat-src sh -c "head -c $bytes /dev/zero" | wc -c >/dev/null
  t1=$(date +%s.%N)
  echo "$bytes / ($t1 - $t0)" | bc -l
}
direct=$(stream "$engine")
through=$(stream "unix://$gw")
printf "docker exec cat, 256 MiB: direct %.0f MB/s, gateway %.0f MB/s, ratio %.2f (target >= 0.8)\n" \
  "$(echo "$direct / 1000000" | bc -l)" "$(echo "$through / 1000000" | bc -l)" "$(echo "$through / $direct" | bc -l)"
DOCKER_HOST=$engine docker rm -f cat-src >/dev/null 2>&1 || true
kill $gwpid; wait $gwpid 2>/dev/null || true
rm -rf "$gwdir"
kill "$(cat /var/lib/gpuwarden-test/bench/dockerd.pid)" 2>/dev/null || true
fi

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
#  9. allocation across simulated nodes: 1, 20 and 50 `gpuwarden controller --cluster-allocator`
#     (NODES="1 20 50"; quick: 1 and 3) against one API server, 8 requests per node at once
#     (hack/burst), under a PerUser quota over 40 users and under one Shared quota: binds/s,
#     p50/p99, API writes and ledger conflicts per bind, next to part 4's single node; the
#     elected allocator's CPU and RSS. SKIP_NODES=1 skips it.
# IDLE_SECONDS (default 60) sets the idle period; RUNS (default 3) the warm starts;
# SKIP_SERVER=1 skips part 1; SKIP_CPU=1 parts 6 and 7.
#
# Every figure also becomes a row of BENCH_REPORT (default docs/benchmarks.md): the figure,
# gpuwarden's number, its reference from the same run, the target and met / not met, under
# the machine, date and commit. BENCH_QUICK=1 (make bench QUICK=1; CI) runs each part briefly
# and skips the long CPU measurements, to check that the report is produced.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build >/dev/null
quick=${BENCH_QUICK:-}
if [ -n "$quick" ]; then
  : "${IDLE_SECONDS:=5}" "${RUNS:=1}" "${SKIP_CPU:=1}" "${GATEWAY_RUNS:=3}"
fi
report=${BENCH_REPORT:-docs/benchmarks.md}
n_events=$([ -n "$quick" ] && echo 100000 || echo 1000000)
n_containers=$([ -n "$quick" ] && echo 20 || echo 200)
bt() { [ -n "$quick" ] && echo "${2:-5x}" || echo "$1"; } # benchtime: full, quick
bin=bin/gpuwarden
idle=${IDLE_SECONDS:-60}
runs=${RUNS:-3}
dir=$(mktemp -d)
pid=
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$dir"; }
trap cleanup EXIT
rows=$dir/rows.tsv
: >"$rows"
# row FIGURE GPUWARDEN REFERENCE TARGET MET: one line of the report.
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$rows"; }
# metric NAME UNIT: the value before UNIT on the benchmark line whose name matches NAME (stdin).
metric() { awk -v n="$1" -v u="$2" '$1 ~ n { for (i = 2; i < NF; i++) if ($(i+1) == u) { print $i; exit } }'; }
# benchlines: go test -bench output as one line per benchmark, with the log lines a
# benchmark's own process printed between its name and its results taken out.
benchlines() {
  sed 's/{"level".*$//; s/^[IWE][0-9]\{4\} .*$//' | awk '
    /^Benchmark/ && !/ns\/op/ { pending = $1; next }
    pending != "" && /ns\/op/ { print pending " " $0; pending = ""; next }
    /^Benchmark/ { print }'
}
# verdict EXPR: met when bc finds EXPR true.
verdict() { if [ -n "$1" ] && (( $(echo "$1" | bc -l 2>/dev/null || echo 0) )); then echo met; else echo "**not met**"; fi; }
ratio() { echo "scale=2; $1 / $2" | bc -l 2>/dev/null || echo "?"; }
write_report() {
  mkdir -p "$(dirname "$report")"
  {
    echo "# gpuwarden benchmarks"
    echo
    echo "Produced by \`make bench\`$([ -n "$quick" ] && echo " (quick mode: brief runs, not for comparison)") on $(uname -n): $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r);"
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet -- . ":(exclude)$report" 2>/dev/null || echo ' (with uncommitted changes)')."
    echo "Each figure is measured next to its reference in the same run; targets are ratios to the"
    echo "reference where the issue sets one, so that a shared, noisy machine says little about them."
    echo
    echo "| Figure | gpuwarden | Reference (same run) | Target | |"
    echo "|---|---|---|---|---|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$rows"
    echo
    echo "Not measured by this script: the chaos suite's rounds (\`make test-chaos\`) and the soak (\`make soak\`, \`docs/soak.md\`)."
  } >"$report"
  echo "report: $report"
}
start_server() {
  local t0 t1
  # Emptied here, not by the redirection below: that happens in the child, and the loop
  # could otherwise find the previous run's ready line first.
  : >"$dir/out"
  t0=$(date +%s.%N)
  "$bin" server --web-bind-address 0 --data-dir "$dir/data" --api-port 0 --metrics-bind-address 0 --health-probe-bind-address 0 \
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
row "\`gpuwarden server\` start to ready, cold data dir" "$(printf %.2f "$elapsed") s" "–" "≤ 2.5 s" "$(verdict "$elapsed <= 2.5")"
sleep "$idle"
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
printf "RSS after %ss idle:     %d kB = %d MiB   (target <= 250 MB)\n" "$idle" "$rss" "$((rss / 1024))"
row "\`gpuwarden server\` RSS after ${idle} s idle" "$((rss / 1024)) MiB" "–" "≤ 250 MB" "$(verdict "$rss * 1024 <= 250000000")"
stop_server
printf "SIGTERM to exit:        %.2f s\n" "$elapsed"
for i in $(seq 1 "$runs"); do
  start_server
  printf "start to ready, warm %d: %.2f s   (target <= 2.5 s)\n" "$i" "$elapsed"
  [ "$i" = 1 ] && row "\`gpuwarden server\` start to ready, warm" "$(printf %.2f "$elapsed") s" "–" "≤ 2.5 s" "$(verdict "$elapsed <= 2.5")"
  stop_server
done
fi

echo
echo "== idle reclaim over a seeded lab week (40 users, 8 GPUs): no policy, hourly sweep, gpuwarden at 60 s"
out=$(go test -run XXX -bench 'BenchmarkLabWeek' -benchtime 1x ./internal/lifecycle/labweek/ | grep -E '^Benchmark'); echo "$out"
gw_beyond=$(echo "$out" | metric LabWeek gpuwarden-beyond-GPUh); hourly=$(echo "$out" | metric LabWeek hourly-beyond-GPUh)
row "Lab-week replay: idle GPU-hours beyond the timeout" "$gw_beyond GPU-h ($(echo "$out" | metric LabWeek gpuwarden-busy-stopped) busy stopped)" "hourly sweep $hourly GPU-h, no policy $(echo "$out" | metric LabWeek none-beyond-GPUh)" "below the hourly sweep, 0 busy stopped" "$(verdict "$gw_beyond < $hourly && $(echo "$out" | metric LabWeek gpuwarden-busy-stopped) == 0")"
echo
echo "== the queue over five seeded contended weeks (4 heavy and 12 light users, 8 GPUs): FIFO order, then fair share"
out=$(go test -run XXX -bench 'BenchmarkQueueWeek' -benchtime 1x ./internal/allocation/queueweek/ | grep -E '^Benchmark'); echo "$out"
q() { echo "$out" | metric QueueWeek "$1"; }
qh() { printf '%.1f h' "$(echo "$(q "$1") / 60" | bc -l)"; }
row "Queue over contended weeks: light users' p95 wait, fair share" "$(qh fair-light-p95-min) (heavy users' $(qh fair-heavy-p95-min))" "FIFO: $(qh fifo-light-p95-min) (heavy users' $(qh fifo-heavy-p95-min))" "≤ 0.5× FIFO" "$(verdict "$(q fair-light-p95-min) <= 0.5 * $(q fifo-light-p95-min)") ($(ratio "$(q fair-light-p95-min)" "$(q fifo-light-p95-min)")×)"
row "Queue over contended weeks: GPU-hours allocated, fair share" "$(q fair-GPUh) GPU-h" "FIFO: $(q fifo-GPUh) GPU-h" "no more than 2 % below FIFO" "$(verdict "$(q fair-GPUh) >= 0.98 * $(q fifo-GPUh)") ($(ratio "$(q fair-GPUh)" "$(q fifo-GPUh)")×)"
row "Queue: latestStart broken, among waiting requests no later arrival overtook (both orders)" "$(q broken) of $(q promised)" "–" "0" "$(verdict "$(q broken) == 0")"
row "Queue: estimatedStart, median absolute error over the real wait, fair share" "$(q fair-estimate-error-pct) %" "FIFO: $(q fifo-estimate-error-pct) %" "≤ 25 %" "$(verdict "$(q fair-estimate-error-pct) <= 25")"
echo
echo "== borrowing over three seeded lab weeks (4 users with a quota of 2, 8 GPUs): off, then on; and a month of GPU-hour budgets"
out=$(go test -run XXX -bench 'BenchmarkBorrowWeek' -benchtime 1x ./internal/allocation/borrowweek/ | grep -E '^Benchmark'); echo "$out"
bw() { echo "$out" | metric BorrowWeek "$1"; }
row "Borrowing: GPU-hours used over the weeks" "$(bw on-GPUh) GPU-h" "borrowing off: $(bw off-GPUh) GPU-h" "≥ 15 % more" "$(verdict "$(bw on-GPUh) >= 1.15 * $(bw off-GPUh)") ($(ratio "$(bw on-GPUh)" "$(bw off-GPUh)")×)"
row "Borrowing: p95 wait of requests within their quota" "$(bw on-inquota-p95-s) s" "borrowing off: $(bw off-inquota-p95-s) s" "≤ off + one sample interval (60 s)" "$(verdict "$(bw on-inquota-p95-s) <= $(bw off-inquota-p95-s) + 60")"
row "Borrowing: give-backs, and delay from the give-back for a waiting request within its quota to its bind (hooks ≤ 2 min, grace 60 s)" "$(bw reclaims) give-backs; p50 $(bw delay-p50-s) s, p99 $(bw delay-p99-s) s" "–" "≤ hook timeout + grace + a pass" "$(verdict "$(bw delay-p99-s) <= 120 + 60 + 12")"
row "Budgets: a month in which two users pass theirs: requests granted beyond a budget" "$(bw budget-granted-beyond) ($(bw budget-users-over) users over, $(bw budget-refused) refused; at most $(bw budget-max-overrun-GPUh) GPU-h past by holds granted before)" "–" "0" "$(verdict "$(bw budget-granted-beyond) == 0")"
echo
echo "== reservations over three seeded lab weeks (20 users, 8 GPUs; Stop and Wait bookings, some made mid-week or at little notice): backfill, then the devices held idle from acceptance"
out=$(go test -run XXX -bench 'BenchmarkReserveWeek' -benchtime 1x ./internal/reservation/reserveweek/ | grep -E '^Benchmark'); echo "$out"
rw() { echo "$out" | metric ReserveWeek "$1"; }
rwn() { printf %.0f "$(rw "$1")"; } # a count, as a whole number
row "Reservations: starts late (reserved devices not all free for its users a pass after the start), Wait starts held up by work from before their acceptance aside" "$(echo "$(rwn late) - $(rwn late-wait-before-accept)" | bc) of $(rwn occurrences): $(rwn late-stopping) while a Stop start's holders were being stopped (at most $(rwn late-stopping-max-s) s), $(rwn late-other-rsv) by another reservation's user on its own devices (Mine; at most $(rwn late-other-rsv-max-min) min), $(rwn late-backfill) by work backfill let in" "held idle from acceptance: $(echo "$(rwn ref-late) - $(rwn ref-late-wait-before-accept)" | bc)" "0" "$(verdict "$(rwn late) - $(rwn late-wait-before-accept) == 0")"
row "Reservations: Wait starts late for work that held the devices before the booking was accepted (counted apart)" "$(rwn late-wait-before-accept) of $(rwn occurrences) (at most $(printf %.1f "$(rw late-before-accept-max-h)") h)" "held idle from acceptance: $(rwn ref-late-wait-before-accept)" "report" "–"
row "Reservations: reserved GPU-hours before the starts used by backfill" "$(printf %.1f "$(rw backfill-pct)") % ($(rwn backfill-GPUh) of $(rwn prestart-GPUh) GPU-h; $(rwn GPUh) GPU-h held in all)" "held idle from acceptance: $(rwn ref-backfill-pct) % ($(rwn ref-GPUh) GPU-h held in all)" "≥ 50 %" "$(verdict "$(rw backfill-pct) >= 50")"
row "Reservations: busy containers stopped by a Wait reservation" "$(rwn wait-stopped) (Stop reservations stopped $(rwn stop-stopped); $(rwn rejected) bookings rejected)" "held idle from acceptance: Stop reservations stopped $(rwn ref-stop-stopped)" "0" "$(verdict "$(rwn wait-stopped) == 0")"
echo "== one sample round over 200 running GPU containers, next to its stats calls and GPU read alone"
out=$(go test -run XXX -bench 'BenchmarkSampleRound' -benchtime "$(bt 50x 5x)" ./controllers/reclaim/ | grep -E '^Benchmark'); echo "$out"
r=$(echo "$out" | metric 'SampleRound/round' ns/op); ref=$(echo "$out" | metric 'SampleRound/reference' ns/op)
row "Sample round, 200 GPU containers" "$(echo "scale=1; $r / 1000000" | bc) ms" "its stats calls and GPU read alone: $(echo "scale=1; $ref / 1000000" | bc) ms" "–" "ratio $(ratio "$r" "$ref")"

echo "== /metrics with 8 GPUs in 56 MIG instances and 200 running GPU containers, next to a bare controller-runtime registry"
out=$(go test -run XXX -bench 'BenchmarkScrape' -benchtime "$(bt 500x 20x)" ./controllers/governance/ | grep -E '^Benchmark'); echo "$out"
echo "target: p99 < 20 ms"
p99=$(echo "$out" | metric 'Scrape/gpuwarden' p99-ms); bare=$(echo "$out" | metric 'Scrape/bare' p99-ms)
row "/metrics scrape p99 (8 GPUs, 56 MIG, 200 containers)" "$p99 ms" "bare controller-runtime registry $bare ms" "< 20 ms" "$(verdict "$p99 < 20")"
echo
echo "== audit writer (go test -bench)"
out=$(go test -run XXX -bench 'WriterGroupCommit|WriterSyncPerEvent' -benchtime "$(bt 2s 200ms)" ./internal/audit/ | grep -E '^Benchmark'); echo "$out"
gc=$(echo "$out" | metric GroupCommit events/s); sync=$(echo "$out" | metric SyncPerEvent events/s)
row "Audit writer throughput (group commit)" "$gc events/s" "write + fsync per event: $sync events/s" "–" "ratio $(ratio "$gc" "$sync")"

echo
echo "== query over $n_events events: gpuwarden events vs jq"
log=$dir/audit/events.jsonl
go run ./hack/genlog -file "$log" -n "$n_events"
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
row "\`gpuwarden events --user --type --since\` over $n_events events" "$(printf %.3f "$t_gw") s" "jq, same filter: $(printf %.3f "$t_jq") s" "≥ 20× faster" "$(verdict "$t_jq / $t_gw >= 20") ($(printf %.1f "$(echo "$t_jq / $t_gw" | bc -l)")×)"
# The status page reads every user's last 30 days this way every 5 minutes (DefaultUsageEvery).
t_rep=$(best "$bin" report --file "$log" --since 30d)
printf "gpuwarden report:  %.3f s\n" "$t_rep"
row "\`gpuwarden report --since 30d\` over $n_events events (the status page's usage table, read every 5 min)" "$(printf %.3f "$t_rep") s" "jq reading the same log: $(printf %.3f "$t_jq") s" "–" "$(printf %.2f "$(echo "100 * $t_rep / 300" | bc -l)") % of a core at one read per 5 min"
[ "$n_jq" = "$n_gw" ] || echo "WARNING: jq found $n_jq events, gpuwarden events $n_gw"

echo
echo "== allocation on the embedded API server (50 concurrent requests and one at a time, 64 simulated GPUs)"
out=$(CGO_CFLAGS=${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations} go test -run XXX -bench 'BenchmarkAllocation|BenchmarkAPIRoundTrip' -benchtime "$(bt 1000x 100x)" ./test/integration/ 2>"$dir/alloc.err" | tee "$dir/alloc.out" | benchlines) ||
  { grep -v '^[IEW][0-9]\{4\} \|^{' "$dir/alloc.out" "$dir/alloc.err" | tail -40; exit 1; }
echo "$out"
m() { echo "$out" | metric "^$1-" "$2"; } # a benchmark's metric by its exact name
a99=$(m BenchmarkAllocation p99-ms); r99=$(m BenchmarkAPIRoundTrip p99-ms); u99=$(m BenchmarkAPIRoundTripUnthrottled p99-ms)
abps=$(m BenchmarkAllocation binds/s); awpb=$(m BenchmarkAllocation writes/bind); rbps=$(m BenchmarkAPIRoundTrip binds/s); ubps=$(m BenchmarkAPIRoundTripUnthrottled binds/s)
a1=$(m BenchmarkAllocationOne p50-ms); r1=$(m BenchmarkAPIRoundTripOne p50-ms)
row "Allocation create → Bound, 50 concurrent: p99" "$a99 ms" "bare create + status write + watch: $r99 ms (no client rate limit: $u99 ms)" "≤ 2× the reference" "$(verdict "$a99 <= 2 * $r99") ($(ratio "$a99" "$r99")×)"
row "Allocation create → Bound, 50 concurrent: throughput" "$abps binds/s" "bare round trips: $rbps /s (no client rate limit: $ubps /s)" "≥ 0.85× the reference" "$(verdict "$abps >= 0.85 * $rbps") ($(ratio "$abps" "$rbps")×)"
row "Allocation create → Bound, one at a time: p50" "$a1 ms" "bare round trip: $r1 ms" "≤ 2× the reference" "$(verdict "$a1 <= 2 * $r1") ($(ratio "$a1" "$r1")×)"
row "API writes per bind (create, delete and every controller write), 50 concurrent" "$(m BenchmarkAllocation writes/bind)" "the reference: 3 (create, status, delete)" "report" "one at a time: $(m BenchmarkAllocationOne writes/bind)"

echo
echo "== docker rm to allocation Released (real engine, embedded API server)"
out=$(CGO_CFLAGS=${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations} go test -run XXX -bench 'BenchmarkDockerRemoveToReleased' -benchtime "$(bt 100x 5x)" ./test/integration/ 2>/dev/null | benchlines); echo "$out"
echo "target: p99 < 1 s (DS01: up to an hour)"
d99=$(echo "$out" | metric DockerRemove p99-ms); e99=$(echo "$out" | metric DockerRemove ref-destroy-event-p99-ms)
row "\`docker rm\` → allocation Released: p99" "$d99 ms" "the engine's destroy event reaching a bare client: $e99 ms" "< 1 s" "$(verdict "$d99 < 1000")"

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
  "$bin" server --web-bind-address 0 --data-dir "$dir/$1" --api-port 0 --metrics-bind-address 0 --health-probe-bind-address 0 \
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
row "CPU watching 200 idle containers over ${cpu_seconds} s" "$(pct "$w1 - $w0") % of a core" "a server watching no Docker: $(pct "$r1 - $r0") %; dockerd $(pct "$d1 - $d0") %" "–" "difference $(pct "($w1 - $w0) - ($r1 - $r0)") %"
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
"$bin" server --web-bind-address 0 --data-dir "$dir/scraped" --api-port 0 --metrics-bind-address "127.0.0.1:$mport" --health-probe-bind-address 0 \
  --fake-gpus h100-mig --docker-host none --audit-log "$dir/scraped.jsonl" >"$dir/scraped.out" 2>&1 &
scraped=$!
"$bin" server --web-bind-address 0 --data-dir "$dir/dark" --api-port 0 --metrics-bind-address 0 --health-probe-bind-address 0 \
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
row "CPU scraped every 15 s over ${metrics_seconds} s" "$(echo "scale=2; 100 * ($s1 - $s0) / $hz / $metrics_seconds" | bc) % of a core" "metrics off: $(echo "scale=2; 100 * ($k1 - $k0) / $hz / $metrics_seconds" | bc) %" "–" "–"
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
"$bin" server --web-bind-address 0 --data-dir "$dir/gwserver" --api-port 0 --metrics-bind-address 0 --health-probe-bind-address 0 \
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
row "Gateway: \`docker run --rm\`" "$(printf %.3f "$through") s" "straight at the engine: $(printf %.3f "$direct") s" "≤ 1.15×" "$(verdict "$through <= 1.15 * $direct") ($(ratio "$through" "$direct")×)"
gpu=$(timed "unix://$gw" "$runs" run --rm --gpus 1 $img true)
printf "docker run --gpus 1 --rm through the gateway: %.3f s, vs docker run --rm direct: ratio %.2f\n" "$gpu" "$(echo "$gpu / $direct" | bc -l)"
row "Gateway: \`docker run --gpus 1 --rm\` (allocation, bind, release)" "$(printf %.3f "$gpu") s" "\`docker run --rm\` straight: $(printf %.3f "$direct") s" "–" "ratio $(ratio "$gpu" "$direct")"
DOCKER_HOST=$engine docker rm -f $(DOCKER_HOST=$engine docker ps -aq) >/dev/null 2>&1 || true
seq 1 "$n_containers" | xargs -P 4 -I{} runuser -u gwbench -- env DOCKER_HOST="unix://$gw" HOME=/tmp docker create --name ps-{} $img true >/dev/null
direct=$(timed "$engine" "$runs" ps -a)
through=$(timed "unix://$gw" "$runs" ps -a)
printf "docker ps -a, %s:       direct %.3f s, gateway %.3f s, ratio %.2f (target <= 1.2)\n" "$n_containers" "$direct" "$through" "$(echo "$through / $direct" | bc -l)"
row "Gateway: \`docker ps -a\`, $n_containers containers" "$(printf %.3f "$through") s" "straight: $(printf %.3f "$direct") s" "≤ 1.2×" "$(verdict "$through <= 1.2 * $direct") ($(ratio "$through" "$direct")×)"
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
row "Gateway: \`docker exec … cat\` of 256 MiB" "$(printf %.0f "$(echo "$through / 1000000" | bc -l)") MB/s" "straight: $(printf %.0f "$(echo "$direct / 1000000" | bc -l)") MB/s" "≥ 0.8×" "$(verdict "$through >= 0.8 * $direct") ($(ratio "$through" "$direct")×)"
DOCKER_HOST=$engine docker rm -f cat-src >/dev/null 2>&1 || true
kill $gwpid; wait $gwpid 2>/dev/null || true
rm -rf "$gwdir"
kill "$(cat /var/lib/gpuwarden-test/bench/dockerd.pid)" 2>/dev/null || true
fi

# cpu_ticks PID…: the CPU time (user and system, in clock ticks) the processes have used.
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
# writes PORT…: the API writes (every request but GET) the processes behind these metrics ports have made.
writes() { local t=0 p w; for p in "$@"; do w=$(curl -s "127.0.0.1:$p/metrics" | awk '/^rest_client_requests_total\{/ && !/method="GET"/ {s += $2} END {print s + 0}'); t=$((t + w)); done; echo $t; }
# conflicts PORT…: the ledger writes that lost to another writer.
conflicts() { local t=0 p c; for p in "$@"; do c=$(curl -s "127.0.0.1:$p/metrics" | awk '/^gpuwarden_ledger_writes_total\{result="conflict"\}/ {print $2}'); t=$((t + ${c:-0})); done; echo $t; }
# ledger KUBECONFIG FIELD: a figure of hack/burst's LEDGER line (bindings, head_bytes,
# head_changes, shard_bytes, shard_bindings, shards).
ledger() { "$dir/burst" --kubeconfig "$1" --ledger 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }
rss_of() { awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$1/status"; }
# nodes_bench N: N simulated nodes (one `gpuwarden controller --cluster-allocator` each,
# fake h100x8) against one `gpuwarden server` (the API server; its own node is asked for
# nothing and it does not compete for the allocator's Lease, so that the allocator is a
# process of its own to measure). Two bursts of 8 requests per node at once, timed by
# hack/burst: under a PerUser quota over 40 users, then under one Shared quota.
nodes_bench() {
local n=$1 nd=$dir/nodes-$1 kc i port
echo
echo "== allocation across $n simulated nodes: one gpuwarden controller each (h100x8, --cluster-allocator) against one API server"
mkdir -p "$nd"
# Metrics ports one after another from a random base below the ephemeral range: distinct,
# so that no two processes of the run ask for the same one.
local base=$(( 20000 + RANDOM % 9000 ))
port=$base
"$bin" server --web-bind-address 0 --data-dir "$nd/data" --api-port 0 --metrics-bind-address "127.0.0.1:$port" --health-probe-bind-address 0 --fake-gpus h100x8 \
  --docker-host none --gateway-socket "" --node-name node-00 --audit-log "$nd/server.jsonl" --profiling >"$nd/server.out" 2>&1 &
server_pid=$!
server_port=$port
until grep -q "is ready" "$nd/server.out"; do kill -0 "$server_pid" 2>/dev/null || { cat "$nd/server.out"; exit 1; }; sleep 0.2; done
kc=$nd/data/admin.kubeconfig
node_pids=() node_ports=()
for i in $(seq 1 "$n"); do
  port=$((base + i))
  node_ports+=("$port")
  "$bin" controller --kubeconfig "$kc" --node-name "$(printf node-%02d "$i")" --fake-gpus h100x8 --docker-host none --gateway-socket "" \
    --install-crds=false --leader-elect=false --metrics-bind-address "127.0.0.1:$port" --health-probe-bind-address 0 --profiling \
    --cluster-allocator --audit-log "$nd/node-$i.jsonl" >"$nd/node-$i.out" 2>&1 &
  node_pids+=($!)
done
# up: every node's controller still runs (one that stopped is shown, and the bench fails).
up() { local j; for j in "${!node_pids[@]}"; do kill -0 "${node_pids[$j]}" 2>/dev/null || { echo "node $((j + 1))'s controller stopped:"; tail -5 "$nd/node-$((j + 1)).out"; exit 1; }; done; }
until [ "$(kubectl --kubeconfig "$kc" get gpus --no-headers 2>/dev/null | wc -l)" -eq $(((n + 1) * 8)) ]; do up; sleep 0.5; done
until holder=$(kubectl --kubeconfig "$kc" -n kube-system get lease gpuwarden-allocator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null) && [ -n "$holder" ]; do sleep 0.5; done
i=$((10#${holder:5:2}))
leader_pid=${node_pids[$((i - 1))]} leader_port=${node_ports[$((i - 1))]}
echo "the allocator: node-$(printf %02d "$i") (pid $leader_pid)"
local n_alloc=$((n * 8)) quota
for quota in PerUser Shared; do
  kubectl --kubeconfig "$kc" delete gq,ga --all >/dev/null
  for _ in $(seq 120); do [ "$(ledger "$kc" bindings)" = 0 ] && break; sleep 0.5; done
  if [ "$quota" = PerUser ]; then
    spec="{subjects: [{kind: Everyone}], limits: {gpuEquivalents: \"$(( (n_alloc + 39) / 40 ))\", maxGPUsPerContainer: 1}}"
  else
    spec="{subjects: [{kind: Everyone}], scope: Shared, limits: {gpuEquivalents: \"$n_alloc\", maxGPUsPerContainer: 1}}"
  fi
  printf 'apiVersion: gpuwarden.io/v1alpha1\nkind: GPUQuota\nmetadata: {name: bench-%s}\nspec: %s\n' "${quota,,}" "$spec" | kubectl --kubeconfig "$kc" apply -f - >/dev/null
  sleep 1 # the quota reaches every cache
  w0=$(writes "$server_port" "${node_ports[@]}"); k0=$(conflicts "$server_port" "${node_ports[@]}")
  c0a=$(cpu_ticks "$leader_pid"); c0s=$(cpu_ticks "$server_pid"); c0n=$(cpu_ticks "${node_pids[@]}")
  # Where the CPU goes while the burst is decided (a miss is explained, not hidden).
  secs=$([ -n "$quick" ] && echo 2 || echo 4)
  curl -s "127.0.0.1:$server_port/debug/pprof/profile?seconds=$secs" >"$nd/server-$quota.pprof" &
  p1=$!
  curl -s "127.0.0.1:$leader_port/debug/pprof/profile?seconds=$secs" >"$nd/allocator-$quota.pprof" &
  p2=$!
  res=$("$dir/burst" --kubeconfig "$kc" --nodes "$n" --per-node 8 --users 40 --prefix "b-${quota,,}-$n")
  echo "$res" | grep -v '^RESULT'
  cpu_alloc=$(echo "scale=2; ($(cpu_ticks "$leader_pid") - $c0a) / $(getconf CLK_TCK)" | bc)
  cpu_server=$(echo "scale=2; ($(cpu_ticks "$server_pid") - $c0s) / $(getconf CLK_TCK)" | bc)
  cpu_nodes=$(echo "scale=2; ($(cpu_ticks "${node_pids[@]}") - $c0n) / $(getconf CLK_TCK)" | bc)
  wait $p1 $p2 || true
  sleep 1 # the last status and quota writes land
  w1=$(writes "$server_port" "${node_ports[@]}"); k1=$(conflicts "$server_port" "${node_ports[@]}")
  r() { echo "$res" | sed -n "s/.*RESULT.* $1=\([^ ]*\).*/\1/p"; }
  bps=$(r binds_per_s) p50=$(r p50) p99=$(r p99) bound=$(r bound)
  wpb=$(printf %.2f "$(echo "1 + ($w1 - $w0) / $bound" | bc -l)")
  cpb=$(printf %.3f "$(echo "($k1 - $k0) / $bound" | bc -l)")
  share() { go tool pprof -top -focus="$2" "$bin" "$1" 2>/dev/null | awk '/^Showing nodes accounting for/ {gsub(",", "", $6); print $6; exit}'; }
  prof="the server's CPU: API server $(share "$nd/server-$quota.pprof" 'k8s.io/apiserver|k8s.io/apiextensions-apiserver'), etcd $(share "$nd/server-$quota.pprof" 'go.etcd.io'), garbage collection $(share "$nd/server-$quota.pprof" 'runtime.gcBgMarkWorker'); the allocator's: passes $(share "$nd/allocator-$quota.pprof" 'gpuwarden/controllers/allocation'), decoding watch events $(share "$nd/allocator-$quota.pprof" 'k8s.io/client-go/tools/cache|k8s.io/apimachinery/pkg/runtime/serializer')"
  echo "API writes per bind (the create and every controller's write): $wpb; ledger conflicts per bind: $cpb"
  echo "CPU during the burst: the allocator $cpu_alloc s, the server (API server, etcd) $cpu_server s, all $n controllers $cpu_nodes s; $prof"
  label="Allocation across $n nodes, one elected allocator, $n_alloc requests at once, $quota quota"
  if [ "$n" = 1 ]; then
    row "$label" "$bps binds/s, p50 $p50 s, p99 $p99 s from the burst's start" "single node, 50 concurrent (in process): ${abps:-?} binds/s, p99 ${a99:-?} ms" "report" "–"
  else
    target=$([ "$n" -ge 50 ] && echo 0.4 || echo 0.5)
    row "$label: throughput" "$bps binds/s (p50 $p50 s)" "single node, 50 concurrent: ${abps:-?} binds/s" "≥ ${target}× the single node" "$(verdict "${abps:+$bps >= $target * $abps}") ($([ -n "${abps:-}" ] && ratio "$bps" "$abps" || echo "?")×)"
    [ "$n" -lt 50 ] && row "$label: p99 from the burst's start" "$p99 s" "single node, 50 concurrent: p99 ${a99:-?} ms" "≤ 3× the single node" "$(verdict "${a99:+$p99 * 1000 <= 3 * $a99}") ($([ -n "${a99:-}" ] && ratio "$p99 * 1000" "$a99" || echo "?")×)"
    row "$label: conflicts per bind" "$cpb" "–" "≤ 0.05" "$(verdict "$cpb <= 0.05")"
    row "$label: API writes per bind" "$wpb (the create, every controller's write; no delete in the burst)" "single node, 50 concurrent: ${awpb:-?} with the delete" "report" "–"
    if [ "$quota" = Shared ]; then
      # The ledger's head holds at most 512 changes (--ledger-flush-at) before they move to
      # the per-node shards: a node's bindings in its shard are what an object must hold.
      hb=$(ledger "$kc" head_bytes) hc=$(ledger "$kc" head_changes) sb=$(ledger "$kc" shard_bytes) sn=$(ledger "$kc" shard_bindings)
      if [ "${sn:-0}" -gt 0 ]; then per=$(echo "$sb / $sn" | bc -l); else per=$(echo "$hb / ($hc + (${hc:-0} == 0))" | bc -l); fi
      row "Ledger size per binding ($n nodes)" "$(printf %.0f "$per") bytes; head $hb bytes ($hc changes waiting), largest shard $sb bytes ($sn bindings)" "etcd's object limit 1.5 MiB, per object" "report" "$(echo "1572864 / $per" | bc) bindings fit per node; the head at most 512 changes"
    fi
    row "CPU during the burst across $n nodes, $quota quota" "the allocator $cpu_alloc s; the server (API server, etcd) $cpu_server s" "all $n controllers (the allocator among them): $cpu_nodes s" "report" "$prof"
  fi
done
rss_alloc=$(rss_of "$leader_pid")
echo "the allocator's RSS after the bursts: $rss_alloc MiB"
if [ "$n" = 1 ]; then
  rss_one=$rss_alloc
else
  row "The allocator's RSS at $n nodes, after the bursts" "$rss_alloc MiB" "at one node: ${rss_one:-?} MiB" "$([ "$n" -ge 50 ] && echo "≤ 2× at one node" || echo report)" "$([ "$n" -ge 50 ] && verdict "${rss_one:+$rss_alloc <= 2 * $rss_one}" || echo –) ($([ -n "${rss_one:-}" ] && ratio "$rss_alloc" "$rss_one" || echo "?")×)"
fi
kill "$server_pid" "${node_pids[@]}" 2>/dev/null || true
wait "$server_pid" "${node_pids[@]}" 2>/dev/null || true
}

if [ -z "${SKIP_NODES:-}" ]; then
go build -o "$dir/burst" ./hack/burst
for n in $([ -n "$quick" ] && echo "1 3" || echo "${NODES:-1 20 50}"); do nodes_bench "$n"; done
fi

write_report
trap - EXIT
cleanup

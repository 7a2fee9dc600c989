#!/usr/bin/env bash
# The whole test suite: generated-file check, unit, integration (embedded API server) and
# end-to-end (bin/gpuwarden, kubectl, a real Docker engine). `make test` runs it after
# building bin/gpuwarden; .ci/run runs `make test`.
#
# Packages that link kube-apiserver run without -race so that its ~180 MB tree is compiled
# once, with the same flags as bin/gpuwarden; every other package runs with -race.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-deps.sh
hack/docker-up.sh
export DOCKER_HOST=unix://${GPUWARDEN_TEST_DOCKER_SOCK:-/run/gpuwarden-test/docker.sock}
export CGO_CFLAGS=${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}
export GPUWARDEN_BIN=${GPUWARDEN_BIN:-$PWD/bin/gpuwarden}
export GPUWARDEN_TEST_IMAGE=${GPUWARDEN_TEST_IMAGE:-gpuwarden-test/busybox:latest}

# helm for the chart's tests: built from the Go module proxy into ./bin (cached there and in
# the Go build cache after the first, minutes-long, build).
make --no-print-directory helm >/dev/null
export GPUWARDEN_HELM=${GPUWARDEN_HELM:-$PWD/bin/helm}

if [ "${1:-}" = -chaos ]; then
  echo "== the chaos suite ($GPUWARDEN_CHAOS_ROUNDS rounds)"
  exec go test -count=1 -timeout 60m -v -run TestChaos ./test/chaos/
fi
if [ "${1:-}" = -soak ]; then
  echo "== the soak ($GPUWARDEN_SOAK, sampled every $GPUWARDEN_SOAK_EVERY)"
  exec go test -count=1 -timeout 0 -v -run TestSoak ./test/chaos/
fi

echo "== verify: generated files and formatting"
make --no-print-directory verify

# With -test, go list also lists each package's test binary ("pkg.test") with the test imports in its deps.
heavy=$(go list -test -f '{{.ImportPath}}{{range .Deps}} {{.}}{{end}}' ./... |
  awk '$1 ~ /\.test$/ && / k8s.io\/kubernetes\/cmd\/kube-apiserver\/app / {sub(/\.test$/, "", $1); print $1}')
# Packages without test files are left out: `go test -race` would only compile them.
light=$(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./... | grep -vxF -f <(printf '%s\n' $heavy))

echo "== unit and end-to-end tests (-race)"
go test -race -count=1 -timeout 20m $light
echo "== integration tests on the embedded API server"
go test -count=1 -timeout 20m $heavy

# Every parser's fuzz target, briefly (GPUWARDEN_FUZZTIME, default 3s each): new inputs that
# break one fail the run and are kept under the package's testdata/fuzz.
echo "== fuzz targets (${GPUWARDEN_FUZZTIME:-3s} each)"
for target in ./internal/gateway:FuzzCreateChecker ./internal/gateway:FuzzClassify ./internal/audit:FuzzReader \
  ./internal/proc:FuzzContainerFromCgroup ./internal/gpu/fakegpu:FuzzParseControl ./internal/resolve:FuzzParseDuration \
  ./internal/ds01:FuzzConvert; do
  go test "${target%%:*}" -run XXX -fuzz "^${target##*:}\$" -fuzztime "${GPUWARDEN_FUZZTIME:-3s}" >/tmp/gpuwarden-fuzz.log 2>&1 ||
    { cat /tmp/gpuwarden-fuzz.log; echo "fuzz target ${target##*:} failed"; exit 1; }
  echo "ok  ${target##*:}"
done

# make bench's quick mode: every benchmark briefly, to check that the report is produced.
echo "== benchmarks, quick mode (the report's table is produced)"
report=$(mktemp --suffix .md)
BENCH_QUICK=1 BENCH_REPORT=$report hack/bench.sh >/tmp/gpuwarden-bench-quick.log 2>&1 ||
  { tail -50 /tmp/gpuwarden-bench-quick.log; echo "make bench QUICK=1 failed"; exit 1; }
rows=$(grep -c '^| `\|^| [A-Z/]' "$report" || true)
[ "$rows" -ge 10 ] || { cat "$report"; echo "the benchmark report has $rows rows"; exit 1; }
echo "ok  benchmark report: $rows rows"

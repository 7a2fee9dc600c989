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

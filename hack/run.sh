#!/usr/bin/env bash
# Runs gpuwarden server on the embedded control plane. Without an NVIDIA GPU it simulates
# one (FAKE_GPUS, default h100-mig); data lives in DATA_DIR (default ./.data). When no
# Docker engine is reachable (DOCKER_HOST, else the standard socket), it starts a local one
# through hack/docker-up.sh and governs that, so that `docker run` works at once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data_dir=${DATA_DIR:-$root/.data}
args=(server --data-dir "$data_dir")
if [ ! -e /dev/nvidia0 ] && ! command -v nvidia-smi >/dev/null 2>&1; then
  args+=(--fake-gpus "${FAKE_GPUS:-h100-mig}")
fi
if ! timeout 10 docker version >/dev/null 2>&1; then
  sock=${GPUWARDEN_TEST_DOCKER_SOCK:-/run/gpuwarden-test/docker.sock}
  echo "hack/run.sh: no Docker engine reachable at ${DOCKER_HOST:-the standard socket}; starting a local one at unix://$sock"
  "$root/hack/install-deps.sh"
  "$root/hack/docker-up.sh"
  export DOCKER_HOST=unix://$sock
  echo "hack/run.sh: in another shell: export DOCKER_HOST=$DOCKER_HOST"
fi
exec "$root/bin/gpuwarden" "${args[@]}" "$@"

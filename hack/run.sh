#!/usr/bin/env bash
# Runs gpuwarden server on the embedded control plane. Without an NVIDIA GPU it simulates
# one (FAKE_GPUS, default h100-mig); data lives in DATA_DIR (default ./.data).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data_dir=${DATA_DIR:-$root/.data}
args=(server --data-dir "$data_dir")
if [ ! -e /dev/nvidia0 ] && ! command -v nvidia-smi >/dev/null 2>&1; then
  args+=(--fake-gpus "${FAKE_GPUS:-h100-mig}")
fi
exec "$root/bin/gpuwarden" "${args[@]}" "$@"

#!/usr/bin/env bash
# Installs what gpuwarden's tests and demo need on a fresh Debian machine: the Docker engine,
# busybox (for the test image), kubectl is expected preinstalled but checked. Idempotent:
# a second run only checks.
set -euo pipefail

# prometheus (promtool), prometheus-alertmanager (amtool, alertmanager) and python3-aiosmtpd
# (an SMTP sink) are for the metrics and alerting tests; docker-compose for the gateway tests;
# systemd for systemd-analyze (the unit's check; it needs no systemd as PID 1).
packages=(docker.io busybox-static prometheus prometheus-alertmanager python3-aiosmtpd docker-compose systemd curl chromium tmux fonts-dejavu-core)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "hack/install-deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v kubectl >/dev/null || echo "hack/install-deps.sh: warning: kubectl is not on PATH; end-to-end tests need it" >&2

# The devcontainer CLI (what VS Code runs to make a devcontainer), pinned, for the gateway's
# devcontainer test; somewhere the test's unprivileged users can run it.
devcontainer_version=0.89.0
devcontainer_dir=${GPUWARDEN_DEVCONTAINER_DIR:-/opt/gpuwarden-test/devcontainer-cli}
if [ "$("$devcontainer_dir/node_modules/.bin/devcontainer" --version 2>/dev/null)" != "$devcontainer_version" ]; then
  command -v npm >/dev/null || { apt-get install -y -qq --no-install-recommends npm >/dev/null; }
  echo "hack/install-deps.sh: installing @devcontainers/cli@$devcontainer_version in $devcontainer_dir"
  mkdir -p "$devcontainer_dir"
  npm install --prefix "$devcontainer_dir" --no-audit --no-fund --silent "@devcontainers/cli@$devcontainer_version"
  chmod -R a+rX "$devcontainer_dir"
fi

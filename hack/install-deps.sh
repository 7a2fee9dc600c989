#!/usr/bin/env bash
# Installs what gpuwarden's tests and demo need on a fresh Debian machine: the Docker engine,
# busybox (for the test image), kubectl is expected preinstalled but checked. Idempotent:
# a second run only checks.
set -euo pipefail

# prometheus (promtool), prometheus-alertmanager (amtool, alertmanager) and python3-aiosmtpd
# (an SMTP sink) are for the metrics and alerting tests; docker-compose for the gateway tests.
packages=(docker.io busybox-static prometheus prometheus-alertmanager python3-aiosmtpd docker-compose)
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

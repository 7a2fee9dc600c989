#!/usr/bin/env bash
# Installs gpuwarden on one GPU server: the binary, its systemd unit, the data and log
# directories, the sample quotas and policies, and the login-shell lines that point users'
# DOCKER_HOST at the gateway and KUBECONFIG at a kubeconfig of their own.
#
#   hack/install.sh [--root DIR] [--bin PATH] [--no-start]
#   hack/install.sh --uninstall [--purge] [--root DIR]
#
# --root installs into DIR instead of / (a scratch root for tests or image builds; nothing is
# started there). --uninstall removes what was installed and keeps the data directory (the
# cluster state, the CA and the audit log) unless --purge is given. Idempotent.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
root=/
bin=$here/bin/gpuwarden
start=1
uninstall=0
purge=0
while (($#)); do
  case $1 in
    --root) root=$2; shift ;;
    --root=*) root=${1#*=} ;;
    --bin) bin=$2; shift ;;
    --bin=*) bin=${1#*=} ;;
    --no-start) start=0 ;;
    --uninstall) uninstall=1 ;;
    --purge) purge=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "hack/install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
root=${root%/}
[ "$root" = "" ] && live=1 || live=0
((live)) || start=0
r() { echo "$root$1"; }
manifest=$(r /usr/local/share/gpuwarden/installed-files)
say() { echo "hack/install.sh: $*"; }

if ((uninstall)); then
  if ((live)) && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now gpuwarden.service 2>/dev/null || true
  fi
  if [ -f "$manifest" ]; then
    while read -r f; do rm -f "$(r "$f")"; done < "$manifest"
    rm -f "$manifest"
    rmdir "$(r /usr/local/share/gpuwarden)" "$(r /etc/gpuwarden/samples)" "$(r /etc/gpuwarden)" 2>/dev/null || true
  fi
  if ((purge)); then
    rm -rf "$(r /var/lib/gpuwarden)" "$(r /var/log/gpuwarden)"
    say "removed gpuwarden and its data"
  else
    say "removed gpuwarden; kept $(r /var/lib/gpuwarden) and $(r /var/log/gpuwarden) (--purge removes them)"
  fi
  if ((live)) && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
  exit 0
fi

[ -x "$bin" ] || { echo "hack/install.sh: $bin is not an executable gpuwarden (run make build, or give --bin)" >&2; exit 1; }
installed=()
put() { # put MODE SRC DEST: install one file, remembered for --uninstall
  install -D -m "$1" "$2" "$(r "$3")"
  installed+=("$3")
}
put 0755 "$bin" /usr/local/bin/gpuwarden
put 0644 "$here/config/systemd/gpuwarden.service" /etc/systemd/system/gpuwarden.service
put 0644 "$here/hack/profile.sh" /etc/profile.d/gpuwarden.sh
put 0644 "$here/README.md" /usr/local/share/doc/gpuwarden/README.md
for f in "$here"/config/samples/*.yaml; do
  put 0644 "$f" "/etc/gpuwarden/samples/$(basename "$f")"
done
if [ ! -e "$(r /etc/default/gpuwarden)" ]; then # the admin's own flags: never overwritten
  install -D -m 0644 /dev/stdin "$(r /etc/default/gpuwarden)" <<'DEFAULTS'
# Extra flags for `gpuwarden server` (see `gpuwarden server --help`), e.g.
#   GPUWARDEN_ARGS="--gateway-allow-mount /data/shared --sample-interval 30s"
# Without a GPU (a trial run), simulate one:  GPUWARDEN_ARGS="--fake-gpus h100"
GPUWARDEN_ARGS=""
DEFAULTS
  installed+=(/etc/default/gpuwarden)
fi
# The data (etcd, the CA: root only) and the audit log (root, readable by the admins' group
# where it exists). systemd makes them too (StateDirectory, LogsDirectory); made here so a
# scratch root and a first `gpuwarden server` by hand get the same.
install -d -m 0700 "$(r /var/lib/gpuwarden)"
install -d -m 0750 "$(r /var/log/gpuwarden)"
if ((live)) && getent group gpuwarden-admin >/dev/null; then chgrp gpuwarden-admin /var/log/gpuwarden; fi
# An engine whose default runtime is nvidia gives every container the GPUs its image asks for
# (ENV NVIDIA_VISIBLE_DEVICES=all), build steps included, without an allocation: the gateway
# then refuses users' builds. Say so now, with the fix.
daemon_json=$(r /etc/docker/daemon.json)
default_runtime=""
if ((live)) && command -v docker >/dev/null; then
  default_runtime=$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null || true)
fi
if [ -z "$default_runtime" ] && [ -f "$daemon_json" ] && grep -Eq '"default-runtime"[[:space:]]*:[[:space:]]*"nvidia"' "$daemon_json"; then
  default_runtime=nvidia
fi
if [ "$default_runtime" = nvidia ]; then
  say "WARNING: Docker's default runtime is nvidia: any container, a build's RUN steps included, gets every GPU its image asks for (ENV NVIDIA_VISIBLE_DEVICES=all) without an allocation, and gpuwarden refuses users' builds. Fix: set \"default-runtime\": \"runc\" in /etc/docker/daemon.json (keep nvidia under \"runtimes\"; docker run --gpus works without it), then systemctl restart docker" >&2
fi
mkdir -p "$(dirname "$manifest")"
printf '%s\n' "${installed[@]}" > "$manifest"
say "installed gpuwarden $("$bin" version 2>/dev/null | head -1 | awk '{print $2}') into ${root:-/}"

if ((start)) && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now gpuwarden.service
  say "started gpuwarden.service; kubectl: export KUBECONFIG=/var/lib/gpuwarden/admin.kubeconfig; then kubectl apply -f /etc/gpuwarden/samples"
elif ((live)); then
  say "not started (no systemd here, or --no-start): systemctl enable --now gpuwarden"
fi

#!/usr/bin/env bash
# Makes sure the tests' own Docker engine is running and the local test image exists. The
# engine listens on its own socket (GPUWARDEN_TEST_DOCKER_SOCK, default
# /run/gpuwarden-test/docker.sock), apart from any system Docker, and is started with
# --iptables=false --bridge=none (what works on these machines) and a test double of
# nvidia-container-runtime-hook on its PATH so `docker run --gpus` works without a GPU.
# Idempotent: a second run is quick. Tests reach it through DOCKER_HOST (hack/test.sh sets it).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${GPUWARDEN_DOCKER_STATE:-/var/lib/gpuwarden-test/docker}
image=${GPUWARDEN_TEST_IMAGE:-gpuwarden-test/busybox:latest}
hookdir=$state/bin
sock=${GPUWARDEN_TEST_DOCKER_SOCK:-/run/gpuwarden-test/docker.sock}
export DOCKER_HOST=unix://$sock

docker_ok() { timeout 10 docker version >/dev/null 2>&1; }
# The engine must know a runtime named nvidia (tests create containers with --runtime nvidia,
# one of the GPU request forms): here it is plain runc, beside the hook's test double.
has_nvidia_runtime() { timeout 10 docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"nvidia"'; }

pidfile=$state/dockerd.pid
if docker_ok && ! has_nvidia_runtime && [ -f "$pidfile" ]; then
  echo "hack/docker-up.sh: restarting the test dockerd to register the nvidia runtime"
  old=$(cat "$pidfile")
  kill "$old" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$old" 2>/dev/null || break; sleep 0.5; done
fi

if ! docker_ok; then
  mkdir -p "$state" "$hookdir"
  # A stand-in for NVIDIA's hook: records its arguments and succeeds. dockerd registers its
  # "nvidia" device driver only when an executable of this name is on its PATH at start-up.
  cat >"$hookdir/nvidia-container-runtime-hook" <<'HOOK'
#!/bin/sh
echo "$(date -u +%FT%TZ) $*" >> "${GPUWARDEN_HOOK_LOG:-/var/lib/gpuwarden-test/docker/hook.log}"
cat >/dev/null
exit 0
HOOK
  chmod +x "$hookdir/nvidia-container-runtime-hook"
  # A dockerd killed without cleaning up (a stopped session, a reboot) leaves its pid file;
  # a new dockerd refuses to start while it names a live process, so drop it unless it does.
  if [ -f "$pidfile" ]; then
    old=$(cat "$pidfile" 2>/dev/null || true)
    if [ -z "$old" ] || [ "$(cat /proc/"$old"/comm 2>/dev/null)" != dockerd ] ||
       grep -q '^State:.*Z' /proc/"$old"/status 2>/dev/null; then
      rm -f "$pidfile"
    fi
  fi
  echo "hack/docker-up.sh: starting dockerd (data root $state/data, log $state/dockerd.log)"
  mkdir -p "$(dirname "$sock")"
  PATH="$hookdir:$PATH" nohup dockerd -H "unix://$sock" --iptables=false --bridge=none \
    --data-root "$state/data" --exec-root "$state/exec" --pidfile "$pidfile" \
    --add-runtime "nvidia=$(command -v runc)" \
    >"$state/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 120); do
    docker_ok && break
    kill -0 "$dockerd_pid" 2>/dev/null || break # it exited: no point waiting
    sleep 0.5
  done
  docker_ok || { echo "hack/docker-up.sh: dockerd did not come up; see $state/dockerd.log" >&2; tail -20 "$state/dockerd.log" >&2; exit 1; }
fi

# The image's revision: an older one is built again (2: /tmp is world-writable, as in real
# images, since containers through the gateway run as their caller's uid).
revision=2
if [ "$(docker image inspect -f '{{index .Config.Labels "gpuwarden.test-image"}}' "$image" 2>/dev/null)" != "$revision" ]; then
  echo "hack/docker-up.sh: building $image from busybox-static"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/bin" "$tmp/tmp" "$tmp/workspace"
  chmod 1777 "$tmp/tmp"
  cp /bin/busybox "$tmp/bin/busybox"
  for applet in $("$tmp/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$tmp/bin/$applet"
  done
  tar -C "$tmp" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' -c "LABEL gpuwarden.test-image=$revision" - "$image" >/dev/null
fi
echo "hack/docker-up.sh: Docker $(docker version -f '{{.Server.Version}}') ready at $DOCKER_HOST; test image $image"

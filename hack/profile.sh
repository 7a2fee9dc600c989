# gpuwarden (installed as /etc/profile.d/gpuwarden.sh): docker through the gateway, and
# kubectl with a kubeconfig of your own, renewed before it expires. Settings you made
# yourself are kept.
if [ -S /run/gpuwarden/docker.sock ] && [ -z "${DOCKER_HOST:-}" ]; then
  export DOCKER_HOST=unix:///run/gpuwarden/docker.sock
fi
if [ "$(id -u)" != 0 ] && [ -n "${HOME:-}" ] && [ -S /run/gpuwarden/docker.sock ] && command -v gpuwarden >/dev/null 2>&1; then
  _gpuwarden_kc="$HOME/.kube/gpuwarden.kubeconfig"
  # A kubeconfig lasts 7 days, an admin's a day: each login renews it once it is an hour
  # old. Admin rights are not in it: they follow the host's admin group.
  if [ ! -s "$_gpuwarden_kc" ] || [ -n "$(find "$_gpuwarden_kc" -mmin +60 2>/dev/null)" ]; then
    gpuwarden kubeconfig -o "$_gpuwarden_kc" >/dev/null 2>&1 || true
  fi
  if [ -z "${KUBECONFIG:-}" ] && [ -s "$_gpuwarden_kc" ]; then
    export KUBECONFIG="$_gpuwarden_kc"
  fi
  unset _gpuwarden_kc
fi

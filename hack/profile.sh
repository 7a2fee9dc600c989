# gpuwarden (installed as /etc/profile.d/gpuwarden.sh): docker through the gateway, and
# kubectl with a kubeconfig of your own, renewed before it expires. Settings you made
# yourself are kept.
#
# The gateway is found by one rule, gpuwarden's own (gateway.ClientSocket): $DOCKER_HOST when
# it names a Unix socket, else /run/gpuwarden/docker.sock. This script only sets DOCKER_HOST
# when it is unset; `gpuwarden kubeconfig` then asks the gateway docker talks to. A server
# whose --gateway-socket is elsewhere: change the path below to match.
_gpuwarden_sock=/run/gpuwarden/docker.sock
if [ -S "$_gpuwarden_sock" ] && [ -z "${DOCKER_HOST:-}" ]; then
  export DOCKER_HOST="unix://$_gpuwarden_sock"
fi
unset _gpuwarden_sock
if [ "$(id -u)" != 0 ] && [ -n "${HOME:-}" ] && command -v gpuwarden >/dev/null 2>&1; then
  _gpuwarden_kc="$HOME/.kube/gpuwarden.kubeconfig"
  # A kubeconfig lasts 7 days, an admin's a day: each login renews it once it is an hour
  # old. Admin rights are not in it: they follow the host's admin group. Without a gateway
  # the command fails at once, and quietly.
  if [ ! -s "$_gpuwarden_kc" ] || [ -n "$(find "$_gpuwarden_kc" -mmin +60 2>/dev/null)" ]; then
    gpuwarden kubeconfig -o "$_gpuwarden_kc" >/dev/null 2>&1 || true
  fi
  if [ -z "${KUBECONFIG:-}" ] && [ -s "$_gpuwarden_kc" ]; then
    export KUBECONFIG="$_gpuwarden_kc"
  fi
  unset _gpuwarden_kc
fi

package gateway

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/hostpath"
)

// startOps re-run what a create declared: the mounts are resolved again and the GPUs must be
// held again before the engine runs the container.
var startOps = map[string]bool{"start": true, "restart": true, "unpause": true}

// isStart tells whether a container endpoint path (…/containers/{id}/{op}) starts it.
func isStart(method, p string) bool {
	if method != http.MethodPost {
		return false
	}
	i := strings.LastIndex(p, "/")
	return i >= 0 && startOps[p[i+1:]]
}

// checkStart checks a start, restart or unpause of one of the caller's containers as a
// create is checked: its bind mounts must still resolve inside what the caller may mount,
// and its GPUs must be held by an allocation of its owner.
func (s *Server) checkStart(ctx context.Context, c Caller, ct inspected) error {
	if err := s.checkStartUser(ctx, c, ct); err != nil {
		return err
	}
	if err := s.checkStartMounts(c, ct); err != nil {
		return err
	}
	return s.checkStartGPUs(ctx, c, ct)
}

// checkStartGPUs makes sure a GPU container's devices are held by an allocation of its owner
// before it runs again (start_gpus.go).
func (s *Server) checkStartGPUs(ctx context.Context, c Caller, ct inspected) error {
	return s.reacquireGPUs(ctx, c, ct)
}

// checkStartMounts resolves every bind mount source again: the create mounted the resolved
// path, so a source that resolves anywhere else now (a directory replaced by a symbolic link
// since) or lies outside what the caller may mount is refused.
func (s *Server) checkStartMounts(c Caller, ct inspected) error {
	for _, src := range docker.BindSources(&ct.HostConfig, ct.Mounts) {
		if r, moved := hostpath.Moved(src); moved {
			return refused("bind mount of %s is refused: it now resolves to %s (a symbolic link was put in its path since the container was created); recreate the container", src, r)
		}
		if err := s.mountable(c, src); err != nil {
			return err
		}
	}
	return nil
}

// checkStartUser refuses to run a container that would run as someone other than its caller:
// one created before the gateway forced the user (or straight at the engine) is recreated.
func (s *Server) checkStartUser(ctx context.Context, c Caller, ct inspected) error {
	if s.anyUser(ctx, c) {
		return nil
	}
	u, err := s.checkUser(ctx, c, ct.Config.User, "a container")
	if err == nil && u == ct.Config.User && slices.Contains(ct.HostConfig.SecurityOpt, noNewPrivileges) {
		return nil
	}
	return refused("container %s would run as user %q without no-new-privileges: it was made before the gateway ran containers as their owner; recreate it (docker rm, then docker run or docker compose up)", strings.TrimPrefix(ct.Name, "/"), ct.Config.User)
}

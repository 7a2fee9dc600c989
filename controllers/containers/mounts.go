package controllers

import (
	"context"
	"fmt"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/hostpath"
)

// ReasonMountMoved: a container's bind mount source resolves elsewhere than when it was
// created (a directory replaced by a symbolic link since).
const ReasonMountMoved = "mount_moved"

// stopOnMovedMounts stops a running container that a user made through the gateway when one
// of its bind mount sources no longer resolves to itself: the gateway mounted the path it
// resolved at create and checks it again at every start it sees, so a container running on
// a moved path was started by the engine alone (a restart policy after an engine restart) on
// whatever the link points at now. This is a security stop: it ignores the policy's mode.
func (r *ContainerReconciler) stopOnMovedMounts(ctx context.Context, c docker.Container, owner string, live *gpuwardenv1alpha1.GPUAllocation) (bool, error) {
	if c.State != docker.StateRunning || c.Labels[gpuwardenv1alpha1.LabelManaged] != "true" {
		return false, nil
	}
	for _, src := range c.BindSources {
		to, moved := hostpath.Moved(src)
		if !moved {
			continue
		}
		if !r.once(c.ID, "mounts/"+startedAt(c)) {
			return true, nil
		}
		user := ownerOrUnknown(owner)
		reason := fmt.Sprintf("%s: bind mount source %s resolves to %s now; recreate the container", ReasonMountMoved, src, to)
		r.Audit.Log(audit.AuthDenied(user, "container.start by the engine", containerRef(c), reason))
		policy, err := r.policy(ctx, c, owner)
		if err != nil {
			return false, err
		}
		return true, r.stop(ctx, c, user, live, policy, string(gpuwardenv1alpha1.ModeEnforce), EventStopped, reason)
	}
	return false, nil
}

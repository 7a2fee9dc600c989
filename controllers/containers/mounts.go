package containers

import (
	"context"
	"fmt"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/hostpath"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
)

// stopOnMovedMounts stops a running container that a user made through the gateway when one
// of its bind mount sources no longer resolves to itself: the gateway mounted the path it
// resolved at create and checks it again at every start it sees, so a container running on
// a moved path was started by the engine alone (a restart policy after an engine restart) on
// whatever the link points at now. This is a security stop: it ignores the policy's mode.
func (r *Reconciler) stopOnMovedMounts(ctx context.Context, c docker.Container, owner string, live *gpuwardenv1alpha1.GPUAllocation) (bool, error) {
	if c.State != docker.StateRunning || c.Labels[gpuwardenv1alpha1.LabelManaged] != "true" {
		return false, nil
	}
	for _, src := range c.BindSources {
		to, moved := hostpath.Moved(src)
		if !moved {
			continue
		}
		if !r.Actions.Once(c.ID, "mounts/"+c.StartStamp()) {
			return true, nil
		}
		user := containerstore.OwnerOrUnknown(owner)
		reason := fmt.Sprintf("%s: bind mount source %s resolves to %s now; recreate the container", reasons.MountMoved, src, to)
		r.Audit.Log(audit.AuthDenied(user, "container.start by the engine", containerstore.AuditRef(c), reason))
		policy, err := r.policy(ctx, c, owner)
		if err != nil {
			return false, err
		}
		return true, actions.IgnoreGone(r.Actions.StopNow(ctx, c, user, live, policy, gpuwardenv1alpha1.ModeEnforce, reasons.EventStopped, reason))
	}
	return false, nil
}

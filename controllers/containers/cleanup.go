package containers

import (
	"context"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// act carries out one action the lifecycle rules say is due, as the policy's mode allows.
func (r *Reconciler) act(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, d lifecycle.Due) error {
	switch d.Action {
	case lifecycle.ReleaseGPUs:
		return r.Actions.ReleaseDue(ctx, c, owner, a, p, d)
	case lifecycle.Remove:
		return r.Actions.Remove(ctx, c, owner, a, p, d)
	}
	return nil
}

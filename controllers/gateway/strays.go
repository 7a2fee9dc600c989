package gateway

import (
	"context"
	"strings"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/manager"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
)

// Strays gives back the GPUs of gateway allocations whose container was never
// created. The gateway allocates before it forwards a create, and gives the allocation
// back when the create fails; a process killed in between, or a create the engine never
// answered, leaves an allocation no container will release. An allocation older than After
// without a container, and with no container of its name on the engine, is released — only
// while the engine is in view (a container unseen during an outage may well exist).
type Strays struct {
	Client client.Client
	Store  *containerstore.Store
	// Actions release what no container will.
	Actions  *actions.Actions
	NodeName string
	Clock    clock.PassiveClock
	// After is how long an allocation may wait for its container: the gateway's bind wait
	// and the create itself.
	After time.Duration
	// Interval is the time between two sweeps.
	Interval time.Duration
	// Waiter names this process's gateway (Allocator.Waiter): a waiting allocation another
	// process's gateway made has no one waiting for it any more.
	Waiter string
}

// strayGrace is how long a waiting allocation whose waiter is gone, or whose wait is over,
// is left for the gateway (or the cache) to catch up.
const strayGrace = time.Minute

// NeedLeaderElection: only the node's active controller releases.
func (g *Strays) NeedLeaderElection() bool { return true }

// Start sweeps every Interval until ctx ends.
func (g *Strays) Start(ctx context.Context) error {
	return manager.Every(ctx, g.Interval, g.Sweep, "Looking for gateway allocations without a container")
}

// Sweep releases the stray allocations once.
func (g *Strays) Sweep(ctx context.Context) error {
	if !g.Store.Synced() {
		return nil
	}
	names := map[string]bool{}
	for _, c := range g.Store.All() {
		names[strings.TrimPrefix(c.Name, "/")] = true
	}
	var allocs gpuwardenv1alpha1.GPUAllocationList
	if err := g.Client.List(ctx, &allocs); err != nil {
		return err
	}
	for i := range allocs.Items {
		a := &allocs.Items[i]
		if !g.stray(a, names) {
			continue
		}
		if err := g.Actions.Release(ctx, a, reasons.ReleaseNeverCreated); err != nil {
			return err
		}
		ctrl.LoggerFrom(ctx).Info("Released the GPUs of a gateway allocation whose container was never created", "allocation", a.Name, "container", a.Spec.ContainerName)
	}
	return nil
}

// stray reports whether a is a gateway allocation of this node that no container will
// use: Bound for longer than After without one; or waiting while no one waits for it (made
// by another process's gateway, or past the time its create gave up); or, made by a
// gateway that recorded neither, older than After.
func (g *Strays) stray(a *gpuwardenv1alpha1.GPUAllocation, containers map[string]bool) bool {
	switch {
	case a.Spec.Source != gpuwardenv1alpha1.SourceGateway || a.Spec.NodeName != g.NodeName || !allocation.Live(a):
		return false // not a gateway allocation of this node that holds or waits
	case a.Status.ContainerID != "":
		return false // its container was seen (and is followed)
	case !g.waitedFor(a):
		return false
	case a.Status.Phase != gpuwardenv1alpha1.PhaseBound:
		return true // no create goes on without its GPUs: a container of its name is another's
	}
	return !containers[strings.TrimPrefix(a.Spec.ContainerName, "/")]
}

// waitedFor reports whether the create a was made for has stopped waiting for it, long
// enough ago.
func (g *Strays) waitedFor(a *gpuwardenv1alpha1.GPUAllocation) bool {
	now := g.Clock.Now()
	if a.Status.Phase == gpuwardenv1alpha1.PhaseBound && a.Status.BoundTime != nil {
		return now.Sub(a.Status.BoundTime.Time) >= g.After // its create goes on as soon as it is Bound
	}
	if w := a.Annotations[gpuwardenv1alpha1.AnnotationWaiter]; w != "" && g.Waiter != "" && w != g.Waiter &&
		now.Sub(a.CreationTimestamp.Time) >= strayGrace {
		return true
	}
	if until, err := time.Parse(time.RFC3339, a.Annotations[gpuwardenv1alpha1.AnnotationWaitUntil]); err == nil {
		return now.Sub(until) >= strayGrace
	}
	return now.Sub(a.CreationTimestamp.Time) >= g.After
}

package reclaim

// Giving borrowed GPUs back: the allocator asks (annotation gpuwarden.io/give-back on a
// borrowed allocation) when a request within its user's quota waits for them; the node
// that holds them tells the owner, runs the container's checkpoint hook, stops it with its
// grace period and releases the allocation.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/manager"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// GiveBack carries out the give-backs the allocator asks of the node's allocations.
type GiveBack struct {
	Client   client.Client
	Store    *containerstore.Store
	Owners   *containerstore.Owners
	Actions  *actions.Actions
	Audit    audit.Logger
	NodeName string
	Clock    clock.PassiveClock
	// Interval is the time between two sweeps.
	Interval time.Duration

	mu    sync.Mutex
	doing map[string]bool // allocations being given back now
}

// NeedLeaderElection: only the node's active controller stops containers.
func (g *GiveBack) NeedLeaderElection() bool { return true }

// Start sweeps every Interval until ctx ends.
func (g *GiveBack) Start(ctx context.Context) error {
	return manager.Every(ctx, g.Interval, g.Sweep, "Giving borrowed GPUs back")
}

// Sweep starts the give-back of each allocation of the node asked for one; each runs on
// its own (a checkpoint hook may take minutes).
func (g *GiveBack) Sweep(ctx context.Context) error {
	if !g.Store.Synced() {
		return nil
	}
	var allocs gpuwardenv1alpha1.GPUAllocationList
	if err := g.Client.List(ctx, &allocs); err != nil {
		return fmt.Errorf("listing GPU allocations: %w", err)
	}
	for i := range allocs.Items {
		a := &allocs.Items[i]
		// Only what the allocator bound as borrowed: whoever else wrote the annotation.
		if a.Spec.NodeName != g.NodeName || a.Annotations[gpuwardenv1alpha1.AnnotationGiveBack] == "" || !a.Status.Borrowed ||
			a.Annotations[gpuwardenv1alpha1.AnnotationRelease] != "" || a.Status.Phase != gpuwardenv1alpha1.PhaseBound {
			continue
		}
		if !g.begin(a.Name) {
			continue
		}
		go func(a *gpuwardenv1alpha1.GPUAllocation) {
			defer g.end(a.Name)
			if err := g.giveBack(ctx, a); err != nil && ctx.Err() == nil {
				ctrl.LoggerFrom(ctx).Error(err, "Giving borrowed GPUs back; tried again on the next sweep", "allocation", a.Name)
			}
		}(a.DeepCopy())
	}
	return nil
}

func (g *GiveBack) begin(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.doing[name] {
		return false
	}
	if g.doing == nil {
		g.doing = map[string]bool{}
	}
	g.doing[name] = true
	return true
}

func (g *GiveBack) end(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.doing, name)
}

// giveBack tells the owner, stops the container (checkpoint hook first) and releases a,
// only once the engine says the container no longer runs: a paused or restarting one is
// stopped too, and killed if a stop leaves it so.
func (g *GiveBack) giveBack(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) error {
	why := a.Annotations[gpuwardenv1alpha1.AnnotationGiveBack]
	c, ok, _ := g.Store.Get(a.Status.ContainerID)
	if ok && holds(c.State) {
		owner := g.Owners.Of(c)
		user := containerstore.OwnerOrUnknown(owner)
		policy, err := g.Actions.Policy(ctx, c, owner)
		if err != nil {
			return fmt.Errorf("reading the container's policy: %w", err)
		}
		n := notify.For(c, user, a.Name, policy, g.NodeName, g.Clock.Now())
		n.Type, n.Title, n.Mode, n.Policy = audit.TypeLifecycleGiveBack, "GIVING BACK", string(gpuwardenv1alpha1.ModeEnforce), resolve.PolicyName(policy.Values["checkpointTimeout"].From)
		n.Message = fmt.Sprintf("Its GPUs were borrowed beyond your quota and are given back now: %s. %s", why, stopsHow(c, policy))
		if g.Actions.Once(c.ID, "give-back/"+c.StartStamp()) {
			g.Actions.Tell(ctx, n)
		}
		began := g.Clock.Now()
		err = g.Actions.StopLoan(ctx, c, owner, a, policy, reasons.EventGivenBack, "give_back: "+why)
		if err != nil && !errors.Is(err, docker.ErrNotFound) {
			g.Actions.Unsay(c.ID, "give-back/"+c.StartStamp())
			return err
		}
		if err := g.stopped(ctx, c.ID); err != nil {
			return err
		}
		text := "give_back: stopped: " + why
		if s, ok := g.Actions.LastStop(c.ID); ok && !s.At.Before(began) && s.Checkpoint != nil {
			text += ". " + actions.CheckpointSentence(s.Checkpoint)
		}
		g.Audit.Log(audit.Lifecycle(audit.GiveBack, user, containerstore.AuditRef(c), n.Policy, string(gpuwardenv1alpha1.ModeEnforce), text))
	}
	return g.Actions.Release(ctx, a, why)
}

// holds reports whether a container in state s may still use its GPUs.
func holds(s docker.State) bool {
	return s == docker.StateRunning || s == docker.StatePaused || s == docker.StateRestarting
}

// stopped makes sure the engine no longer runs the container, killing it if the stop left
// it paused or running; an error when it cannot tell or the container still runs.
func (g *GiveBack) stopped(ctx context.Context, id string) error {
	for range 2 {
		c, err := g.Actions.Engine.Inspect(ctx, id)
		if errors.Is(err, docker.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("checking that the container stopped: %w", err)
		}
		if !holds(c.State) {
			return nil
		}
		if err := g.Actions.Engine.Kill(ctx, id, "SIGKILL"); err != nil && !errors.Is(err, docker.ErrNotFound) {
			return fmt.Errorf("killing the container that a stop left %s: %w", c.State, err)
		}
	}
	return fmt.Errorf("container %s still holds its GPUs after a stop and a kill; its allocation is kept", docker.ShortID(id))
}

// stopsHow says what happens to the container now.
func stopsHow(c docker.Container, p resolve.Policy) string {
	grace := actions.DefaultStopGracePeriod
	if l := p.Duration("stopGracePeriod"); l.Applies() {
		grace = l.Duration
	}
	if actions.HasCheckpoint(c) {
		return fmt.Sprintf("Its checkpoint hook runs first (up to %s), then it is stopped (SIGKILL after %s).", actions.CheckpointTimeout(c, p), grace)
	}
	return fmt.Sprintf("It is stopped now (SIGKILL after %s); a checkpoint hook (label %s) would have let it save its work first.", grace, gpuwardenv1alpha1.LabelCheckpoint)
}

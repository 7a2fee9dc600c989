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
	"github.com/gpuwarden/gpuwarden/internal/metrics"
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

// Sweep starts the give-back of each allocation of the node asked for one, and the stop
// of each that a reservation takes the devices of at a start now past (those whose start
// is ahead are told); each runs on its own (a checkpoint hook may take minutes).
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
		if a.Spec.NodeName != g.NodeName || a.Annotations[gpuwardenv1alpha1.AnnotationRelease] != "" || a.Status.Phase != gpuwardenv1alpha1.PhaseBound {
			continue
		}
		t, ok := g.asked(ctx, a)
		if !ok || !g.begin(a.Name) {
			continue
		}
		go func(a *gpuwardenv1alpha1.GPUAllocation) {
			defer g.end(a.Name)
			if err := g.takeBack(ctx, a, t); err != nil && ctx.Err() == nil {
				ctrl.LoggerFrom(ctx).Error(err, "Taking GPUs back; tried again on the next sweep", "allocation", a.Name, "why", t.why)
			}
		}(a.DeepCopy())
	}
	return nil
}

// taking is why and how an allocation's GPUs are taken back.
type taking struct {
	why, title, message string
	once                string
	action              audit.LifecycleAction
	eventReason         string
}

// asked says whether a's GPUs are to be taken back now, and how: given back where the
// allocator bound it as borrowed and asks for them (whoever else wrote the annotation, it
// is not acted on), or stopped for a reservation whose start has come (its owner told
// ahead, once).
func (g *GiveBack) asked(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) (taking, bool) {
	if why := a.Annotations[gpuwardenv1alpha1.AnnotationGiveBack]; why != "" && a.Status.Borrowed {
		return taking{why: why, title: "GIVING BACK", once: "give-back", action: audit.GiveBack, eventReason: reasons.EventGivenBack,
			message: "Its GPUs were borrowed beyond your quota and are given back now: " + why + "."}, true
	}
	d := a.Status.Displacement
	if d == nil {
		return taking{}, false
	}
	why := "reservation " + d.Reservation + ": " + d.Message
	if g.Clock.Now().Before(d.At.Add(-g.stopLead(ctx, a))) {
		g.warnDisplaced(ctx, a, d)
		return taking{}, false
	}
	return taking{why: why, title: "RESERVED", once: "reservation/" + d.Reservation + "/" + d.At.UTC().Format(time.RFC3339), action: audit.ReservationStop,
		eventReason: reasons.EventReservationStopped, message: "Its GPUs are reserved from " + d.At.UTC().Format(time.RFC3339) + ": " + d.Message + "."}, true
}

// stopLead is how long before a reservation's start the stop of a's container begins, so
// that its devices are free at the start: its checkpoint hook, its grace period, and the
// sweeps and pass that release it.
func (g *GiveBack) stopLead(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) time.Duration {
	lead := 3 * g.Interval
	c, ok, _ := g.Store.Get(a.Status.ContainerID)
	if !ok || !holds(c.State) {
		return lead
	}
	policy, err := g.Actions.Policy(ctx, c, g.Owners.Of(c))
	if err != nil {
		return lead + actions.DefaultStopGracePeriod + actions.DefaultCheckpointTimeout
	}
	return lead + actions.StopTakes(c, policy)
}

// warnDisplaced tells a's owner, once per container start, that a reservation stops the
// container at its start.
func (g *GiveBack) warnDisplaced(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, d *gpuwardenv1alpha1.Displacement) {
	c, ok, _ := g.Store.Get(a.Status.ContainerID)
	if !ok || !holds(c.State) {
		return
	}
	once := "reservation-warning/" + d.Reservation + "/" + d.At.UTC().Format(time.RFC3339) + "/" + c.StartStamp()
	if !g.Actions.Once(c.ID, once) {
		return
	}
	owner := g.Owners.Of(c)
	user := containerstore.OwnerOrUnknown(owner)
	policy, err := g.Actions.Policy(ctx, c, owner)
	if err != nil {
		g.Actions.Unsay(c.ID, once)
		return
	}
	n := notify.For(c, user, a.Name, policy, g.NodeName, g.Clock.Now())
	n.Type, n.Title, n.Mode, n.Policy = audit.TypeReservationDisplaced, "RESERVED", string(gpuwardenv1alpha1.ModeEnforce), resolve.PolicyName(policy.Values["checkpointTimeout"].From)
	n.Message = fmt.Sprintf("%s. Your container's time crosses its start, so that its GPUs are free then: %s", d.Message,
		stopsHow(c, policy, d.At.Add(-g.stopLead(ctx, a)).UTC().Format(time.RFC3339)))
	g.Actions.Tell(ctx, n)
	g.Audit.Log(audit.Reservation(audit.TypeReservationDisplaced, user, d.Reservation, map[string]any{"allocation": a.Name,
		"container": c.Name, "at": d.At.UTC().Format(time.RFC3339), "message": d.Message}))
	metrics.ReservationSteps.WithLabelValues("displaced", "").Inc()
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

// takeBack tells the owner, stops the container (checkpoint hook first) and releases a,
// only once the engine says the container no longer runs: a paused or restarting one is
// stopped too, and killed if a stop leaves it so.
func (g *GiveBack) takeBack(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, t taking) error {
	c, ok, _ := g.Store.Get(a.Status.ContainerID)
	if ok && holds(c.State) {
		owner := g.Owners.Of(c)
		user := containerstore.OwnerOrUnknown(owner)
		policy, err := g.Actions.Policy(ctx, c, owner)
		if err != nil {
			return fmt.Errorf("reading the container's policy: %w", err)
		}
		n := notify.For(c, user, a.Name, policy, g.NodeName, g.Clock.Now())
		n.Type, n.Title, n.Mode, n.Policy = string(t.action), t.title, string(gpuwardenv1alpha1.ModeEnforce), resolve.PolicyName(policy.Values["checkpointTimeout"].From)
		n.Message = t.message + " " + stopsHow(c, policy, "")
		once := t.once + "/" + c.StartStamp()
		if g.Actions.Once(c.ID, once) {
			g.Actions.Tell(ctx, n)
		}
		began := g.Clock.Now()
		err = g.Actions.StopLoan(ctx, c, owner, a, policy, t.eventReason, string(t.action)[len("lifecycle."):]+": "+t.why)
		if err != nil && !errors.Is(err, docker.ErrNotFound) {
			g.Actions.Unsay(c.ID, once)
			return err
		}
		if err := g.stopped(ctx, c.ID); err != nil {
			return err
		}
		text := string(t.action)[len("lifecycle."):] + ": stopped: " + t.why
		if s, ok := g.Actions.LastStop(c.ID); ok && !s.At.Before(began) && s.Checkpoint != nil {
			text += ". " + actions.CheckpointSentence(s.Checkpoint)
		}
		g.Audit.Log(audit.Lifecycle(t.action, user, containerstore.AuditRef(c), n.Policy, string(gpuwardenv1alpha1.ModeEnforce), text))
	}
	return g.Actions.Release(ctx, a, t.why)
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

// stopsHow says what happens to the container now, or at a time.
func stopsHow(c docker.Container, p resolve.Policy, at string) string {
	grace := actions.StopGracePeriod(p)
	switch {
	case at != "" && actions.HasCheckpoint(c):
		return fmt.Sprintf("at %s its checkpoint hook runs (up to %s), then it is stopped (SIGKILL after %s) and its GPUs released.", at, actions.CheckpointTimeout(c, p), grace)
	case at != "":
		return fmt.Sprintf("at %s it is stopped (SIGKILL after %s) and its GPUs released; a checkpoint hook (label %s) would let it save its work first.", at, grace, gpuwardenv1alpha1.LabelCheckpoint)
	case actions.HasCheckpoint(c):
		return fmt.Sprintf("Its checkpoint hook runs first (up to %s), then it is stopped (SIGKILL after %s).", actions.CheckpointTimeout(c, p), grace)
	}
	return fmt.Sprintf("It is stopped now (SIGKILL after %s); a checkpoint hook (label %s) would have let it save its work first.", grace, gpuwardenv1alpha1.LabelCheckpoint)
}

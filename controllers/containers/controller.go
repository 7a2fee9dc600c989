package containers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

const (
	// IndexContainerID indexes GPUAllocations by the container IDs they name.
	IndexContainerID = "gpuwarden.io/containerID"
)

// Reconciler ties the node's containers to GPUAllocations: it attaches a container
// to the allocation its label names, releases an allocation at once when its container is
// removed and after gpuHoldAfterStop when it stays stopped, removes containers never started
// or stopped too long, and adopts GPU containers made outside gpuwarden. It acts only on a
// synced containerstore.Store: a Docker outage releases nothing.
type Reconciler struct {
	Client client.Client
	// Reader reads the signing key beside the ledger from the API server itself.
	Reader client.Reader
	// LedgerNamespace holds the allocation ledger (kube-system when empty).
	LedgerNamespace string
	Store           *containerstore.Store
	NodeName        string
	Clock           clock.PassiveClock
	Recorder        recorder.EventRecorder
	Audit           audit.Logger
	// Owners says who owns a container (shared with the watcher and the scanner).
	Owners *containerstore.Owners
	// Actions stops, removes, releases and reports (shared with the reclaimer).
	Actions *actions.Actions
	// Changed is the Watcher's channel of containers to look at.
	Changed <-chan event.GenericEvent
}

// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuallocations,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuallocations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=gpuwarden.io,resources=containerpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpus/status,verbs=get;update;patch

// Reconcile looks at one container, named by its ID.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	id := req.Name
	c, ok, synced := r.Store.Get(id)
	if !synced {
		return ctrl.Result{}, nil // the watcher hands every container on again once it is back
	}
	if !ok {
		return ctrl.Result{}, r.gone(ctx, id)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("container", c.Name, "id", docker.ShortID(id)))
	owner := r.Owners.Of(c)
	allocs, err := r.allocationsOf(ctx, c, owner)
	if err != nil {
		return ctrl.Result{}, err
	}
	live := liveAllocation(allocs)
	if stopped, err := r.stopOnMovedMounts(ctx, c, owner, live); stopped || err != nil {
		return ctrl.Result{}, err
	}
	if live != nil {
		if err := r.attach(ctx, c, live); err != nil {
			return ctrl.Result{}, err
		}
	} else if r.wantsAdoption(c, allocs) {
		if stopped, err := r.stopOnHeldDevices(ctx, c, owner, allocs); stopped || err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.adopt(ctx, c, owner, allocs)
	}
	policy, err := r.policy(ctx, c, owner)
	if err != nil {
		return ctrl.Result{}, err
	}
	if live != nil {
		if err := r.checkWithinAllocation(ctx, c, owner, live, policy); err != nil {
			return ctrl.Result{}, err
		}
	}
	if a := adoptedFor(allocs, c.ID); a != nil && c.State == docker.StateRunning {
		if err := r.checkAdopted(ctx, c, a, policy); err != nil {
			return ctrl.Result{}, err
		}
	}
	if c.State == docker.StateRunning || c.State == docker.StateRestarting || c.State == docker.StatePaused {
		return ctrl.Result{}, nil
	}
	next, err := r.notRunning(ctx, c, owner, live, policy)
	return ctrl.Result{RequeueAfter: next}, err
}

// allocationsOf are the allocations that are the container's: attached to it, owned by its
// owner, an adoption carried to its first start.
func (r *Reconciler) allocationsOf(ctx context.Context, c docker.Container, owner string) ([]gpuwardenv1alpha1.GPUAllocation, error) {
	allocs, err := r.attached(ctx, c, owner)
	if err != nil {
		return nil, err
	}
	if allocs, err = r.ownedAmong(ctx, c, owner, allocs); err != nil {
		return nil, err
	}
	return allocs, r.carryAdoptionToFirstStart(ctx, c, allocs)
}

// notRunning carries out what the lifecycle rules say is due to a container that does not
// run (its GPUs released after the hold, its removal), and returns when to look again.
func (r *Reconciler) notRunning(ctx context.Context, c docker.Container, owner string, live *gpuwardenv1alpha1.GPUAllocation, policy resolve.Policy) (time.Duration, error) {
	bound := live != nil && live.Status.Phase == gpuwardenv1alpha1.PhaseBound && live.Annotations[gpuwardenv1alpha1.AnnotationRelease] == ""
	// Bound since the container stopped (a start through the gateway holding its GPUs again,
	// just before the engine runs it): its hold counts from the binding, not from the stop.
	rebound := bound && live.Status.BoundTime != nil && live.Status.BoundTime.After(c.FinishedAt)
	lifecycleContainer := lifecycle.Container{NeverStarted: c.NeverStarted(), Stopped: c.State.Stopped(),
		Created: c.Created, FinishedAt: c.FinishedAt, HoldsGPUs: bound && !rebound, Protected: labels.IsProtected(c.Labels)}
	due, next := lifecycle.NotRunning(lifecycleContainer, policy, r.Clock.Now())
	if rebound {
		hold, after := lifecycle.NotRunning(lifecycle.Container{Stopped: c.State.Stopped(), FinishedAt: live.Status.BoundTime.Time, HoldsGPUs: true,
			Protected: true}, policy, r.Clock.Now())
		due = append(hold, due...)
		if after > 0 && (next == 0 || after < next) {
			next = after
		}
	}
	for _, d := range due {
		if err := r.act(ctx, c, owner, live, policy, d); err != nil {
			return 0, err
		}
	}
	r.announce(ctx, c, owner, live, policy, lifecycle.Upcoming(lifecycleContainer, policy, r.Clock.Now()))
	return next, nil
}

// policy is the container's effective ContainerPolicy.
func (r *Reconciler) policy(ctx context.Context, c docker.Container, owner string) (resolve.Policy, error) {
	return r.Actions.Policy(ctx, c, owner)
}

// SetupWithManager registers the controller, fed by the watcher and by changes to the
// allocations that name a container.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.LedgerNamespace == "" {
		r.LedgerNamespace = ledger.DefaultNamespace
	}
	if r.Client == nil || r.Reader == nil || r.Store == nil || r.Owners == nil || r.NodeName == "" || r.Clock == nil ||
		r.Recorder == nil || r.Audit == nil || r.Changed == nil {
		return errors.New("the container Reconciler needs a Client, Reader, Owners, Store, NodeName, Clock, Recorder, Audit and Changed")
	}
	if err := r.Actions.Validate(); err != nil {
		return fmt.Errorf("the container Reconciler: %w", err)
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &gpuwardenv1alpha1.GPUAllocation{}, IndexContainerID,
		func(o client.Object) []string { return containerIDsOf(o.(*gpuwardenv1alpha1.GPUAllocation)) }); err != nil {
		return fmt.Errorf("indexing allocations by container: %w", err)
	}
	toContainers := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		var out []reconcile.Request
		for _, id := range containerIDsOf(o.(*gpuwardenv1alpha1.GPUAllocation)) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: id}})
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("container").
		WatchesRawSource(source.Channel(r.Changed, &handler.EnqueueRequestForObject{})).
		Watches(&gpuwardenv1alpha1.GPUAllocation{}, toContainers).
		Complete(r)
}

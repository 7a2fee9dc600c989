package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

const (
	// IndexContainerID indexes GPUAllocations by the container IDs they name.
	IndexContainerID = "gpuwarden.io/containerID"
	// DefaultStopGracePeriod is the SIGTERM → SIGKILL wait when no policy sets one.
	DefaultStopGracePeriod = 60 * time.Second
)

// ContainerReconciler ties the node's containers to GPUAllocations: it attaches a container
// to the allocation its label names, releases an allocation at once when its container is
// removed and after gpuHoldAfterStop when it stays stopped, removes containers never started
// or stopped too long, and adopts GPU containers made outside gpuwarden. It acts only on a
// synced ContainerStore: a Docker outage releases nothing.
type ContainerReconciler struct {
	Client client.Client
	// Reader reads the signing key beside the ledger from the API server itself.
	Reader client.Reader
	// LedgerNamespace holds the allocation ledger (kube-system when empty).
	LedgerNamespace string
	Engine          docker.Engine
	Store           *ContainerStore
	NodeName        string
	Groups          resolve.Groups
	Clock           clock.PassiveClock
	Recorder        recorder.EventRecorder
	Audit           audit.Logger
	// Owners says who owns a container (shared with the watcher and the scanner).
	Owners *Owners
	// Changed is the ContainerWatcher's channel of containers to look at.
	Changed <-chan event.GenericEvent

	mu sync.Mutex
	// reported remembers what was said once and should not be said on every pass
	// (dry-run actions, unallocated-GPU reports), by container and what.
	reported map[string]bool
}

// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuallocations,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuallocations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=gpuwarden.io,resources=containerpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpus/status,verbs=get;update;patch

// Reconcile looks at one container, named by its ID.
func (r *ContainerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	id := req.Name
	c, ok, synced := r.Store.Get(id)
	if !synced {
		return ctrl.Result{}, nil // the watcher hands every container on again once it is back
	}
	if !ok {
		return ctrl.Result{}, r.gone(ctx, id)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("container", c.Name, "id", id[:min(12, len(id))]))
	owner := r.Owners.Of(c)
	allocs, err := r.attached(ctx, c, owner)
	if err != nil {
		return ctrl.Result{}, err
	}
	if allocs, err = r.ownedAmong(ctx, c, owner, allocs); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.carryAdoptionToFirstStart(ctx, c, allocs); err != nil {
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
	bound := live != nil && live.Status.Phase == gpuwardenv1alpha1.PhaseBound && live.Annotations[gpuwardenv1alpha1.AnnotationRelease] == ""
	// Bound since the container stopped (a start through the gateway holding its GPUs again,
	// just before the engine runs it): its hold counts from the binding, not from the stop.
	rebound := bound && live.Status.BoundTime != nil && live.Status.BoundTime.After(c.FinishedAt)
	due, next := lifecycle.NotRunning(lifecycle.Container{NeverStarted: c.NeverStarted(), Stopped: c.State.Stopped(),
		Created: c.Created, FinishedAt: c.FinishedAt, HoldsGPUs: bound && !rebound, Protected: labels.IsProtected(c.Labels)}, policy, r.Clock.Now())
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
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// policy is the container's effective ContainerPolicy.
func (r *ContainerReconciler) policy(ctx context.Context, c docker.Container, owner string) (resolve.Policy, error) {
	return r.policies().Effective(ctx, owner, c.Labels)
}

// policyAmong is the container's effective policy among policies, listed once by the caller.
func (r *ContainerReconciler) policyAmong(ctx context.Context, policies []gpuwardenv1alpha1.ContainerPolicy, c docker.Container, owner string) (resolve.Policy, error) {
	return r.policies().Among(ctx, policies, owner, c.Labels)
}

func (r *ContainerReconciler) policies() Policies {
	return Policies{Client: r.Client, Groups: r.Groups, Clock: r.Clock}
}

func (r *ContainerReconciler) once(id, what string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reported == nil {
		r.reported = map[string]bool{}
	}
	k := id + "/" + what
	if r.reported[k] {
		return false
	}
	r.reported[k] = true
	return true
}

// unreport lets one thing be said again.
func (r *ContainerReconciler) unreport(id, what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.reported, id+"/"+what)
}

func (r *ContainerReconciler) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.reported {
		if strings.HasPrefix(k, id+"/") {
			delete(r.reported, k)
		}
	}
}

// SetupWithManager registers the controller, fed by the watcher and by changes to the
// allocations that name a container.
func (r *ContainerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.LedgerNamespace == "" {
		r.LedgerNamespace = DefaultLedgerNamespace
	}
	if r.Client == nil || r.Reader == nil || r.Engine == nil || r.Store == nil || r.Owners == nil || r.NodeName == "" || r.Groups == nil || r.Clock == nil ||
		r.Recorder == nil || r.Audit == nil || r.Changed == nil {
		return errors.New("ContainerReconciler needs a Client, Reader, Engine, Owners, Store, NodeName, Groups, Clock, Recorder, Audit and Changed")
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

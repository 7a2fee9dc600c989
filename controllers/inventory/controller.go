package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
)

// Defaults of Reconciler.
const (
	DefaultInventoryInterval = gpu.InventoryInterval
	DefaultSlowInterval      = time.Minute
)

// Reconciler keeps one GPU object per physical GPU of its node in step with NVML.
// Status is written only when something an admin reads changes (health, MIG layout, model,
// memory) or, for slow numbers like utilisation, at most every SlowInterval.
type Reconciler struct {
	Client   client.Client
	GPUs     gpu.Backend
	NodeName string
	Clock    clock.PassiveClock
	// Interval is how often NVML is read.
	Interval time.Duration
	// SlowInterval bounds how often a change of utilisation alone is written.
	SlowInterval time.Duration
}

// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpus,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpus/status,verbs=get;update;patch

// Reconcile reads NVML and brings this node's GPU objects in line; it runs every Interval.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	devices, err := r.GPUs.Devices(ctx)
	if errors.Is(err, gpu.ErrNoDriver) {
		log.V(1).Info("No NVIDIA driver on this node: no GPUs to govern", "reason", err.Error())
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("reading GPUs: %w", err)
	}
	var existing gpuwardenv1alpha1.GPUList
	if err := r.Client.List(ctx, &existing, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: r.NodeName}); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing GPU objects: %w", err)
	}
	byName := map[string]*gpuwardenv1alpha1.GPU{}
	for i := range existing.Items {
		byName[existing.Items[i].Name] = &existing.Items[i]
	}
	seen, retry := map[string]bool{}, false
	for _, d := range devices {
		name := gpu.ObjectName(r.NodeName, d.Index)
		seen[name] = true
		obj, ok := byName[name]
		if !ok {
			if obj, err = r.create(ctx, name, d.Index); err != nil {
				return ctrl.Result{}, err
			}
		}
		want := gpu.StatusOf(d)
		if d.Health == gpu.Lost {
			want = lostStatus(obj.Status, d.HealthMessage)
		}
		if err := r.writeStatus(ctx, obj, want); apierrors.IsConflict(err) {
			// Other controllers write parts of the status (holders, conditions): not an
			// error, only a stale copy; look again shortly.
			retry = true
		} else if err != nil {
			return ctrl.Result{}, err
		}
	}
	if err == nil { // with no driver, say nothing about GPUs we cannot see
		for name, obj := range byName {
			if !seen[name] {
				if err := r.writeStatus(ctx, obj, lostStatus(obj.Status, "NVML no longer lists this GPU")); err != nil {
					return ctrl.Result{}, err
				}
			}
		}
	}
	if retry {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	return ctrl.Result{RequeueAfter: r.Interval}, nil
}

// conflictRetry is how soon a pass that met a stale copy runs again.
const conflictRetry = 100 * time.Millisecond

func (r *Reconciler) create(ctx context.Context, name string, index int) (*gpuwardenv1alpha1.GPU, error) {
	obj := &gpuwardenv1alpha1.GPU{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{gpuwardenv1alpha1.LabelNode: r.NodeName}},
		Spec:       gpuwardenv1alpha1.GPUSpec{NodeName: r.NodeName, Index: int32(index)},
	}
	if err := r.Client.Create(ctx, obj); err != nil {
		return nil, fmt.Errorf("creating GPU %s: %w", name, err)
	}
	return obj, nil
}

// writeStatus writes want unless it differs from the stored status only in slow numbers
// that were written less than SlowInterval ago.
func (r *Reconciler) writeStatus(ctx context.Context, obj *gpuwardenv1alpha1.GPU, want gpuwardenv1alpha1.GPUStatus) error {
	have := obj.Status
	// Holders are written by the allocation controller.
	want.Holder, want.HolderUsers = have.Holder, have.HolderUsers
	holders := map[string]string{}
	for _, in := range have.MIGInstances {
		holders[in.UUID] = in.Holder
	}
	for i := range want.MIGInstances {
		want.MIGInstances[i].Holder = holders[want.MIGInstances[i].UUID]
	}
	want.Conditions = have.Conditions
	want.LastUpdateTime = have.LastUpdateTime
	now := r.Clock.Now()
	if sameIgnoringSlow(have, want) {
		slowChanged := have.UtilizationPercent != want.UtilizationPercent
		if !slowChanged || (have.LastUpdateTime != nil && now.Sub(have.LastUpdateTime.Time) < r.SlowInterval) {
			return nil
		}
	}
	t := metav1.NewTime(now)
	want.LastUpdateTime = &t
	obj.Status = want
	if err := r.Client.Status().Update(ctx, obj); err != nil {
		return fmt.Errorf("updating status of GPU %s: %w", obj.Name, err)
	}
	return nil
}

func sameIgnoringSlow(a, b gpuwardenv1alpha1.GPUStatus) bool {
	a.UtilizationPercent, b.UtilizationPercent = 0, 0
	return equality.Semantic.DeepEqual(a, b)
}

// lostStatus marks a GPU that fell off the bus or that NVML no longer lists. What was known
// of it stays (UUID, model, MIG layout), so an admin sees which GPU it was, and nothing is
// given out on it.
func lostStatus(s gpuwardenv1alpha1.GPUStatus, why string) gpuwardenv1alpha1.GPUStatus {
	out := *s.DeepCopy()
	out.Health = gpuwardenv1alpha1.HealthLost
	out.HealthMessage = why
	out.UtilizationPercent = 0
	return out
}

// SetupWithManager registers the reconciler: it runs once at start, every Interval after,
// and whenever one of this node's GPU objects changes.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	switch {
	case r.Client == nil:
		return errors.New("Reconciler needs a Client")
	case r.GPUs == nil:
		return errors.New("Reconciler needs a GPU back end")
	case r.NodeName == "":
		return errors.New("Reconciler needs a NodeName")
	case r.Clock == nil:
		return errors.New("Reconciler needs a Clock")
	}
	if r.Interval == 0 {
		r.Interval = DefaultInventoryInterval
	}
	if r.SlowInterval == 0 {
		r.SlowInterval = DefaultSlowInterval
	}
	node := reconcile.Request{NamespacedName: client.ObjectKey{Name: r.NodeName}}
	start := make(chan event.GenericEvent, 1)
	start <- event.GenericEvent{Object: &gpuwardenv1alpha1.GPU{ObjectMeta: metav1.ObjectMeta{Name: r.NodeName}}}
	return ctrl.NewControllerManagedBy(mgr).
		Named("inventory").
		Watches(&gpuwardenv1alpha1.GPU{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if o.GetLabels()[gpuwardenv1alpha1.LabelNode] != r.NodeName {
				return nil
			}
			return []reconcile.Request{node}
		})).
		WatchesRawSource(source.Channel(start, &handler.EnqueueRequestForObject{})).
		Complete(r)
}

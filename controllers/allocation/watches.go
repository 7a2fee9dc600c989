package allocation

// What wakes an allocation pass, and what has the holders and usage compared again.

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
)

// SetupWithManager registers the reconciler: one key (one pass at a time), woken by any
// change to allocations, quotas, reservations or the GPUs. As the cluster's allocator (Cluster), the pass
// decides for every node, and runs only while this process leads, on a cache of every
// node's objects made for each term (see terms).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	switch {
	case r.Client == nil || r.Reader == nil || r.NodeName == "" || r.Groups == nil || r.Clock == nil || r.Recorder == nil || r.Audit == nil:
		return errors.New("Reconciler needs a Client, Reader, NodeName, Groups, Clock, Recorder and Audit")
	}
	if r.LedgerNamespace == "" {
		r.LedgerNamespace = ledger.DefaultNamespace
	}
	if r.Retention == 0 {
		r.Retention = DefaultRetention
	}
	r.ledgers = ledger.NewStore(r.Client, r.Reader, r.LedgerNamespace)
	if r.LedgerFlushAt > 0 {
		r.ledgers.FlushAt = r.LedgerFlushAt
	}
	r.derived = newDerivedWriter(r.Client, r.cached, r.NodeName)
	r.derived.notices, r.derived.clock = r.Notices, r.Clock
	if err := mgr.Add(r.derived); err != nil {
		return fmt.Errorf("adding the writer of GPU holders and quota usage: %w", err)
	}
	if r.Cluster == nil {
		c, err := controller.New("allocation", mgr, controller.Options{Reconciler: r})
		if err != nil {
			return err
		}
		start := make(chan event.GenericEvent, 1)
		start <- event.GenericEvent{Object: &gpuwardenv1alpha1.GPUAllocation{}}
		return r.watch(c, mgr.GetCache(), start)
	}
	r.derived.node, r.derived.leads = "", r.Cluster.Leading // every node's GPUs, while leading
	if err := mgr.Add(r.Cluster); err != nil {
		return fmt.Errorf("adding the allocator's election: %w", err)
	}
	t := &terms{r: r, mgr: mgr, started: make(chan context.Context, 1)}
	r.Cluster.OnLead(func(term context.Context) {
		// What a predecessor may have lost is recorded again, and nothing this process
		// wrote before another led is taken as still standing.
		r.auditedAgain.Store(false)
		r.written.Clear()
		r.derived.forget()
		select {
		case <-t.started: // a term that never ran: this one replaces it
		default:
		}
		t.started <- term
	})
	return mgr.Add(t)
}

// watch wakes c's pass with the changes in from that can alter a decision and once from
// start, and has the writer of holders and usage compare what the GPUs and quotas show
// again when someone else changes it.
func (r *Reconciler) watch(c controller.Controller, from cache.Cache, start <-chan event.GenericEvent) error {
	// One key: events that come while a pass runs are decided together by the next one.
	key := []reconcile.Request{{NamespacedName: client.ObjectKey{Name: r.NodeName}}}
	toPass := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return key })
	// The pass writes statuses itself: only changes that can alter a decision wake it.
	for _, src := range []source.Source{
		source.Kind[client.Object](from, &gpuwardenv1alpha1.GPUAllocation{}, toPass, predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionStarted{},
			predicate.Funcs{UpdateFunc: r.statusChangedByOthers}, predicate.Funcs{UpdateFunc: labelsChangedByOthers})),
		source.Kind[client.Object](from, &gpuwardenv1alpha1.GPUQuota{}, toPass, predicate.GenerationChangedPredicate{}),
		// A new reservation is decided (its status is the pass's own to write).
		source.Kind[client.Object](from, &gpuwardenv1alpha1.GPUReservation{}, toPass, predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, deletionStarted{})),
		source.Kind[client.Object](from, &gpuwardenv1alpha1.GPU{}, toPass, predicate.Funcs{UpdateFunc: gpuChangedForAllocation}),
		// Holders and usage are the ledger's to say: whoever else writes them is overwritten.
		source.Kind[client.Object](from, &gpuwardenv1alpha1.GPU{}, r.derived.onChange(), predicate.Funcs{UpdateFunc: holdersChanged}),
		source.Kind[client.Object](from, &gpuwardenv1alpha1.GPUQuota{}, r.derived.onChange(), predicate.Funcs{UpdateFunc: usageChanged}),
		source.Channel(start, toPass),
	} {
		if err := c.Watch(src); err != nil {
			return fmt.Errorf("watching for the allocation passes: %w", err)
		}
	}
	return nil
}

// statusChangedByOthers passes an update that changes what an allocation's status says
// about its devices when the change is not this controller's own write: a status is the
// ledger's to say, and someone else's is put back at once.
func (r *Reconciler) statusChangedByOthers(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*gpuwardenv1alpha1.GPUAllocation)
	n, ok2 := e.ObjectNew.(*gpuwardenv1alpha1.GPUAllocation)
	if !ok1 || !ok2 {
		return true
	}
	if w, ours := r.written.Load(n.Name); ours && equality.Semantic.DeepEqual(w.(*writtenStatus).status, &n.Status) {
		return false // what a pass wrote
	}
	a, b := o.Status, n.Status
	return a.Phase != b.Phase || a.Reason != b.Reason || a.Message != b.Message ||
		!equality.Semantic.DeepEqual(a.Devices, b.Devices) || !equality.Semantic.DeepEqual(a.GPUEquivalents, b.GPUEquivalents) ||
		!equality.Semantic.DeepEqual(a.BoundTime, b.BoundTime) || !equality.Semantic.DeepEqual(a.ReleasedTime, b.ReleasedTime)
}

// labelsChangedByOthers passes an update that puts an allocation's user label out of step
// with its spec (or sets the retired phase label): they are the controller's to say (a
// label naming another user is corrected at once). Its own label writes, which put them in
// step, and its status writes, which leave the labels alone, wake no pass.
func labelsChangedByOthers(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*gpuwardenv1alpha1.GPUAllocation)
	n, ok2 := e.ObjectNew.(*gpuwardenv1alpha1.GPUAllocation)
	if !ok1 || !ok2 {
		return true
	}
	ol, nl := o.GetLabels(), n.GetLabels()
	if ol[gpuwardenv1alpha1.LabelUser] == nl[gpuwardenv1alpha1.LabelUser] && ol[gpuwardenv1alpha1.LabelPhase] == nl[gpuwardenv1alpha1.LabelPhase] {
		return false
	}
	return !allocation.LabelsInStep(n)
}

// deletionStarted passes an update that marks an object for deletion.
type deletionStarted struct{ predicate.Funcs }

func (deletionStarted) Update(e event.UpdateEvent) bool {
	return e.ObjectOld.GetDeletionTimestamp() == nil && e.ObjectNew.GetDeletionTimestamp() != nil
}

// gpuChangedForAllocation passes GPU updates that change what can be given out (identity,
// health, MIG layout), not the holders the pass writes itself or utilisation.
func gpuChangedForAllocation(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*gpuwardenv1alpha1.GPU)
	n, ok2 := e.ObjectNew.(*gpuwardenv1alpha1.GPU)
	if !ok1 || !ok2 {
		return true
	}
	if o.Status.UUID != n.Status.UUID || o.Status.Health != n.Status.Health || o.Status.MIGMode != n.Status.MIGMode ||
		len(o.Status.MIGInstances) != len(n.Status.MIGInstances) {
		return true
	}
	for i := range o.Status.MIGInstances {
		if o.Status.MIGInstances[i].UUID != n.Status.MIGInstances[i].UUID || o.Status.MIGInstances[i].Profile != n.Status.MIGInstances[i].Profile {
			return true
		}
	}
	return false
}

// holdersChanged passes GPU updates that change a holder.
func holdersChanged(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*gpuwardenv1alpha1.GPU)
	n, ok2 := e.ObjectNew.(*gpuwardenv1alpha1.GPU)
	if !ok1 || !ok2 || o.Status.Holder != n.Status.Holder || o.Status.HolderUsers != n.Status.HolderUsers ||
		len(o.Status.MIGInstances) != len(n.Status.MIGInstances) {
		return true
	}
	for i := range o.Status.MIGInstances {
		if o.Status.MIGInstances[i].Holder != n.Status.MIGInstances[i].Holder {
			return true
		}
	}
	return false
}

// usageChanged passes GPUQuota updates that change the usage shown.
func usageChanged(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*gpuwardenv1alpha1.GPUQuota)
	n, ok2 := e.ObjectNew.(*gpuwardenv1alpha1.GPUQuota)
	return !ok1 || !ok2 || !equality.Semantic.DeepEqual(o.Status.Usage, n.Status.Usage) || o.Status.UsedGPUEquivalents != n.Status.UsedGPUEquivalents
}

// writtenStatus is the status a pass last wrote to an allocation, and the version of the
// object it wrote over.
type writtenStatus struct {
	from   string
	status *gpuwardenv1alpha1.GPUAllocationStatus
}

// alreadyWritten reports whether want is what a pass wrote over this very version of a: the
// cache has not caught up with the write yet, and writing it again would only conflict.
func (r *Reconciler) alreadyWritten(a *gpuwardenv1alpha1.GPUAllocation, want *gpuwardenv1alpha1.GPUAllocationStatus) bool {
	v, ok := r.written.Load(a.Name)
	if !ok {
		return false
	}
	w := v.(*writtenStatus)
	return w.from == a.ResourceVersion && equality.Semantic.DeepEqual(w.status, want)
}

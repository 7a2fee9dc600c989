package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/provenance"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

const (
	// LedgerName is the ConfigMap (in LedgerNamespace) that records every live binding.
	LedgerName = "gpuwarden-ledger"
	// LedgerKey is its data key.
	LedgerKey = "ledger.json"
	// DefaultRetention is how long released allocations stay visible.
	DefaultRetention = 24 * time.Hour
)

// AllocationReconciler binds, rejects and releases GPUAllocations of its node. Every
// decision is made against the ledger, one object written with optimistic concurrency:
// no slot is bound twice and no quota exceeded, however many requests and controllers.
// Allocation statuses, GPU holders and quota usage are derived from the ledger, so a crash
// between the ledger write and the status writes is repaired by the next pass.
type AllocationReconciler struct {
	Client client.Client
	// Reader reads the ledger from the API server itself, never from a cache: a pass must
	// start from the latest ledger (the manager's APIReader).
	Reader   client.Reader
	NodeName string
	// GPUs reports the processes on each device: a free device with processes that belong
	// to no allocation is never given out. Optional.
	GPUs            gpu.Backend
	LedgerNamespace string
	Groups          resolve.Groups
	Clock           clock.PassiveClock
	Recorder        recorder.EventRecorder
	Audit           audit.Logger
	Retention       time.Duration

	derived *derivedWriter
	// written is the resourceVersion of each allocation's last status written by a pass.
	written sync.Map
}

// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuallocations,verbs=get;list;watch;update;patch;delete
// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuallocations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuquotas/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update

// Reconcile makes one pass over the node's allocations.
func (r *AllocationReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	var allocs gpuwardenv1alpha1.GPUAllocationList
	if err := r.Client.List(ctx, &allocs); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing allocations: %w", err)
	}
	var gpus gpuwardenv1alpha1.GPUList
	if err := r.Client.List(ctx, &gpus, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: r.NodeName}); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing GPUs: %w", err)
	}
	var quotas gpuwardenv1alpha1.GPUQuotaList
	if err := r.Client.List(ctx, &quotas); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing quotas: %w", err)
	}
	cm, ledger, err := r.readLedger(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	p := &pass{r: r, now: r.Clock.Now(), ledger: ledger, quotas: quotas.Items, groups: map[string][]string{},
		outcome: map[string]allocation.Decision{}, bound: map[string]allocation.Binding{}}
	p.release(allocs.Items)
	p.decide(ctx, allocs.Items, gpus.Items)
	if p.changed {
		if err := r.writeLedger(ctx, cm, p.ledger); apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: claimRetry}, nil // another pass won: decide again on fresh state
		} else if err != nil {
			return ctrl.Result{}, err
		}
		// The ledger changed: that is the decision, recorded once whatever happens to the
		// status writes that show it.
		p.auditLedgerChange(allocs.Items)
	}
	r.derived.set(p.ledger, p.desiredUsage(quotas.Items))
	next, err := p.writeStatuses(ctx, allocs.Items)
	if err != nil {
		return ctrl.Result{}, err
	}
	if p.retry && (next == 0 || next > claimRetry) {
		next = claimRetry
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// claimRetry is how soon a pass whose claim met a stale copy runs again.
const claimRetry = 50 * time.Millisecond

// claim gives an allocation without a node to this node, which has just found room for
// it; the API server lets only one node's claim through (nodeName is immutable once set).
// A conflict (the cached copy was stale) is not a refusal: the pass is retried shortly.
func (r *AllocationReconciler) claim(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) (claimed, retry bool) {
	c := a.DeepCopy()
	c.Spec.NodeName = r.NodeName
	if err := r.Client.Update(ctx, c); err != nil {
		ctrl.LoggerFrom(ctx).V(1).Info("Could not claim the allocation", "allocation", a.Name, "reason", err.Error())
		return false, apierrors.IsConflict(err)
	}
	*a = *c
	return true, false
}

func (r *AllocationReconciler) readLedger(ctx context.Context) (*corev1.ConfigMap, allocation.Ledger, error) {
	cm := &corev1.ConfigMap{}
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: r.LedgerNamespace, Name: LedgerName}, cm)
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: r.LedgerNamespace, Name: LedgerName}}
		if err := r.Client.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, allocation.Ledger{}, fmt.Errorf("creating the allocation ledger: %w", err)
		}
		if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(cm), cm); err != nil {
			return nil, allocation.Ledger{}, fmt.Errorf("reading the allocation ledger: %w", err)
		}
	} else if err != nil {
		return nil, allocation.Ledger{}, fmt.Errorf("reading the allocation ledger: %w", err)
	}
	l, err := allocation.ParseLedger(cm.Data[LedgerKey])
	return cm, l, err
}

func (r *AllocationReconciler) writeLedger(ctx context.Context, cm *corev1.ConfigMap, l allocation.Ledger) error {
	data, err := l.Encode()
	if err != nil {
		return err
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[LedgerKey] = data
	// Update sends the resourceVersion read: a ledger changed since makes it fail.
	if err := r.Client.Update(ctx, cm); err != nil {
		return fmt.Errorf("writing the allocation ledger: %w", err)
	}
	return nil
}

// pass is one reconcile's working state.
type pass struct {
	r        *AllocationReconciler
	now      time.Time
	ledger   allocation.Ledger
	quotas   []gpuwardenv1alpha1.GPUQuota
	groups   map[string][]string
	outcome  map[string]allocation.Decision
	released map[string]releaseInfo
	// bound are the bindings this pass made.
	bound   map[string]allocation.Binding
	changed bool
	// retry asks for another pass soon: a claim met a stale copy.
	retry bool
	// complete is this node's whole inventory from the GPU back end, read once per pass
	// when a request does not fit (see unsatisfiable).
	complete []allocation.Slot
	// key signs what gpuwarden makes itself (read when first needed).
	key []byte
}

type releaseInfo struct {
	binding allocation.Binding
	reason  string
}

func (p *pass) groupsOf(ctx context.Context, user string) []string {
	if g, ok := p.groups[user]; ok {
		return g
	}
	g, err := p.r.Groups.GroupsOf(user)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Looking up groups; treating the user as in none", "user", user)
	}
	p.groups[user] = g
	return g
}

// release drops bindings whose allocation is gone, being deleted, or asked to release.
func (p *pass) release(allocs []gpuwardenv1alpha1.GPUAllocation) {
	byName := map[string]*gpuwardenv1alpha1.GPUAllocation{}
	for i := range allocs {
		byName[allocs[i].Name] = &allocs[i]
	}
	p.released = map[string]releaseInfo{}
	for name, b := range p.ledger.Bindings {
		a, ok := byName[name]
		reason := ""
		switch {
		case !ok || a.DeletionTimestamp != nil:
			reason = "allocation deleted"
		case a.Annotations[gpuwardenv1alpha1.AnnotationRelease] != "":
			reason = releaseReason(a)
		default:
			// Whatever the status says (someone may have written Released there), the
			// ledger holds the binding: it stands.
			continue
		}
		delete(p.ledger.Bindings, name)
		p.released[name] = releaseInfo{binding: b, reason: reason}
		p.changed = true
	}
}

// decide places this node's waiting allocations, highest priority first, then oldest.
func (p *pass) decide(ctx context.Context, allocs []gpuwardenv1alpha1.GPUAllocation, gpus []gpuwardenv1alpha1.GPU) {
	holders := map[string][]string{}
	for _, b := range p.ledger.Bindings {
		holders[b.User] = p.groupsOf(ctx, b.User)
	}
	type waiting struct {
		a        *gpuwardenv1alpha1.GPUAllocation
		quota    resolve.Quota
		priority int32
	}
	var queue []waiting
	for i := range allocs {
		a := &allocs[i]
		if !p.waits(a) {
			continue
		}
		q := resolve.EffectiveQuota(p.quotas, a.Spec.User, p.groupsOf(ctx, a.Spec.User), holders)
		queue = append(queue, waiting{a: a, quota: q, priority: q.Priority.Value})
	}
	if len(queue) == 0 {
		return // nothing waits: no need to ask NVML for processes
	}
	inventory := p.r.markForeign(ctx, allocation.SlotsOf(gpus))
	allocation.SortQueue(queue, func(w waiting) allocation.Queued {
		return allocation.Queued{Name: w.a.Name, Priority: w.priority, Created: w.a.CreationTimestamp.Time}
	})
	for _, w := range queue {
		if provenance.NeedsSignature(w.a) {
			signed, err := p.signed(ctx, w.a)
			if err != nil {
				ctrl.LoggerFrom(ctx).Error(err, "Checking an allocation's signature; deciding it later", "allocation", w.a.Name)
				p.retry = true
				continue
			}
			if !signed {
				p.outcome[w.a.Name] = allocation.Decision{Reason: gpuwardenv1alpha1.ReasonSourceNotAllowed, Message: fmt.Sprintf(
					"source %s is set only by gpuwarden itself, and gpuwarden did not make this allocation; create it without a source (Manual)", w.a.Spec.Source)}
				continue
			}
		}
		req := allocation.Request{User: w.a.Spec.User, MIGProfile: w.a.Spec.Request.MIGProfile, Devices: w.a.Spec.Request.Devices}
		if w.a.Spec.Request.GPUs != nil {
			req.GPUs = int(*w.a.Spec.Request.GPUs)
		}
		slots := inventory
		if w.a.Spec.Source == gpuwardenv1alpha1.SourceAdopted {
			// The processes on an adopted container's devices are its own.
			slots = ownProcesses(inventory, req.Devices)
		}
		d := allocation.Decide(slots, p.ledger.Holdings(), w.quota.Quota, req)
		unassigned := w.a.Spec.NodeName == ""
		if !d.Placed() && !d.Final() {
			if why := p.unsatisfiable(ctx, req, unassigned); why != "" {
				d = allocation.Decision{Reason: gpuwardenv1alpha1.ReasonUnsatisfiable, Message: why}
			}
		}
		if d.Placed() {
			if unassigned {
				claimed, retry := p.r.claim(ctx, w.a)
				p.retry = p.retry || retry
				if !claimed {
					continue
				}
			}
			p.bound[w.a.Name] = p.ledger.Bind(w.a.Name, w.a.Spec.User, p.r.NodeName, d.Slots, p.now)
			p.changed = true
			continue
		}
		if unassigned && !d.Final() {
			// Every node sees it: say the same thing on each, so the status does not flap.
			d.Message = "waiting for capacity on any GPU node"
		}
		p.outcome[w.a.Name] = d
	}
}

// signed reports whether gpuwarden made a (its signature matches its spec).
func (p *pass) signed(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) (bool, error) {
	if p.key == nil {
		key, err := signingKey(ctx, p.r.Reader, p.r.Client, p.r.LedgerNamespace)
		if err != nil {
			return false, err
		}
		p.key = key
	}
	return provenance.Verify(p.key, a), nil
}

// unsatisfiable says why req can never be met — on this node, or for a request not yet
// given a node, on any node — or "" when it can, or when that is not known. This node's
// inventory is read from the GPU back end itself, complete, never from GPU objects that may
// still be being written.
func (p *pass) unsatisfiable(ctx context.Context, req allocation.Request, anyNode bool) string {
	if p.complete == nil {
		p.complete = []allocation.Slot{}
		if p.r.GPUs == nil {
			return ""
		}
		devices, err := p.r.GPUs.Devices(ctx)
		if err != nil || len(devices) == 0 {
			return "" // nothing known for sure: keep waiting
		}
		gpus := make([]gpuwardenv1alpha1.GPU, 0, len(devices))
		for _, d := range devices {
			gpus = append(gpus, gpuwardenv1alpha1.GPU{Spec: gpuwardenv1alpha1.GPUSpec{Index: int32(d.Index)}, Status: deviceStatus(d)})
		}
		p.complete = allocation.SlotsOf(gpus)
	}
	if len(p.complete) == 0 {
		return ""
	}
	why := allocation.Unsatisfiable(p.complete, req, p.r.NodeName)
	if why == "" || !anyNode {
		return why
	}
	var all gpuwardenv1alpha1.GPUList
	if err := p.r.Client.List(ctx, &all); err != nil {
		return ""
	}
	byNode := map[string][]gpuwardenv1alpha1.GPU{}
	for _, g := range all.Items {
		if n := g.Labels[gpuwardenv1alpha1.LabelNode]; n != p.r.NodeName {
			byNode[n] = append(byNode[n], g)
		}
	}
	for node, gpus := range byNode {
		if allocation.Unsatisfiable(allocation.SlotsOf(gpus), req, node) == "" {
			return "" // another node may meet it
		}
	}
	if len(byNode) > 0 {
		why += fmt.Sprintf(", nor can any of the %d other GPU nodes", len(byNode))
	}
	return why
}

// waits reports whether a is this node's (or no node's yet) and still to be decided. A
// status that says Bound while the ledger holds no binding was never this controller's
// decision (someone else wrote it): the request is decided as if new.
func (p *pass) waits(a *gpuwardenv1alpha1.GPUAllocation) bool {
	_, bound := p.ledger.Bindings[a.Name]
	_, released := p.released[a.Name]
	return (a.Spec.NodeName == p.r.NodeName || a.Spec.NodeName == "") && !bound && !released && a.DeletionTimestamp == nil &&
		a.Annotations[gpuwardenv1alpha1.AnnotationRelease] == "" &&
		(a.Status.Phase == "" || a.Status.Phase == gpuwardenv1alpha1.PhasePending || a.Status.Phase == gpuwardenv1alpha1.PhaseBound)
}

// releaseReason is the reason a's release annotation gives, bounded: it is user-supplied
// and ends up in a status message.
func releaseReason(a *gpuwardenv1alpha1.GPUAllocation) string {
	return truncate(a.Annotations[gpuwardenv1alpha1.AnnotationRelease], maxUserText)
}

// markForeign marks slots with processes on them. Held slots are skipped by the decision
// anyway, so any process on a free slot is one that belongs to no allocation.
func (r *AllocationReconciler) markForeign(ctx context.Context, slots []allocation.Slot) []allocation.Slot {
	if r.GPUs == nil {
		return slots
	}
	procs, err := r.GPUs.Processes(ctx)
	if err != nil && !errors.Is(err, gpu.ErrNoDriver) {
		ctrl.LoggerFrom(ctx).Error(err, "Reading GPU processes; deciding without them")
	}
	busy := map[string]bool{}
	for _, pr := range procs {
		busy[pr.DeviceUUID] = true
	}
	for i := range slots {
		slots[i].Foreign = busy[slots[i].UUID]
	}
	return slots
}

// ownProcesses returns the inventory with the named devices' processes counted as the
// requester's own.
func ownProcesses(inventory []allocation.Slot, devices []string) []allocation.Slot {
	out := slices.Clone(inventory)
	for i := range out {
		if slices.Contains(devices, out[i].UUID) {
			out[i].Foreign = false
		}
	}
	return out
}

// SetupWithManager registers the reconciler: one key per node, woken by any change to
// allocations, quotas or this node's GPUs.
func (r *AllocationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	switch {
	case r.Client == nil || r.Reader == nil || r.NodeName == "" || r.Groups == nil || r.Clock == nil || r.Recorder == nil || r.Audit == nil:
		return errors.New("AllocationReconciler needs a Client, Reader, NodeName, Groups, Clock, Recorder and Audit")
	}
	if r.LedgerNamespace == "" {
		r.LedgerNamespace = "kube-system"
	}
	if r.Retention == 0 {
		r.Retention = DefaultRetention
	}
	r.derived = newDerivedWriter(r.Client, r.NodeName)
	if err := mgr.Add(r.derived); err != nil {
		return fmt.Errorf("adding the writer of GPU holders and quota usage: %w", err)
	}
	node := reconcile.Request{NamespacedName: client.ObjectKey{Name: r.NodeName}}
	toNode := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return []reconcile.Request{node} })
	start := make(chan event.GenericEvent, 1)
	start <- event.GenericEvent{Object: &gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: r.NodeName}}}
	// The pass writes statuses itself: only changes that can alter a decision wake it.
	return ctrl.NewControllerManagedBy(mgr).
		Named("allocation").
		Watches(&gpuwardenv1alpha1.GPUAllocation{}, toNode, builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionStarted{},
			predicate.Funcs{UpdateFunc: r.statusChangedByOthers}))).
		Watches(&gpuwardenv1alpha1.GPUQuota{}, toNode, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&gpuwardenv1alpha1.GPU{}, toNode, builder.WithPredicates(predicate.Funcs{UpdateFunc: gpuChangedForAllocation})).
		// Holders and usage are the ledger's to say: whoever else writes them is overwritten.
		Watches(&gpuwardenv1alpha1.GPU{}, r.derived.onChange(), builder.WithPredicates(predicate.Funcs{UpdateFunc: holdersChanged})).
		Watches(&gpuwardenv1alpha1.GPUQuota{}, r.derived.onChange(), builder.WithPredicates(predicate.Funcs{UpdateFunc: usageChanged})).
		WatchesRawSource(source.Channel(start, &handler.EnqueueRequestForObject{})).
		Complete(r)
}

// statusChangedByOthers passes an update that changes what an allocation's status says
// about its devices when the change is not this controller's own write: a status is the
// ledger's to say, and someone else's is put back at once.
func (r *AllocationReconciler) statusChangedByOthers(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*gpuwardenv1alpha1.GPUAllocation)
	n, ok2 := e.ObjectNew.(*gpuwardenv1alpha1.GPUAllocation)
	if !ok1 || !ok2 {
		return true
	}
	if rv, ours := r.written.Load(n.Name); ours && rv == n.ResourceVersion {
		return false
	}
	a, b := o.Status, n.Status
	return a.Phase != b.Phase || a.Reason != b.Reason || a.Message != b.Message ||
		!equality.Semantic.DeepEqual(a.Devices, b.Devices) || !equality.Semantic.DeepEqual(a.GPUEquivalents, b.GPUEquivalents) ||
		!equality.Semantic.DeepEqual(a.BoundTime, b.BoundTime) || !equality.Semantic.DeepEqual(a.ReleasedTime, b.ReleasedTime)
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
	if !ok1 || !ok2 || o.Status.Holder != n.Status.Holder || len(o.Status.MIGInstances) != len(n.Status.MIGInstances) {
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
	return !ok1 || !ok2 || !equality.Semantic.DeepEqual(o.Status.Usage, n.Status.Usage)
}

// quantity turns a gpu-equivalent sum into a quantity to the nano.
func quantity(f float64) *resource.Quantity {
	return resource.NewScaledQuantity(int64(f*1e9+0.5), resource.Nano)
}

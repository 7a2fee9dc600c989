package allocation

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/provenance"
	"github.com/gpuwarden/gpuwarden/internal/reservation"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

const (
	// DefaultRetention is how long released allocations stay visible.
	DefaultRetention = 24 * time.Hour
)

// Reconciler binds, rejects and releases GPUAllocations of its node. Every
// decision is made against the ledger, whose changes go to one object (its head) written
// with optimistic concurrency (package ledger):
// no slot is bound twice and no quota exceeded, however many requests and controllers.
// Allocation statuses, GPU holders and quota usage are derived from the ledger, so a crash
// between the ledger write and the status writes is repaired by the next pass.
type Reconciler struct {
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
	// LedgerFlushAt is how many changes the ledger's head holds before they move to its
	// per-node shards (ledger.DefaultFlushAt when 0).
	LedgerFlushAt int
	// Quotas receives each holder's and waiter's effective quota, for the metrics; optional.
	Quotas *allocation.QuotaBook
	// Cluster, when set, makes this the cluster's one allocator while Cluster leads: each
	// pass decides for every node, and none runs while another process leads. Unset, the
	// reconciler decides for NodeName alone (gpuwarden server; every node for itself). GPUs
	// is NodeName's: other nodes are decided from their GPU objects.
	Cluster *Elector
	// Queue are the queue's settings: the fair share's half-life and age weight.
	Queue QueueOptions
	// Notices tells users of their GPU-hour budgets' use; nil tells nobody.
	Notices Notifier
	// Containers are this node's containers, for the queue's times (their labels select
	// their policies, a stopped one's hold ends); optional.
	Containers Containers

	derived *derivedWriter
	ledgers *ledger.Store
	// view, as the cluster's allocator, is the cache of every node's objects of its latest
	// term (see cached).
	view atomic.Pointer[client.Reader]
	// auditedAgain: this process (since it last began to lead, as the cluster's allocator)
	// has recorded again what its predecessor may have lost.
	auditedAgain atomic.Bool
	// written is each allocation's last status written by a pass.
	written sync.Map

	// listed caches the devices the GPU back end lists (listedSlots).
	listedMu sync.Mutex
	listed   []allocation.Slot
	listedAt time.Time
}

// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuallocations,verbs=get;list;watch;update;patch;delete
// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuallocations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuquotas/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update

// Reconcile makes one pass over the node's allocations (as the cluster's allocator, over
// every node's). A pass that would refuse a request for good on the ledger as this process
// last wrote it decides again on the stored one: a refusal must not rest on a copy another
// node may have changed since.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	if r.Cluster != nil && !r.Cluster.Leading() {
		return ctrl.Result{}, nil // another process allocates (and this one is woken when it leads)
	}
	res, stale, err := r.reconcile(ctx, false)
	if stale {
		res, _, err = r.reconcile(ctx, true)
	}
	return res, err
}

func (r *Reconciler) reconcile(ctx context.Context, fresh bool) (_ ctrl.Result, stale bool, _ error) {
	var allocs gpuwardenv1alpha1.GPUAllocationList
	if err := r.cached().List(ctx, &allocs); err != nil {
		return ctrl.Result{}, false, fmt.Errorf("listing allocations: %w", err)
	}
	var mine []client.ListOption
	if r.Cluster == nil {
		mine = append(mine, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: r.NodeName})
	}
	var gpus gpuwardenv1alpha1.GPUList
	if err := r.cached().List(ctx, &gpus, mine...); err != nil {
		return ctrl.Result{}, false, fmt.Errorf("listing GPUs: %w", err)
	}
	var quotas gpuwardenv1alpha1.GPUQuotaList
	if err := r.cached().List(ctx, &quotas); err != nil {
		return ctrl.Result{}, false, fmt.Errorf("listing quotas: %w", err)
	}
	var rsvs gpuwardenv1alpha1.GPUReservationList
	if err := r.cached().List(ctx, &rsvs); err != nil {
		return ctrl.Result{}, false, fmt.Errorf("listing reservations: %w", err)
	}
	cm, book, remembered, err := r.ledgers.Read(ctx, fresh)
	if err != nil {
		return ctrl.Result{}, false, err
	}
	p := &pass{r: r, now: r.Clock.Now(), ledger: book, storedKey: cm.Data[ledger.SigningKeyField], quotas: quotas.Items, groups: map[string][]string{},
		outcome: map[string]allocation.Decision{}, bound: map[string]allocation.Binding{},
		places: map[string]*gpuwardenv1alpha1.QueueStatus{}, queued: map[string]queued{}, limits: map[string]string{},
		displaced: map[string]*gpuwardenv1alpha1.Displacement{}}
	if r.auditedAgain.CompareAndSwap(false, true) {
		p.auditAgain(allocs.Items)
	}
	p.release(ctx, allocs.Items)
	p.settleLoans(ctx)
	p.booked = p.reservations(ctx, rsvs.Items, gpus.Items, allocs.Items)
	byNode := r.gpusByNode(gpus.Items, allocs.Items)
	for _, node := range slices.Sorted(maps.Keys(byNode)) {
		p.node, p.complete = node, nil
		p.decide(ctx, allocs.Items, byNode[node])
	}
	p.displace(ctx, allocs.Items)
	if r.Quotas != nil {
		r.Quotas.Set(p.book) // every node's holders and waiters
	}
	if remembered && p.refuses() {
		return ctrl.Result{}, true, nil
	}
	if p.changed {
		if err := r.ledgers.Write(ctx, cm, p.ledger); apierrors.IsConflict(err) {
			metrics.LedgerWrites.WithLabelValues("conflict").Inc()
			return ctrl.Result{RequeueAfter: claimRetry}, false, nil // another pass won: decide again on fresh state
		} else if err != nil {
			return ctrl.Result{}, false, err
		}
		metrics.LedgerWrites.WithLabelValues("written").Inc()
		// The ledger changed: that is the decision, recorded once whatever happens to the
		// status writes that show it.
		p.auditLedgerChange(allocs.Items)
	}
	r.derived.set(p.ledger, p.desiredUsage(ctx, quotas.Items))
	next, err := p.writeStatuses(ctx, allocs.Items)
	if err != nil {
		return ctrl.Result{}, false, err
	}
	if p.retry && (next == 0 || next > claimRetry) {
		next = claimRetry
	}
	if budgeted(quotas.Items) && len(p.ledger.Bindings) > 0 && (next == 0 || next > budgetEvery) {
		next = budgetEvery // what is held now counts against budgets as it runs
	}
	if at := p.nextReservationPass(); at > 0 && (next == 0 || next > at) {
		next = at // a window begins or ends: decided within a pass of it
	}
	return ctrl.Result{RequeueAfter: next}, false, nil
}

// gpusByNode are the GPUs of every node a pass decides for: this node's; as the cluster's
// allocator, every node with GPU objects and every node a live allocation names.
func (r *Reconciler) gpusByNode(gpus []gpuwardenv1alpha1.GPU, allocs []gpuwardenv1alpha1.GPUAllocation) map[string][]gpuwardenv1alpha1.GPU {
	byNode := map[string][]gpuwardenv1alpha1.GPU{r.NodeName: nil}
	if r.Cluster == nil {
		byNode[r.NodeName] = gpus
		return byNode
	}
	for _, g := range gpus {
		if n := g.Labels[gpuwardenv1alpha1.LabelNode]; n != "" {
			byNode[n] = append(byNode[n], g)
		}
	}
	for i := range allocs {
		if n := allocs[i].Spec.NodeName; n != "" && allocation.Live(&allocs[i]) {
			if _, ok := byNode[n]; !ok {
				byNode[n] = nil
			}
		}
	}
	return byNode
}

// claimRetry is how soon a pass whose claim met a stale copy runs again.
const claimRetry = 50 * time.Millisecond

// claim gives an allocation without a node to node, which has just found room for it; the
// API server lets only one claim through (nodeName is immutable once set). A conflict (the
// cached copy was stale) is not a refusal: the pass is retried shortly.
func (r *Reconciler) claim(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, node string) (claimed, retry bool) {
	c := a.DeepCopy()
	c.Spec.NodeName = node
	if err := r.Client.Update(ctx, c); err != nil {
		ctrl.LoggerFrom(ctx).V(1).Info("Could not claim the allocation", "allocation", a.Name, "reason", err.Error())
		return false, apierrors.IsConflict(err)
	}
	*a = *c
	return true, false
}

// pass is one reconcile's working state.
type pass struct {
	r *Reconciler
	// node is the node whose waiting allocations the pass decides now (as the cluster's
	// allocator, it decides for each node in turn).
	node     string
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
	// complete is this node's whole inventory (listed devices and lost GPUs' objects),
	// gathered once per pass when a request does not fit (see unsatisfiable).
	complete []allocation.Slot
	// nodeGPUs are this node's GPU objects (they remember GPUs NVML no longer lists).
	nodeGPUs []gpuwardenv1alpha1.GPU
	// book is each holder's and waiter's effective quota, for the metrics (queue).
	book map[string]allocation.Limit[float64]
	// storedKey is the signing key as the ledger object read for this pass holds it.
	storedKey string
	// key signs what gpuwarden makes itself (read when first needed).
	key []byte
	// policies are the container policies (listed when first needed, for the queue).
	policies []gpuwardenv1alpha1.ContainerPolicy
	// policyOfKey are the effective policies resolved by this pass, by user and labels.
	policyOfKey map[string]resolve.Policy
	// queued are the requests of the pass's nodes that wait for capacity; places their
	// status.queue; limits what bounds each holder's end, by name.
	queued map[string]queued
	places map[string]*gpuwardenv1alpha1.QueueStatus
	limits map[string]string
	// booked are the accepted reservations (every node's); displaced the holders a
	// reservation stops at its start, by allocation.
	booked    []reservation.Booked
	displaced map[string]*gpuwardenv1alpha1.Displacement
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
func (p *pass) release(ctx context.Context, allocs []gpuwardenv1alpha1.GPUAllocation) {
	byName := map[string]*gpuwardenv1alpha1.GPUAllocation{}
	for i := range allocs {
		byName[allocs[i].Name] = &allocs[i]
	}
	p.released = map[string]releaseInfo{}
	for name, b := range p.ledger.Bindings {
		a, ok := byName[name]
		reason := ""
		switch {
		case !ok && !p.gone(ctx, name):
			// The ledger is newer than this process's cache (another process bound it, or
			// this one began to lead before its cache saw the create): it stands.
			p.retry = true
			continue
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
		p.ledger.Charge(b, p.now, p.r.Queue.halfLife()) // the fair share's record of the hold
		p.released[name] = releaseInfo{binding: b, reason: reason}
		p.changed = true
	}
}

// stored reads an allocation from the API server itself, not the cache: nil when it is
// gone. It settles what a lagging cache and the ledger disagree on, and only then: such a
// read is rare.
func (r *Reconciler) stored(ctx context.Context, name string) (*gpuwardenv1alpha1.GPUAllocation, error) {
	a := &gpuwardenv1alpha1.GPUAllocation{}
	if err := r.Reader.Get(ctx, client.ObjectKey{Name: name}, a); apierrors.IsNotFound(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading allocation %s: %w", name, err)
	}
	return a, nil
}

// gone reports whether the API server says the allocation no longer exists; a read that
// fails says nothing for good (false, logged).
func (p *pass) gone(ctx context.Context, name string) bool {
	a, err := p.r.stored(ctx, name)
	if err != nil {
		ctrl.LoggerFrom(ctx).V(1).Info("Reading an allocation the cache and the ledger disagree on", "reason", err.Error())
	}
	return err == nil && a == nil
}

// waiting is an allocation in the queue, with the quota it is decided against and its
// fair share.
type waiting struct {
	a     *gpuwardenv1alpha1.GPUAllocation
	quota resolve.Quota
	share allocation.FairShare
}

// decide places this node's waiting allocations in the queue's order (quota priority, then
// fair share, then age). One that does not fit is planned in time (Plan): the slots it is
// promised are not given now to a request behind it that could still hold them then.
func (p *pass) decide(ctx context.Context, allocs []gpuwardenv1alpha1.GPUAllocation, gpus []gpuwardenv1alpha1.GPU) {
	p.nodeGPUs = gpus
	queue := p.queue(ctx, allocs)
	if len(queue) == 0 {
		return // nothing waits: no need to ask NVML for processes
	}
	inventory := allocation.SlotsOf(gpus)
	if p.local() {
		inventory = p.r.markForeign(ctx, inventory)
	}
	// The plan is made when a request first does not fit: until then nothing is promised,
	// and a pass whose requests all fit costs no more than before.
	var plan *allocation.Plan
	var order []string // the node's requests that wait for capacity, in order
	var borrowers []waiting
	for _, w := range queue {
		if !p.signatureHolds(ctx, w.a) {
			continue
		}
		req := requestOf(w.a)
		slots := inventory
		if w.a.Spec.Source == gpuwardenv1alpha1.SourceAdopted {
			// The processes on an adopted container's devices are its own.
			slots = ownProcesses(inventory, req.Devices)
		}
		unassigned := w.a.Spec.NodeName == ""
		var waiter allocation.Waiter
		var reserved []allocation.Holding
		if plan != nil { // what is promised to the requests ahead is kept from every request behind
			waiter = p.waiter(ctx, w.a, req)
			reserved = plan.Reserved(waiter.MaxRuntime)
		}
		held := p.ledger.Holdings()
		if d, b := p.onReservation(ctx, w, slots, append(held, reserved...), req); b != nil {
			if p.bindOn(ctx, w.a, d, unassigned, b) && plan != nil {
				plan.Started(waiter, d.Slots)
			}
			continue
		}
		keep, kept := p.keepOff(ctx, w.a, req)
		d := allocation.Decide(slots, slices.Concat(held, reserved, keep), w.quota.Quota, req)
		switch {
		case d.Placed() || d.Final():
		case len(keep) > 0 && allocation.Decide(slots, slices.Concat(held, reserved), w.quota.Quota, req).Placed():
			d.Message = "the GPUs free now are kept for a reservation, which begins before this request's runtime limit would end: " + kept
		case len(reserved) > 0 && allocation.Decide(slots, held, w.quota.Quota, req).Placed():
			d.Message = "what is free is kept for the requests ahead of it, which start before it would end"
		}
		if !d.Placed() && !d.Final() {
			if why := p.unsatisfiable(ctx, req, unassigned); why != "" {
				d = allocation.Decision{Reason: gpuwardenv1alpha1.ReasonUnsatisfiable, Message: why}
			}
		}
		if d.Borrowed && !unassigned && !d.Final() {
			// Borrowing only takes GPUs no request within its quota waits for: decided
			// after the others.
			borrowers = append(borrowers, w)
			continue
		}
		if d.Placed() {
			if p.bind(ctx, w.a, d, unassigned) && plan != nil {
				plan.Started(waiter, d.Slots)
			}
			continue
		}
		if unassigned && !d.Final() {
			// Every node sees it: say the same thing on each, so the status does not flap.
			// It has no place in a node's queue until a node takes it.
			d.Message = "waiting for capacity on any GPU node"
		}
		if !unassigned && !d.Final() {
			// Planned in time: the first maxPlanned of the node's queue (a pass's cost grows
			// with the planned requests and their holds; those behind them wait unplanned).
			if len(order) < maxPlanned {
				if plan == nil {
					plan, waiter = p.plan(ctx, inventory, allocs), p.waiter(ctx, w.a, req)
				}
				p.queued[w.a.Name] = queued{waiter: waiter, start: plan.Reserve(waiter), share: w.share, priority: w.quota.Priority.Value}
			}
			order = append(order, w.a.Name)
		}
		p.outcome[w.a.Name] = d
	}
	inQuota := len(order)
	if inQuota > 0 {
		p.giveBack(ctx, allocs, inventory, queue, order)
	}
	for _, w := range borrowers {
		d := allocation.Decision{Reason: gpuwardenv1alpha1.ReasonNoCapacity, Message: fmt.Sprintf(
			"it would borrow beyond its user's quota, and requests within their quota wait for GPUs here first (%d)", inQuota)}
		if inQuota == 0 {
			keep, _ := p.keepOff(ctx, w.a, requestOf(w.a))
			if d = allocation.Decide(inventory, append(p.ledger.Holdings(), keep...), w.quota.Quota, requestOf(w.a)); d.Placed() {
				p.bind(ctx, w.a, d, false)
				continue
			}
		}
		if why := p.unsatisfiable(ctx, requestOf(w.a), false); why != "" && !d.Final() {
			d = allocation.Decision{Reason: gpuwardenv1alpha1.ReasonUnsatisfiable, Message: why}
		}
		if !d.Final() {
			order = append(order, w.a.Name)
		}
		p.outcome[w.a.Name] = d
	}
	p.placeQueue(order)
}

// queue is the pass's node's waiting allocations in the order they are decided, each with
// its effective quota; the pass's quota book (what the metrics show) is filled on the way.
func (p *pass) queue(ctx context.Context, allocs []gpuwardenv1alpha1.GPUAllocation) []waiting {
	holders := map[string][]string{}
	for _, b := range p.ledger.Bindings {
		holders[b.User] = p.groupsOf(ctx, b.User)
	}
	if p.book == nil {
		p.book = map[string]allocation.Limit[float64]{}
	}
	book := p.book
	for user, groups := range holders {
		if q := resolve.EffectiveQuota(p.quotas, user, groups, holders); q.GPUEquivalents.Set {
			book[user] = q.GPUEquivalents
		}
	}
	var queue []waiting
	for i := range allocs {
		a := &allocs[i]
		if !p.waits(ctx, a) {
			continue
		}
		q := p.withBudget(ctx, a.Spec.User, resolve.EffectiveQuota(p.quotas, a.Spec.User, p.groupsOf(ctx, a.Spec.User), holders))
		if q.GPUEquivalents.Set {
			book[a.Spec.User] = q.GPUEquivalents
		}
		queue = append(queue, waiting{a: a, quota: q, share: p.share(a, q)})
	}
	allocation.SortQueue(queue, func(w waiting) allocation.Queued {
		return allocation.Queued{Name: w.a.Name, Priority: w.quota.Priority.Value, Share: w.share.Value(), Created: w.a.CreationTimestamp.Time}
	})
	return queue
}

// signatureHolds reports whether a may be decided now: a source only gpuwarden sets needs
// gpuwarden's signature. One without is refused; one whose signature cannot be checked now
// waits for a later pass.
func (p *pass) signatureHolds(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) bool {
	if !provenance.NeedsSignature(a) {
		return true
	}
	signed, err := p.signed(ctx, a)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Checking an allocation's signature; deciding it later", "allocation", a.Name)
		p.retry = true
		return false
	}
	if !signed {
		p.outcome[a.Name] = allocation.Decision{Reason: gpuwardenv1alpha1.ReasonSourceNotAllowed, Message: fmt.Sprintf(
			"source %s is set only by gpuwarden itself, and gpuwarden did not make this allocation; create it without a source (Manual)", a.Spec.Source)}
	}
	return signed
}

// requestOf is what an allocation asks the decision for.
func requestOf(a *gpuwardenv1alpha1.GPUAllocation) allocation.Request {
	req := allocation.Request{User: a.Spec.User, MIGProfile: a.Spec.Request.MIGProfile, Devices: a.Spec.Request.Devices}
	if a.Spec.Request.GPUs != nil {
		req.GPUs = int(*a.Spec.Request.GPUs)
	}
	return req
}

// bind records a placed decision in the ledger; an allocation no node has claimed yet is
// claimed for this node first (another node may win it).
func (p *pass) bind(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, d allocation.Decision, unassigned bool) bool {
	return p.bindOn(ctx, a, d, unassigned, nil)
}

// bindOn binds, on the devices of reservation b when it is not nil.
func (p *pass) bindOn(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, d allocation.Decision, unassigned bool, b *reservation.Booked) bool {
	if unassigned {
		claimed, retry := p.r.claim(ctx, a, p.node)
		p.retry = p.retry || retry
		if !claimed {
			return false
		}
	}
	bd := p.ledger.Bind(a.Name, a.Spec.User, p.node, d.Slots, p.now)
	bd.Borrowed = d.Borrowed
	if b != nil {
		bd.Reservation, bd.Uncharged = b.Name, !b.Charge
	}
	p.ledger.Bindings[a.Name] = bd
	p.bound[a.Name] = bd
	p.changed = true
	return true
}

// local reports whether the pass decides for the node this process runs on, whose GPU
// back end it may ask.
func (p *pass) local() bool { return p.node == p.r.NodeName }

// ours reports whether the pass decides for node's allocations: this node's; as the
// cluster's allocator, every node's.
func (p *pass) ours(node string) bool { return p.r.Cluster != nil || node == p.r.NodeName }

// refuses reports whether the pass refuses a request for good.
func (p *pass) refuses() bool {
	for _, d := range p.outcome {
		if d.Final() {
			return true
		}
	}
	return false
}

// waits reports whether a is this node's (or no node's yet) and still to be decided. A
// status that says Bound while the ledger holds no binding is decided as if new only once
// the API server confirms it live and the cache current: otherwise whoever released it saw
// it deleted or told to go before this cache did.
func (p *pass) waits(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) bool {
	_, bound := p.ledger.Bindings[a.Name]
	_, released := p.released[a.Name]
	if (a.Spec.NodeName != p.node && a.Spec.NodeName != "") || bound || released || !allocation.Live(a) {
		return false
	}
	if a.Status.Phase == gpuwardenv1alpha1.PhaseBound {
		// Bound again only if the API server still has it live, as the cache does (a ledger
		// lost or restored from a backup is rebuilt this way).
		if now, err := p.r.stored(ctx, a.Name); err != nil || now == nil || !allocation.Live(now) || now.ResourceVersion != a.ResourceVersion {
			p.retry = true
			return false
		}
	}
	return true
}

// releaseReason is the reason a's release annotation gives, bounded: it is user-supplied
// and ends up in a status message.
func releaseReason(a *gpuwardenv1alpha1.GPUAllocation) string {
	return message.Truncate(a.Annotations[gpuwardenv1alpha1.AnnotationRelease], message.MaxUserText)
}

// quantity turns a gpu-equivalent sum into a quantity to the nano.
func quantity(f float64) *resource.Quantity {
	return resource.NewScaledQuantity(int64(f*1e9+0.5), resource.Nano)
}

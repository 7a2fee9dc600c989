package allocation

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// derivedWriter shows what the ledger implies on other objects: on each of the node's GPUs
// (and MIG instances) the allocation holding it, and on each GPUQuota what its users hold.
// It runs beside the allocation passes, from the latest pass's view, and coalesces bursts:
// these are for people reading `kubectl get`, and writing them inside every pass would
// double the writes that binding needs.
type derivedWriter struct {
	client client.Client
	// cached is what it reads the GPUs and quotas from (the passes' view).
	cached func() client.Reader
	// node is whose GPUs show holders: "" for every node's (the cluster's allocator).
	node string
	// leads, when set, says whether to write at all (the cluster's allocator leads).
	leads func() bool
	// every is the least time between two rounds of writes.
	every time.Duration

	// notices tells users of their budgets' use (80 %, 100 %); nil tells nobody.
	notices Notifier
	// clock dates the notices; the real clock when nil.
	clock clock.PassiveClock

	mu     sync.Mutex
	holder map[string]holding // device UUID → the allocation holding it
	usage  map[string]quotaUsage
	dirty  chan struct{}
}

func sameUsage(a, b quotaUsage) bool {
	return a.used == b.used && equality.Semantic.DeepEqual(a.users, b.users)
}

// holding is the allocation holding a device, and its user.
type holding struct{ name, user string }

// quotaUsage is what a quota's status shows its users hold: each user, and all together.
type quotaUsage struct {
	users []gpuwardenv1alpha1.UserUsage
	used  string
}

func newDerivedWriter(c client.Client, cached func() client.Reader, node string) *derivedWriter {
	return &derivedWriter{client: c, cached: cached, node: node, every: time.Second, dirty: make(chan struct{}, 1)}
}

// set records the holders a pass's ledger shows and the quota usage it implies.
func (h *derivedWriter) set(l allocation.Ledger, usage map[string]quotaUsage) {
	holder := map[string]holding{}
	for name, b := range l.Bindings {
		for _, s := range b.Slots {
			holder[s.UUID] = holding{name: name, user: b.User}
		}
	}
	h.mu.Lock()
	same := h.holder != nil && maps.Equal(holder, h.holder) && maps.EqualFunc(usage, h.usage, sameUsage)
	h.holder, h.usage = holder, usage
	h.mu.Unlock()
	if !same { // a pass that changed nothing has nothing to show
		h.poke()
	}
}

// forget drops what the last pass showed: the next pass's view is written whatever it is.
func (h *derivedWriter) forget() {
	h.mu.Lock()
	h.holder, h.usage = nil, nil
	h.mu.Unlock()
}

func (h *derivedWriter) poke() {
	select {
	case h.dirty <- struct{}{}:
	default:
	}
}

// onChange is a handler that, instead of queueing a pass, has the writer compare what is
// shown with the ledger again (and put it back if someone else changed it).
func (h *derivedWriter) onChange() handler.EventHandler {
	return handler.Funcs{UpdateFunc: func(context.Context, event.UpdateEvent, workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		h.poke()
	}}
}

// NeedLeaderElection: only the node's active controller writes.
func (h *derivedWriter) NeedLeaderElection() bool { return true }

// Start writes holders whenever they change, at most once per every, and within a budget
// of holderRate writes a second: after a round that wrote n GPUs it waits n/holderRate if
// that is longer. Under a burst that changes every holder at once, the GPUs show their
// holders a few seconds late rather than costing a write per GPU per second beside the
// writes that bind.
func (h *derivedWriter) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.dirty:
		}
		h.mu.Lock()
		holder, usage := h.holder, h.usage
		h.mu.Unlock()
		if holder == nil || (h.leads != nil && !h.leads()) {
			continue // no pass has read the ledger yet (or another process's passes decide)
		}
		n, err := h.writeHolders(ctx, holder)
		if err = errors.Join(err, h.writeUsage(ctx, usage)); err != nil && ctx.Err() == nil {
			ctrl.LoggerFrom(ctx).V(1).Info("Writing GPU holders and quota usage; trying again", "reason", err.Error())
			h.poke()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(max(h.every, time.Duration(n)*time.Second/holderRate)):
		}
	}
}

// writeHolders writes the holders that differ from what the GPUs show, and says how many
// GPUs it wrote.
func (h *derivedWriter) writeHolders(ctx context.Context, holder map[string]holding) (int, error) {
	var gpus gpuwardenv1alpha1.GPUList
	var mine []client.ListOption
	if h.node != "" {
		mine = append(mine, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: h.node})
	}
	if err := h.cached().List(ctx, &gpus, mine...); err != nil {
		return 0, fmt.Errorf("listing GPUs: %w", err)
	}
	n := 0
	eg, gctx := errgroup.WithContext(ctx)
	eg.SetLimit(holderWriters)
	for i := range gpus.Items {
		g := &gpus.Items[i]
		want := g.Status.DeepCopy()
		whole := holder[g.Status.UUID]
		want.Holder, want.HolderUsers = whole.name, whole.user
		var names, users []string
		for j := range want.MIGInstances {
			in := &want.MIGInstances[j]
			in.Holder = holder[in.UUID].name
			names, users = append(names, in.Holder), append(users, holder[in.UUID].user)
		}
		if len(want.MIGInstances) > 0 {
			want.Holder, want.HolderUsers = allocation.SortedUnique(names), allocation.SortedUnique(users)
		}
		if equality.Semantic.DeepEqual(want, &g.Status) {
			continue
		}
		n++
		// A patch: the inventory controller writes the same status, and neither should
		// have to retry for the other.
		eg.Go(func() error {
			orig := g.DeepCopy()
			g.Status = *want
			if err := h.client.Status().Patch(gctx, g, client.MergeFrom(orig)); err != nil {
				return fmt.Errorf("updating the holder of GPU %s: %w", g.Name, err)
			}
			return nil
		})
	}
	return n, eg.Wait()
}

func (h *derivedWriter) writeUsage(ctx context.Context, usage map[string]quotaUsage) error {
	var quotas gpuwardenv1alpha1.GPUQuotaList
	if err := h.cached().List(ctx, &quotas); err != nil {
		return fmt.Errorf("listing quotas: %w", err)
	}
	var errs []error
	for i := range quotas.Items {
		q := &quotas.Items[i]
		want, known := usage[q.Name]
		if !known {
			continue // a quota the last pass did not see waits for the next
		}
		users, tell := budgetNotices(q, want.users, h.now())
		if (equality.Semantic.DeepEqual(users, q.Status.Usage) || len(users) == 0 && len(q.Status.Usage) == 0) &&
			want.used == q.Status.UsedGPUEquivalents {
			continue
		}
		orig := q.DeepCopy()
		q.Status.Usage, q.Status.UsedGPUEquivalents = users, want.used
		if err := h.client.Status().Patch(ctx, q, client.MergeFrom(orig)); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("updating the usage of GPUQuota %s: %w", q.Name, err))
			continue
		}
		// Told once: the status that remembers it is written first.
		for _, n := range tell {
			if h.notices != nil {
				h.notices.Tell(ctx, n)
			}
		}
	}
	return errors.Join(errs...)
}

// desiredUsage is what each quota should show each matched user holds now, by quota name:
// what they hold, what of it is borrowed, and the use of the budget the quota sets them.
func (p *pass) desiredUsage(ctx context.Context, quotas []gpuwardenv1alpha1.GPUQuota) map[string]quotaUsage {
	type use struct {
		eq, borrowed float64
		containers   int32
		holds        bool
	}
	byUser := map[string]*use{}
	get := func(user string) *use {
		u := byUser[user]
		if u == nil {
			u = &use{}
			byUser[user] = u
		}
		return u
	}
	for _, b := range p.ledger.Bindings {
		if b.Uncharged { // held on a reservation that charges no quota
			continue
		}
		u := get(b.User)
		u.containers++
		u.holds = true
		for _, s := range b.Slots {
			u.eq += s.Weight
			if b.Borrowed {
				u.borrowed += s.Weight
			}
		}
	}
	budgets := budgeted(quotas)
	if budgets { // those who used GPUs in the budgets' windows show their use too
		for user, u := range p.ledger.Usage {
			if u.SpentLately(p.now) {
				get(user)
			}
		}
	}
	budgetOf := map[string]*gpuwardenv1alpha1.BudgetUsage{} // by user, and the quota that set it
	budgetFrom := map[string]string{}
	if budgets {
		for user := range byUser {
			q := resolve.EffectiveQuota(p.quotas, user, p.groupsOf(ctx, user), nil)
			if !q.Budget.Set || q.Budget.Unlimited {
				continue
			}
			q = p.withBudget(ctx, user, q)
			budgetOf[user] = &gpuwardenv1alpha1.BudgetUsage{UsedGPUHours: allocation.FormatHours(q.BudgetUsed), GPUHours: allocation.FormatHours(q.Budget.Value),
				From: q.Budget.From, Window: q.BudgetWindow.String()}
			budgetFrom[user] = q.Budget.From
		}
	}
	out := map[string]quotaUsage{}
	for i := range quotas {
		q := &quotas[i]
		var usage []gpuwardenv1alpha1.UserUsage
		used := 0.0
		for user, u := range byUser {
			b := budgetOf[user]
			if budgetFrom[user] != "GPUQuota "+q.Name {
				b = nil
			}
			if (!u.holds && b == nil) || !resolve.QuotaMatches(q, user, p.groupsOf(ctx, user)) {
				continue
			}
			uu := gpuwardenv1alpha1.UserUsage{User: user, GPUEquivalents: *quantity(u.eq),
				GPUEquivalentsRounded: allocation.FormatEquivalents(u.eq), Containers: u.containers, Budget: b}
			if u.borrowed > 0 {
				uu.BorrowedGPUEquivalents = allocation.FormatEquivalents(u.borrowed)
			}
			usage = append(usage, uu)
			used += u.eq
		}
		sort.Slice(usage, func(i, j int) bool { return usage[i].User < usage[j].User })
		out[q.Name] = quotaUsage{users: usage, used: allocation.FormatEquivalents(used)}
	}
	return out
}

// holderWriters bounds the holder writes in flight at once: they are for people reading
// `kubectl get`, and a round of them must not crowd out the writes that bind.
const holderWriters = 4

// holderRate is the holder writes a second the writer spends at most, over time.
const holderRate = 20

func (h *derivedWriter) now() time.Time {
	if h.clock == nil {
		return time.Now()
	}
	return h.clock.Now()
}

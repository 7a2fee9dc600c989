package allocation

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// maxGiveBack is how many of a node's waiting requests within their quota a pass takes
// borrowed GPUs back for.
const maxGiveBack = 8

// lender is a borrowed binding that can be asked back.
type lender struct {
	name     string
	b        allocation.Binding
	priority int32
}

// giveBack asks borrowed GPUs back for the node's requests within their quota that wait
// for capacity (order, as queued), the first maxGiveBack of them: for each, the fewest
// borrowed bindings, chosen lowest priority first, then least work lost (the latest
// bound), whose GPUs let it fit. Their node stops them (checkpoint hook first) and
// releases them; the request binds on the pass after.
func (p *pass) giveBack(ctx context.Context, allocs []gpuwardenv1alpha1.GPUAllocation, inventory []allocation.Slot, queue []waiting, order []string) {
	byName := map[string]*gpuwardenv1alpha1.GPUAllocation{}
	for i := range allocs {
		byName[allocs[i].Name] = &allocs[i]
	}
	asked := map[string]bool{} // already on their way back
	var lenders []lender
	for name, b := range p.ledger.Bindings {
		a := byName[name]
		if b.Node != p.node || !b.Borrowed || a == nil {
			continue
		}
		if a.Annotations[gpuwardenv1alpha1.AnnotationGiveBack] != "" || a.Annotations[gpuwardenv1alpha1.AnnotationRelease] != "" {
			asked[name] = true
			continue
		}
		q := resolve.EffectiveQuota(p.quotas, b.User, p.groupsOf(ctx, b.User), nil)
		lenders = append(lenders, lender{name: name, b: b, priority: q.Priority.Value})
	}
	if len(lenders) == 0 && len(asked) == 0 {
		return
	}
	slices.SortFunc(lenders, func(x, y lender) int {
		if x.priority != y.priority {
			return int(x.priority - y.priority)
		}
		if c := y.b.BoundAt.Compare(x.b.BoundAt); c != 0 {
			return c // the latest bound has the least work to lose
		}
		return strings.Compare(x.name, y.name)
	})
	held := slices.DeleteFunc(p.ledger.Holdings(), func(h allocation.Holding) bool { return asked[h.Name] })
	waiters := map[string]waiting{}
	for _, w := range queue {
		waiters[w.a.Name] = w
	}
	for _, name := range order[:min(len(order), maxGiveBack)] {
		w, ok := waiters[name]
		if !ok {
			continue
		}
		req := requestOf(w.a)
		d := allocation.Decide(inventory, held, w.quota.Quota, req)
		var took []lender
		if !d.Placed() && d.Reason == gpuwardenv1alpha1.ReasonNoCapacity {
			took, d = fewest(inventory, held, lenders, w.quota.Quota, req)
		}
		if !d.Placed() {
			continue
		}
		// What it will get is kept from the requests behind it.
		held = append(without(held, took), allocation.Holding{Name: "waiting/" + name, User: w.a.Spec.User, Slots: uuids(d.Slots), Weight: weightOf(d.Slots)})
		lenders = slices.DeleteFunc(lenders, func(l lender) bool { return slices.ContainsFunc(took, func(t lender) bool { return t.name == l.name }) })
		var names []string
		for _, l := range took {
			names = append(names, l.name)
			p.askBack(ctx, byName[l.name], w.a)
		}
		if o, ok := p.outcome[name]; ok && len(took) > 0 {
			o.Message = fmt.Sprintf("borrowed GPUs are being given back for it (%s: checkpoint, stop, release)", strings.Join(names, ", "))
			p.outcome[name] = o
		}
	}
}

// fewest is the fewest lenders, taken in order, whose GPUs let req fit, and the decision
// with them gone; none (and the decision without them) when even all would not do.
func fewest(inventory []allocation.Slot, held []allocation.Holding, lenders []lender, q allocation.Quota, req allocation.Request) ([]lender, allocation.Decision) {
	var took []lender
	var d allocation.Decision
	for _, l := range lenders {
		took = append(took, l)
		if d = allocation.Decide(inventory, without(held, took), q, req); d.Placed() {
			break
		}
	}
	if !d.Placed() {
		return nil, allocation.Decide(inventory, held, q, req)
	}
	// Keep back any whose GPUs were not needed after all.
	for i := len(took) - 1; i >= 0; i-- {
		fewer := slices.Delete(slices.Clone(took), i, i+1)
		if e := allocation.Decide(inventory, without(held, fewer), q, req); e.Placed() {
			took, d = fewer, e
		}
	}
	return took, d
}

func without(held []allocation.Holding, gone []lender) []allocation.Holding {
	return slices.DeleteFunc(slices.Clone(held), func(h allocation.Holding) bool {
		return slices.ContainsFunc(gone, func(l lender) bool { return l.name == h.Name })
	})
}

func uuids(slots []allocation.Slot) []string {
	out := make([]string, 0, len(slots))
	for _, s := range slots {
		out = append(out, s.UUID)
	}
	return out
}

func weightOf(slots []allocation.Slot) float64 {
	w := 0.0
	for _, s := range slots {
		w += s.Weight()
	}
	return w
}

// askBack asks a's node to give its borrowed GPUs back for the waiting request w.
func (p *pass) askBack(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, w *gpuwardenv1alpha1.GPUAllocation) {
	why := fmt.Sprintf("borrowed beyond %s's quota; %s of %s waits for them within their quota", a.Spec.User, w.Name, w.Spec.User)
	orig := a.DeepCopy()
	if a.Annotations == nil {
		a.Annotations = map[string]string{}
	}
	a.Annotations[gpuwardenv1alpha1.AnnotationGiveBack] = why
	if err := p.r.Client.Patch(ctx, a, client.MergeFrom(orig)); client.IgnoreNotFound(err) != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Asking borrowed GPUs back; asked again on the next pass", "allocation", a.Name)
		p.retry = true
		return
	}
	p.r.Recorder.Eventf(a, nil, corev1.EventTypeWarning, reasons.EventGiveBack, "GiveBack", "Giving back %s's borrowed GPUs: %s", a.Spec.User, why)
}

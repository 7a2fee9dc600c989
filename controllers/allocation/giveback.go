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
	asked := map[string]string{} // already on their way back: why
	var lenders []allocation.Lender
	for name, b := range p.ledger.Bindings {
		a := byName[name]
		if b.Node != p.node || !b.Borrowed || a == nil {
			continue
		}
		if a.Annotations[gpuwardenv1alpha1.AnnotationGiveBack] != "" || a.Annotations[gpuwardenv1alpha1.AnnotationRelease] != "" {
			asked[name] = a.Annotations[gpuwardenv1alpha1.AnnotationGiveBack]
			continue
		}
		q := resolve.EffectiveQuota(p.quotas, b.User, p.groupsOf(ctx, b.User), nil)
		lenders = append(lenders, allocation.Lender{Name: name, BoundAt: b.BoundAt, Priority: q.Priority.Value})
	}
	if len(lenders) == 0 && len(asked) == 0 {
		return
	}
	allocation.SortLenders(lenders)
	held := slices.DeleteFunc(p.ledger.Holdings(), func(h allocation.Holding) bool { _, ok := asked[h.Name]; return ok })
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
		var took []allocation.Lender
		if !d.Placed() && d.Reason == gpuwardenv1alpha1.ReasonNoCapacity {
			took, d = allocation.Fewest(inventory, held, lenders, w.quota.Quota, req)
		}
		if !d.Placed() {
			continue
		}
		// What it will get is kept from the requests behind it.
		held = append(allocation.Without(held, took), allocation.Holds("waiting/"+name, w.a.Spec.User, d.Slots))
		lenders = slices.DeleteFunc(lenders, func(l allocation.Lender) bool {
			return slices.ContainsFunc(took, func(t allocation.Lender) bool { return t.Name == l.Name })
		})
		var names []string
		for _, l := range took {
			names = append(names, l.Name)
			p.askBack(ctx, byName[l.Name], w.a)
		}
		for lent, why := range asked { // asked back for it on an earlier pass
			if strings.Contains(why, "; "+name+" of ") {
				names = append(names, lent)
			}
		}
		slices.Sort(names)
		if o, ok := p.outcome[name]; ok && len(names) > 0 {
			o.Message = fmt.Sprintf("borrowed GPUs are being given back for it (%s: checkpoint, stop, release)", strings.Join(names, ", "))
			p.outcome[name] = o
		}
	}
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

// settleLoans makes borrowed bindings their users' own where their own share has room for
// them again: a borrower whose own holds ended holds their share, and only what is beyond
// it stays borrowed (and can be asked back). Shared quotas' pools are left as they are.
func (p *pass) settleLoans(ctx context.Context) {
	loans := false
	for _, b := range p.ledger.Bindings {
		loans = loans || b.Borrowed
	}
	if !loans {
		return
	}
	if p.ledger.Settle(func(user string) (float64, bool) {
		l := resolve.EffectiveQuota(p.quotas, user, p.groupsOf(ctx, user), nil).GPUEquivalents
		switch {
		case !l.Set || l.Unlimited:
			return 0, false
		case l.Shared:
			return 0, true
		}
		return l.Value, true
	}) {
		p.changed = true
	}
}

package allocation

// The queue: in what order a node's waiting requests are decided (quota priority, then fair
// share, then age), and when each can start, from what its holders cannot exceed (their
// runtime limits and holds after stop) and from what they probably do (their users'
// typical holds, their idle state).

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// QueueOptions are the admin's settings of the queue.
type QueueOptions struct {
	// HalfLife is how fast past use is forgotten by the fair share (allocation.DefaultHalfLife
	// when 0).
	HalfLife time.Duration
	// AgeWeight is the fair-share credit of an hour waited (0: age only breaks ties).
	AgeWeight float64
	// StopSlack is how late after a limit a stop may come (the sample interval): added to
	// every end a holder's limit promises.
	StopSlack time.Duration
}

// halfLife is the fair share's half-life in force.
func (o QueueOptions) halfLife() time.Duration {
	if o.HalfLife <= 0 {
		return allocation.DefaultHalfLife
	}
	return o.HalfLife
}

// Containers are the node's containers as its container controllers see them (its
// containerstore.Store); other nodes' are not known to the allocator.
type Containers interface {
	Get(id string) (c docker.Container, ok, synced bool)
}

// DefaultTypicalHold is how long a hold is expected to last when no user has ended one yet.
const DefaultTypicalHold = time.Hour

// maxAhead bounds the names status.queue.ahead lists.
const maxAhead = 10

// maxPlanned bounds the requests of a node's queue planned in time, given a place in their
// status and kept their promised GPUs: the first of the queue. A pass plans each against
// every hold before it, so the cost grows with the square of their number; and each change
// of the queue rewrites the places it shows.
const maxPlanned = 64

// queued is what the pass knows of a waiting request of the node it decides for.
type queued struct {
	waiter   allocation.Waiter
	start    allocation.Start
	share    allocation.FairShare
	priority int32
}

// policies are the container policies, listed once per pass when first needed.
func (p *pass) policyList(ctx context.Context) []gpuwardenv1alpha1.ContainerPolicy {
	if p.policies == nil {
		var list gpuwardenv1alpha1.ContainerPolicyList
		if err := p.r.cached().List(ctx, &list); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Listing container policies for the queue's times; taking none")
		}
		p.policies = append([]gpuwardenv1alpha1.ContainerPolicy{}, list.Items...)
	}
	return p.policies
}

// policyOf is the effective policy of a's container: by the container's own labels when it
// runs on this process's node, else by the allocation's type.
func (p *pass) policyOf(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) resolve.Policy {
	l := labels.OfAllocation(a)
	if c, ok := p.container(a); ok {
		l = c.Labels
	}
	key := a.Spec.User + "\x00" + fmt.Sprint(l) // fmt prints a map's keys sorted
	if pol, ok := p.policyOfKey[key]; ok {
		return pol
	}
	pol, err := actions.Policies{Groups: p.r.Groups, Clock: p.r.Clock}.Among(ctx, p.policyList(ctx), a.Spec.User, l)
	if err != nil {
		ctrl.LoggerFrom(ctx).V(1).Info("Resolving a policy for the queue's times", "allocation", a.Name, "reason", err.Error())
	}
	if p.policyOfKey == nil {
		p.policyOfKey = map[string]resolve.Policy{}
	}
	p.policyOfKey[key] = pol
	return pol
}

// container is a's container, when it runs on this process's node.
func (p *pass) container(a *gpuwardenv1alpha1.GPUAllocation) (docker.Container, bool) {
	if p.r.Containers == nil || a.Spec.NodeName != p.r.NodeName || a.Status.ContainerID == "" {
		return docker.Container{}, false
	}
	c, ok, _ := p.r.Containers.Get(a.Status.ContainerID)
	return c, ok
}

// typical is how long user's holds probably last: their own average, else the average of
// every user's, else DefaultTypicalHold.
func (p *pass) typical(user string) time.Duration {
	if d, ok := p.ledger.Usage[user].TypicalHold(); ok {
		return d
	}
	var sum time.Duration
	n := 0
	for _, u := range p.ledger.Usage {
		if d, ok := u.TypicalHold(); ok {
			sum += d
			n++
		}
	}
	if n == 0 {
		return DefaultTypicalHold
	}
	return sum / time.Duration(n)
}

// stopAfter is how long a stop under pol takes at most once it is due: its grace period
// and the slack of the rounds that find it due.
func (p *pass) stopAfter(pol resolve.Policy) time.Duration {
	grace := actions.DefaultStopGracePeriod
	if g := pol.Duration("stopGracePeriod"); g.Applies() {
		grace = g.Duration
	}
	return grace + p.r.Queue.StopSlack
}

// holder is a live binding of the node as the plan sees it, and what bounds its end.
func (p *pass) holder(ctx context.Context, name string, b allocation.Binding, a *gpuwardenv1alpha1.GPUAllocation) (allocation.Holder, string) {
	h := allocation.Holder{Name: name}
	for _, s := range b.Slots {
		h.Slots = append(h.Slots, s.UUID)
	}
	why := "no runtime limit"
	var idleEnd time.Time // when an idle holder is stopped unless it becomes busy
	if a != nil {
		pol := p.policyOf(ctx, a)
		c, local := p.container(a)
		switch {
		case local && labels.IsProtected(c.Labels):
			why = "its container is protected: never stopped for a limit"
		case local && c.State.Stopped() && !c.FinishedAt.IsZero():
			// Stopped: its GPUs go back after the hold after a stop.
			if after, from, ok := p.afterStop(pol); ok {
				h.Latest, why = c.FinishedAt.Add(after+p.r.Queue.StopSlack), fmt.Sprintf("%s after its container stopped", from)
			} else {
				why = from
			}
		default:
			// Running (or not seen from here): stopped at its runtime limit, then its GPUs go
			// back after the hold after a stop.
			since := b.BoundAt
			if r := a.Status.Runtime; r != nil && r.Since != nil && r.Since.Time.Before(since) {
				since = r.Since.Time
			}
			var hook time.Duration // its checkpoint hook runs before the stop
			if local && actions.HasCheckpoint(c) {
				hook = actions.CheckpointTimeout(c, pol)
			}
			if d, from, ok := p.holdBound(pol); ok {
				h.Latest, why = since.Add(d+hook), from
				if hook > 0 {
					why += fmt.Sprintf(" (and up to %s for its checkpoint hook)", message.Duration(hook))
				}
			} else {
				why = from
			}
			if timeout := pol.Duration("idle.timeout"); timeout.Applies() && pol.Mode() == gpuwardenv1alpha1.ModeEnforce && a.Status.Idle != nil && a.Status.Idle.Since != nil {
				idleEnd = a.Status.Idle.Since.Time.Add(timeout.Duration + hook + p.stopAfter(pol))
			}
		}
	}
	if a != nil && a.Status.Displacement != nil {
		if d := a.Status.Displacement; h.Latest.IsZero() || d.At.Time.Before(h.Latest) {
			h.Latest, why = d.At.Time, "stopped for GPUReservation "+d.Reservation+" by its start"
		}
	}
	if b.Borrowed {
		// Given back as soon as a request within its quota waits for it (the requests that
		// are planned): its hook, its stop and the rounds that find it.
		back := p.now.Add(p.giveBackTime(ctx, a))
		if h.Latest.IsZero() || back.Before(h.Latest) {
			h.Latest, why = back, "borrowed: given back for a request within its quota"
		}
	}
	h.Estimate = allocation.EstimateEnd(b.BoundAt, p.now, p.typical(b.User), h.Latest)
	if !idleEnd.IsZero() && idleEnd.Before(h.Estimate) {
		h.Estimate = allocation.Later(idleEnd, p.now)
	}
	return h, why
}

// giveBackTime is how long giving a's borrowed GPUs back takes at most: its checkpoint
// hook (the policy's timeout where its container is not seen from here), its stop and two
// rounds (the give-back's sweep and the pass after it).
func (p *pass) giveBackTime(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) time.Duration {
	var pol resolve.Policy
	hook := actions.DefaultCheckpointTimeout
	if a != nil {
		pol = p.policyOf(ctx, a)
		if c, local := p.container(a); local {
			hook = 0
			if actions.HasCheckpoint(c) {
				hook = actions.CheckpointTimeout(c, pol)
			}
		} else if l := pol.Duration("checkpointTimeout"); l.Applies() {
			hook = l.Duration
		}
	}
	return hook + p.stopAfter(pol) + p.r.Queue.StopSlack
}

// waiter is a waiting request as the plan sees it.
func (p *pass) waiter(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, req allocation.Request) allocation.Waiter {
	w := allocation.Waiter{Name: a.Name, Request: req, Typical: p.typical(a.Spec.User)}
	if d, _, ok := p.holdBound(p.policyOf(ctx, a)); ok {
		w.MaxRuntime = d
		w.Typical = min(w.Typical, w.MaxRuntime)
	}
	return w
}

// holdBound is the longest a hold under pol lasts from its runtime's start: its runtime
// limit, the stop's grace period and sampling round, then the hold after a stop (its GPUs
// go back then, or the container is removed). False, with why, when any of it is unbounded:
// no maxRuntime, a mode that never stops, no gpuHoldAfterStop nor removeAfterStop (a
// stopped container keeps its GPUs until it is removed).
func (p *pass) holdBound(pol resolve.Policy) (time.Duration, string, bool) {
	if mode := pol.Mode(); mode != gpuwardenv1alpha1.ModeEnforce {
		return 0, fmt.Sprintf("policy mode %s, which never stops it", mode), false
	}
	max := pol.Duration("maxRuntime")
	if !max.Applies() {
		return 0, "no runtime limit", false
	}
	after, from, ok := p.afterStop(pol)
	if !ok {
		return 0, fmt.Sprintf("maxRuntime %s (%s) but %s", max.Duration, max.From, from), false
	}
	return max.Duration + p.stopAfter(pol) + after + p.r.Queue.StopSlack, fmt.Sprintf("maxRuntime %s, %s; then %s", max.Duration, max.From, from), true
}

// afterStop is how long a stopped container keeps its GPUs under pol at most: its
// gpuHoldAfterStop, or its removeAfterStop if shorter (removal gives them back).
func (p *pass) afterStop(pol resolve.Policy) (time.Duration, string, bool) {
	if pol.Mode() != gpuwardenv1alpha1.ModeEnforce {
		return 0, fmt.Sprintf("policy mode %s, which never gives GPUs back", pol.Mode()), false
	}
	hold, remove := pol.Duration("gpuHoldAfterStop"), pol.Duration("removeAfterStop")
	switch {
	case hold.Applies() && (!remove.Applies() || hold.Duration <= remove.Duration):
		return hold.Duration, fmt.Sprintf("gpuHoldAfterStop %s, %s", hold.Duration, hold.From), true
	case remove.Applies():
		return remove.Duration, fmt.Sprintf("removeAfterStop %s, %s", remove.Duration, remove.From), true
	}
	return 0, "no gpuHoldAfterStop: once stopped it keeps its GPUs until it is removed", false
}

// share is a waiting request's fair share.
func (p *pass) share(a *gpuwardenv1alpha1.GPUAllocation, q resolve.Quota) allocation.FairShare {
	f := allocation.FairShare{Use: p.ledger.RecentUse(a.Spec.User, p.now, p.r.Queue.halfLife()), Waited: p.now.Sub(a.CreationTimestamp.Time),
		AgeWeight: p.r.Queue.AgeWeight, HalfLife: p.r.Queue.halfLife(), Quota: float64(max(len(p.nodeGPUs), 1)), QuotaFrom: "no gpuEquivalents limit: the node's GPUs"}
	if l := q.GPUEquivalents; l.Set && !l.Unlimited && l.Value > 0 {
		f.Quota, f.QuotaFrom = l.Value, l.From
	}
	return f
}

// plan makes the node's plan: its holders, each with when it ends.
func (p *pass) plan(ctx context.Context, inventory []allocation.Slot, allocs []gpuwardenv1alpha1.GPUAllocation) *allocation.Plan {
	byName := map[string]*gpuwardenv1alpha1.GPUAllocation{}
	for i := range allocs {
		byName[allocs[i].Name] = &allocs[i]
	}
	var holders []allocation.Holder
	for name, b := range p.ledger.Bindings {
		if b.Node != p.node {
			continue
		}
		h, why := p.holder(ctx, name, b, byName[name])
		holders = append(holders, h)
		p.limits[name] = why
	}
	slices.SortFunc(holders, func(x, y allocation.Holder) int { return strings.Compare(x.Name, y.Name) })
	plan := allocation.NewPlan(inventory, holders, p.now)
	p.blockPlan(ctx, plan)
	return plan
}

// placeQueue gives each of the node's requests that wait for capacity its place: its
// position, those ahead, its two start times and why it waits.
func (p *pass) placeQueue(order []string) {
	for i, name := range order {
		q, planned := p.queued[name]
		if !planned {
			break // beyond maxPlanned: no place written, no time promised
		}
		s := &gpuwardenv1alpha1.QueueStatus{Position: int32(i + 1), Waiting: int32(len(order)), BlockedBy: q.start.LatestBy,
			Priority: q.priority, FairShare: message.Truncate(q.share.String(), 512)}
		s.Ahead = slices.Clone(order[:min(i, maxAhead)])
		if !q.start.Latest.IsZero() {
			t := metav1.NewTime(q.start.Latest.UTC().Truncate(time.Second))
			s.LatestStart = &t
		}
		if !q.start.Estimate.IsZero() {
			// To the minute, so that the estimate's drift does not rewrite the status on
			// every pass; never past the latest start.
			t := metav1.NewTime(roundUp(q.start.Estimate, time.Minute))
			if s.LatestStart != nil && t.After(s.LatestStart.Time) {
				t = *s.LatestStart
			}
			s.EstimatedStart = &t
		}
		s.Message = message.Truncate(p.queueMessage(i, q), 1024)
		p.places[name] = s
	}
}

// queueMessage says why a request waits, for people.
func (p *pass) queueMessage(ahead int, q queued) string {
	var b strings.Builder
	switch ahead {
	case 0:
		b.WriteString("first in the queue")
	case 1:
		b.WriteString("1 request ahead")
	default:
		fmt.Fprintf(&b, "%d requests ahead", ahead)
	}
	switch s := q.start; {
	case !s.Latest.IsZero() && s.LatestBy != "":
		fmt.Fprintf(&b, "; starts by %s at the latest, when %s ends (%s)", s.Latest.UTC().Format(time.RFC3339), s.LatestBy, p.limitOf(s.LatestBy))
	case !s.Latest.IsZero():
		fmt.Fprintf(&b, "; starts by %s at the latest", s.Latest.UTC().Format(time.RFC3339))
	case s.LatestBy != "":
		fmt.Fprintf(&b, "; no latest start: it waits for %s, which has %s", s.LatestBy, p.limitOf(s.LatestBy))
	default:
		b.WriteString("; no latest start: the node cannot fit it as its GPUs are")
	}
	return b.String()
}

// limitOf is what bounds the end of a holder or of a request planned before (its runtime
// limit once it starts).
func (p *pass) limitOf(name string) string {
	if why, ok := p.limits[name]; ok {
		return why
	}
	if _, ok := p.queued[name]; ok {
		return "a request ahead, once it has run its runtime limit"
	}
	return "no runtime limit"
}

func roundUp(t time.Time, d time.Duration) time.Time {
	r := t.UTC().Truncate(d)
	if r.Before(t) {
		r = r.Add(d)
	}
	return r
}

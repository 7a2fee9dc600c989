package allocation

// Reservations: each pass decides the new GPUReservations (devices no other reservation
// holds in an overlapping window; a user's own booking within their allowance), brings the
// accepted ones' phase, window and use up to date, and honours them: their users' requests
// go to the reserved devices first, everyone else's keep off them unless their runtime
// limit ends before the start (backfill), and holders that cross a start the reservation
// stops at are told and stopped then (by their node: status.displacement).

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/reservation"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpureservations,verbs=get;list;watch
// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpureservations/status,verbs=get;update;patch

// DisplaceWarning is how long ahead of a reservation's start the holders it stops at the
// start are told (at once when it is accepted later than that).
const DisplaceWarning = time.Hour

// reservations decides the reservations this pass answers for and writes what changed of
// their statuses; the accepted ones (every node's) are what the pass honours.
func (p *pass) reservations(ctx context.Context, rsvs []gpuwardenv1alpha1.GPUReservation, gpus []gpuwardenv1alpha1.GPU, allocs []gpuwardenv1alpha1.GPUAllocation) []reservation.Booked {
	slices.SortStableFunc(rsvs, func(x, y gpuwardenv1alpha1.GPUReservation) int {
		if c := x.CreationTimestamp.Compare(y.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(x.Name, y.Name)
	})
	inventory := map[string][]allocation.Slot{}
	byNode := map[string][]gpuwardenv1alpha1.GPU{}
	for _, g := range gpus {
		if n := g.Labels[gpuwardenv1alpha1.LabelNode]; n != "" {
			byNode[n] = append(byNode[n], g)
		}
	}
	for n, gs := range byNode {
		inventory[n] = allocation.SlotsOf(gs)
	}
	held := map[string][]allocation.Holding{}
	for name, b := range p.ledger.Bindings {
		h := allocation.Holding{Name: name}
		for _, s := range b.Slots {
			h.Slots = append(h.Slots, s.UUID)
		}
		held[b.Node] = append(held[b.Node], h)
	}
	accepted := reservation.Of(rsvs)
	open := map[string]int{} // each user's own bookings pending or reserving devices
	for i := range rsvs {
		switch rsvs[i].Status.Phase {
		case "", gpuwardenv1alpha1.ReservationPending, gpuwardenv1alpha1.ReservationAccepted, gpuwardenv1alpha1.ReservationActive:
			if b := reservation.BookerOf(&rsvs[i]); b != "" && rsvs[i].DeletionTimestamp == nil {
				open[b]++
			}
		}
	}
	phases := map[gpuwardenv1alpha1.ReservationPhase]float64{}
	for i := range rsvs {
		r := &rsvs[i]
		if r.DeletionTimestamp != nil {
			continue
		}
		if node := r.Status.NodeName; (node != "" && !p.ours(node)) || (node == "" && r.Spec.NodeName != "" && !p.ours(r.Spec.NodeName)) {
			continue
		}
		want := r.Status.DeepCopy()
		want.ObservedGeneration = r.Generation
		switch r.Status.Phase {
		case "", gpuwardenv1alpha1.ReservationPending:
			p.decideReservation(ctx, r, want, inventory, held, accepted, open)
			if want.Phase == gpuwardenv1alpha1.ReservationAccepted {
				now := *r
				now.Status = *want
				accepted = append(accepted, reservation.Of([]gpuwardenv1alpha1.GPUReservation{now})...)
			}
		case gpuwardenv1alpha1.ReservationAccepted, gpuwardenv1alpha1.ReservationActive:
			p.followReservation(ctx, r, want, allocs)
		}
		if want.Phase != gpuwardenv1alpha1.ReservationAccepted && want.Phase != gpuwardenv1alpha1.ReservationActive {
			want.ReleasedUnused = nil
		}
		phases[want.Phase]++
		if equality.Semantic.DeepEqual(want, &r.Status) {
			continue
		}
		before := r.Status.DeepCopy()
		orig := r.DeepCopy()
		r.Status = *want
		if err := p.r.Client.Status().Patch(ctx, r, client.MergeFrom(orig)); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Writing a reservation's status; tried again on the next pass", "reservation", r.Name)
			r.Status = *before
			p.retry = true
			continue
		}
		p.recordReservation(r, before)
	}
	for _, ph := range []gpuwardenv1alpha1.ReservationPhase{gpuwardenv1alpha1.ReservationPending, gpuwardenv1alpha1.ReservationAccepted,
		gpuwardenv1alpha1.ReservationActive, gpuwardenv1alpha1.ReservationEnded, gpuwardenv1alpha1.ReservationRejected} {
		metrics.Reservations.WithLabelValues(string(ph)).Set(phases[ph])
	}
	booked := reservation.Of(rsvs)
	p.chargeAgain(booked)
	return booked
}

// chargeAgain charges the holds made on a reservation that charged nothing once its window
// is over (or its devices went back to everyone): from then on they count as any other.
func (p *pass) chargeAgain(booked []reservation.Booked) {
	for name, bd := range p.ledger.Bindings {
		if !bd.Uncharged {
			continue
		}
		i := slices.IndexFunc(booked, func(b reservation.Booked) bool { return b.Name == bd.Reservation })
		if i >= 0 {
			if _, active := booked[i].Active(p.now); active {
				continue
			}
		}
		bd.Uncharged = false
		p.ledger.Bindings[name] = bd
		p.changed = true
	}
}

// reservationRequest is what a reservation asks for, as a request of no user.
func reservationRequest(r *gpuwardenv1alpha1.GPUReservation) allocation.Request {
	req := allocation.Request{MIGProfile: r.Spec.Request.MIGProfile, Devices: r.Spec.Request.Devices}
	if r.Spec.Request.GPUs != nil {
		req.GPUs = int(*r.Spec.Request.GPUs)
	}
	return req
}

// decideReservation accepts a new reservation on devices no other holds in an overlapping
// window, within its booker's allowance, or rejects it saying why.
func (p *pass) decideReservation(ctx context.Context, r *gpuwardenv1alpha1.GPUReservation, want *gpuwardenv1alpha1.GPUReservationStatus,
	inventory map[string][]allocation.Slot, held map[string][]allocation.Holding, accepted []reservation.Booked, open map[string]int) {
	t := reservation.TimesOf(&r.Spec)
	reject := func(reason, msg string) {
		want.Phase, want.Reason, want.Message = gpuwardenv1alpha1.ReservationRejected, reason, message.Truncate(msg, 4096)
		want.NodeName, want.Devices, want.DevicesSummary, want.WindowStart, want.WindowEnd = "", nil, "", nil, nil
	}
	if _, ok := t.Current(p.now); !ok {
		reject(gpuwardenv1alpha1.ReasonWindowPassed, fmt.Sprintf("its window ended at %s, before it was decided", t.First.End.Format(time.RFC3339)))
		return
	}
	booker := reservation.BookerOf(r)
	if booker != "" && !ownBooking(r, booker) {
		reject(gpuwardenv1alpha1.ReasonAllowanceExceeded, fmt.Sprintf("%s's booking may be for %s alone (spec.subjects: [{kind: User, name: %s}]); an admin books for others", booker, booker, booker))
		return
	}
	c := reservation.Choose(reservationRequest(r), r.Spec.NodeName, t, inventory, accepted, held)
	if !c.Accepted() {
		reject(c.Reason, c.Message)
		return
	}
	weight := reservation.Weight(c.Slots)
	if booker != "" {
		q := resolve.EffectiveQuota(p.quotas, booker, p.groupsOf(ctx, booker), nil)
		// Their quota must be able to place it: their use of it counts against it.
		static := q.Quota
		static.Budget, static.MaxContainers = allocation.Limit[float64]{}, allocation.Limit[int]{}
		req := reservationRequest(r)
		req.User = booker
		if d := allocation.Decide(inventory[c.Node], nil, static, req); d.Final() {
			reject(d.Reason, "its user's quota could never place it: "+d.Message)
			return
		}
		if why := p.allowance(q, booker, r.Name, t, weight, accepted, open[booker]); why != "" {
			reject(gpuwardenv1alpha1.ReasonAllowanceExceeded, why)
			return
		}
	}
	want.Phase, want.Reason, want.NodeName = gpuwardenv1alpha1.ReservationAccepted, "", c.Node
	want.Devices = nil
	for _, s := range c.Slots {
		want.Devices = append(want.Devices, gpuwardenv1alpha1.BoundDevice{Index: int32(s.GPUIndex), UUID: s.UUID, MIGProfile: s.Profile, Weight: *quantity(s.Weight())})
	}
	want.DevicesSummary = allocation.DevicesSummary(want.Devices)
	want.ReservedGPUHours = reservation.FormatHours(weight * t.First.Hours())
	w, _ := t.Current(p.now)
	want.Message = fmt.Sprintf("GPU %s on %s reserved for %s", want.DevicesSummary, c.Node, reservation.Who(r.Spec.Subjects))
	p.windowOf(r, want, w)
}

// ownBooking reports whether r is for its booker alone.
func ownBooking(r *gpuwardenv1alpha1.GPUReservation, booker string) bool {
	s := r.Spec.Subjects
	return len(s) == 1 && s[0].Kind == gpuwardenv1alpha1.SubjectUser && s[0].Name == booker
}

// allowance says why user may not book weight gpu-equivalents over t ("" when they may):
// at most reservation.MaxOwnBookings open bookings, starting at most an allowance window
// ahead, and with what they booked already, within their GPUQuota's reservedGPUHours in
// every allowance window (a budget window) the new booking falls in.
func (p *pass) allowance(q resolve.Quota, user, name string, t reservation.Times, weight float64, accepted []reservation.Booked, open int) string {
	l := q.ReservedGPUHours
	switch {
	case !l.Set:
		return fmt.Sprintf("user %s may not book GPUs ahead: no GPUQuota of theirs sets limits.reservedGPUHours (none by default); an admin may book for them", user)
	case open > reservation.MaxOwnBookings:
		return fmt.Sprintf("user %s has %d bookings pending or reserving devices; at most %d", user, open-1, reservation.MaxOwnBookings)
	}
	if ahead := reservation.Ahead(q.BudgetWindow); t.First.Start.After(p.now.Add(ahead)) {
		return fmt.Sprintf("user %s may book at most %s ahead (the window of limits.reservedGPUHours, %s); this booking starts at %s",
			user, message.Duration(ahead), l.From, t.First.Start.Format(time.RFC3339))
	}
	if l.Unlimited {
		return ""
	}
	var mine []reservation.Booked
	for _, b := range accepted {
		if b.Booker == user && b.Name != name {
			mine = append(mine, b)
		}
	}
	peak, in := reservation.Peak(q.BudgetWindow, p.now, t, weight, mine)
	if peak <= l.Value+allocation.Epsilon {
		return ""
	}
	return fmt.Sprintf("%s's bookings would reserve %s gpu-hours from %s to %s, this one's included; limits.reservedGPUHours is %s per %s (%s)",
		user, reservation.FormatHours(peak), in.Start.Format(time.RFC3339), in.End.Format(time.RFC3339),
		reservation.FormatHours(l.Value), q.BudgetWindow.String(), l.From)
}

// windowOf shows w as the reservation's window: Active within it, Accepted before.
func (p *pass) windowOf(r *gpuwardenv1alpha1.GPUReservation, want *gpuwardenv1alpha1.GPUReservationStatus, w reservation.Window) {
	s, e := metav1.NewTime(w.Start), metav1.NewTime(w.End)
	want.WindowStart, want.WindowEnd = &s, &e
	want.Phase = gpuwardenv1alpha1.ReservationAccepted
	if w.Contains(p.now) {
		want.Phase = gpuwardenv1alpha1.ReservationActive
	}
}

// followReservation brings an accepted reservation's phase, window, use and unused release
// up to date.
func (p *pass) followReservation(ctx context.Context, r *gpuwardenv1alpha1.GPUReservation, want *gpuwardenv1alpha1.GPUReservationStatus, allocs []gpuwardenv1alpha1.GPUAllocation) {
	t := reservation.TimesOf(&r.Spec)
	last := t.First // the window begun last: its use is shown
	if ws := t.Between(p.now.Add(-reservation.Week), p.now); len(ws) > 0 {
		last = ws[len(ws)-1]
	}
	if !last.Start.After(p.now) {
		want.UsedGPUHours = reservation.FormatHours(p.reservationUse(ctx, r, []reservation.Window{last}, allocs))
	}
	w, ok := t.Current(p.now)
	if !ok {
		want.Phase, want.Message = gpuwardenv1alpha1.ReservationEnded, fmt.Sprintf("its window ended at %s; the devices went back to everyone", t.First.End.Format(time.RFC3339))
		return
	}
	p.windowOf(r, want, w)
	if want.ReleasedUnused != nil && !w.Contains(want.ReleasedUnused.Time) {
		want.ReleasedUnused = nil // a new window
	}
	after := durationOf(r.Spec.ReleaseUnusedAfter)
	if want.Phase != gpuwardenv1alpha1.ReservationActive || after <= 0 || want.ReleasedUnused != nil || p.now.Before(w.Start.Add(after)) {
		return
	}
	if p.reservationUse(ctx, r, []reservation.Window{w}, allocs) > 0 || len(r.Spec.Subjects) == 0 {
		return
	}
	at := metav1.NewTime(p.now)
	want.ReleasedUnused = &at
	want.Message = fmt.Sprintf("none of its users held GPU %s in the %s after its start: the devices went back to everyone until %s",
		want.DevicesSummary, message.Duration(after), w.End.Format(time.RFC3339))
}

// durationOf reads an optional duration (0 when unset or unreadable: the CRD checks it).
func durationOf(d *gpuwardenv1alpha1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil {
		return 0
	}
	return v
}

// reservationUse is how much of r's devices its users held within windows, in
// gpu-equivalent-hours (the allocations still visible: released ones for their retention).
func (p *pass) reservationUse(ctx context.Context, r *gpuwardenv1alpha1.GPUReservation, windows []reservation.Window, allocs []gpuwardenv1alpha1.GPUAllocation) float64 {
	reserved := map[string]float64{}
	for _, d := range r.Status.Devices {
		reserved[d.UUID] = d.Weight.AsApproximateFloat64()
	}
	total := 0.0
	for i := range allocs {
		a := &allocs[i]
		if a.Status.BoundTime == nil || !reservation.Includes(r.Spec.Subjects, a.Spec.User, p.groupsOf(ctx, a.Spec.User)) {
			continue
		}
		w := 0.0
		for _, d := range a.Status.Devices {
			w += reserved[d.UUID]
		}
		if w == 0 {
			continue
		}
		end := p.now
		if a.Status.Phase != gpuwardenv1alpha1.PhaseBound {
			if a.Status.ReleasedTime == nil {
				continue
			}
			end = a.Status.ReleasedTime.Time
		}
		held := reservation.Window{Start: a.Status.BoundTime.Time, End: end}
		for _, win := range windows {
			if held.Overlaps(win) {
				s, e := allocation.Later(held.Start, win.Start), held.End
				if win.End.Before(e) {
					e = win.End
				}
				total += w * e.Sub(s).Hours()
			}
		}
	}
	return total
}

// recordReservation records a reservation's step as an Event, an audit record and a metric.
func (p *pass) recordReservation(r *gpuwardenv1alpha1.GPUReservation, before *gpuwardenv1alpha1.GPUReservationStatus) {
	s := &r.Status
	details := map[string]any{"node": s.NodeName, "devices": s.DevicesSummary, "subjects": reservation.Who(r.Spec.Subjects),
		"displace": string(r.Spec.Displace), "repeat": string(r.Spec.Repeat)}
	var from, to string
	if s.WindowStart != nil && s.WindowEnd != nil {
		from, to = s.WindowStart.UTC().Format(time.RFC3339), s.WindowEnd.UTC().Format(time.RFC3339)
		details["window_start"], details["window_end"] = from, to
	}
	step := func(eventType, step, reason, eventReason, note string) {
		d := maps.Clone(details)
		if reason != "" {
			d["reason"], d["message"] = reason, s.Message
		}
		p.r.Audit.Log(audit.Reservation(eventType, reservation.BookerOf(r), r.Name, d))
		metrics.ReservationSteps.WithLabelValues(step, reason).Inc()
		kind := corev1.EventTypeNormal
		if reason != "" {
			kind = corev1.EventTypeWarning
		}
		p.r.Recorder.Eventf(r, nil, kind, eventReason, step, "%s", note)
	}
	windowChanged := before.WindowStart == nil || s.WindowStart == nil || !before.WindowStart.Equal(s.WindowStart)
	switch {
	case s.Phase == gpuwardenv1alpha1.ReservationRejected && before.Phase != s.Phase:
		step(audit.TypeReservationRejected, "rejected", s.Reason, s.Reason, s.Message)
	case s.Phase == gpuwardenv1alpha1.ReservationAccepted && (before.Phase == "" || before.Phase == gpuwardenv1alpha1.ReservationPending):
		step(audit.TypeReservationAccepted, "accepted", "", "Accepted", s.Message+", from "+from+" to "+to)
	case s.Phase == gpuwardenv1alpha1.ReservationActive && (before.Phase != s.Phase || windowChanged):
		step(audit.TypeReservationActive, "active", "", "Active", fmt.Sprintf("Its window began: GPU %s on %s is for %s alone until %s", s.DevicesSummary, s.NodeName, reservation.Who(r.Spec.Subjects), to))
	case s.Phase == gpuwardenv1alpha1.ReservationEnded && before.Phase != s.Phase,
		s.Phase == gpuwardenv1alpha1.ReservationAccepted && before.Phase == gpuwardenv1alpha1.ReservationActive:
		note := fmt.Sprintf("Its window ended: GPU %s went back to everyone", s.DevicesSummary)
		if s.Phase == gpuwardenv1alpha1.ReservationAccepted {
			note += "; the next begins at " + from
		}
		step(audit.TypeReservationEnded, "ended", "", "Ended", note)
	}
	if s.ReleasedUnused != nil && before.ReleasedUnused == nil {
		step(audit.TypeReservationReleasedUnused, "released_unused", "", "ReleasedUnused", s.Message)
	}
}

// keepOff is what a waiting request must leave alone for the reservations on the pass's
// node that are not for its user, and why (see reservation.Keep): the reservations active
// now, and those that start before its hold would end at the latest (its runtime limit,
// and the checkpoint hook its container may run before the stop).
func (p *pass) keepOff(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, req allocation.Request) ([]allocation.Holding, string) {
	if !p.booksOn(p.node) {
		return nil, ""
	}
	d := p.waiter(ctx, a, req).MaxRuntime
	if d > 0 {
		d += actions.CheckpointTimeout(docker.Container{}, p.policyOf(ctx, a))
	}
	return reservation.Keep(p.booked, p.node, a.Spec.User, p.groupsOf(ctx, a.Spec.User), p.now, d)
}

// booksOn reports whether any accepted reservation is on node.
func (p *pass) booksOn(node string) bool {
	return slices.ContainsFunc(p.booked, func(b reservation.Booked) bool { return b.Node == node })
}

// onReservation places a request of one of an active reservation's users on its devices
// (charged to their quota only when the reservation says so).
func (p *pass) onReservation(ctx context.Context, w waiting, slots []allocation.Slot, held []allocation.Holding, req allocation.Request) (allocation.Decision, *reservation.Booked) {
	if !p.booksOn(p.node) {
		return allocation.Decision{}, nil
	}
	keep, _ := p.keepOff(ctx, w.a, req) // another reservation of the same devices that starts before it would end
	held = slices.Concat(held, keep)
	for _, b := range reservation.Mine(p.booked, p.node, w.a.Spec.User, p.groupsOf(ctx, w.a.Spec.User), p.now) {
		var mine []allocation.Slot
		for _, s := range slots {
			if slices.Contains(b.Slots, s.UUID) {
				mine = append(mine, s)
			}
		}
		q := allocation.Quota{}
		if b.Charge {
			q = w.quota.Quota
		}
		if d := allocation.Decide(mine, held, q, req); d.Placed() {
			d.Borrowed = false
			return d, &b
		}
	}
	return allocation.Decision{}, nil
}

// blockPlan adds the node's reservations to its plan, so that the queue's start times
// keep out of their windows.
func (p *pass) blockPlan(ctx context.Context, plan *allocation.Plan) {
	for _, b := range p.booked {
		if b.Node != p.node {
			continue
		}
		var spans []allocation.Span
		for _, w := range b.Times.Between(p.now, p.now.Add(2*reservation.Week)) {
			if w.Contains(p.now) {
				if _, active := b.Active(p.now); !active {
					continue // given back unused
				}
			}
			spans = append(spans, allocation.Span{Start: w.Start, End: w.End})
		}
		name := "reservation/" + b.Name
		plan.Block(allocation.Block{Name: name, Slots: b.Slots, Windows: spans, For: func(user string) bool { return b.For(user, p.groupsOf(ctx, user)) }})
		p.limits[name] = "the end of GPUReservation " + b.Name + "'s window"
	}
}

// displace marks the holders that a Stop reservation takes the devices of at its start:
// within DisplaceWarning of the start, those not its users whose runtime limit crosses it
// (or who have none); within the window, every such holder.
func (p *pass) displace(ctx context.Context, allocs []gpuwardenv1alpha1.GPUAllocation) {
	byName := map[string]*gpuwardenv1alpha1.GPUAllocation{}
	for i := range allocs {
		byName[allocs[i].Name] = &allocs[i]
	}
	for _, b := range p.booked {
		w, ok := b.Times.Current(p.now)
		if !b.Stop || !ok || !p.ours(b.Node) || p.now.Before(w.Start.Add(-DisplaceWarning)) {
			continue
		}
		if _, active := b.Active(p.now); w.Contains(p.now) && !active {
			continue // given back unused
		}
		for name, bd := range p.ledger.Bindings {
			if bd.Node != b.Node || bd.Reservation == b.Name || !slices.ContainsFunc(bd.Slots, func(s allocation.Bound) bool { return slices.Contains(b.Slots, s.UUID) }) ||
				b.For(bd.User, p.groupsOf(ctx, bd.User)) {
				continue
			}
			if w.Start.After(p.now) {
				a := byName[name]
				if a != nil && a.Status.Displacement != nil { // its own end, not the one a displacement gives it
					a = a.DeepCopy()
					a.Status.Displacement = nil
				}
				if h, _ := p.holder(ctx, name, bd, a); !h.Latest.IsZero() && !h.Latest.After(w.Start) {
					continue // ends before the start
				}
			}
			if _, taken := p.displaced[name]; taken {
				continue
			}
			p.displaced[name] = &gpuwardenv1alpha1.Displacement{Reservation: b.Name, At: metav1.NewTime(w.Start),
				Message: message.Truncate(fmt.Sprintf("GPUReservation %s takes GPU %s for %s from %s to %s", b.Name, b.Summary, reservation.Who(b.Subjects),
					w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339)), 1024)}
		}
	}
}

// nextReservationPass is how soon a pass must run for the reservations: at the next start
// or end of a window, and when the holders a start displaces are to be told.
func (p *pass) nextReservationPass() time.Duration {
	next := reservation.NextChange(p.booked, p.now)
	for _, b := range p.booked {
		if w, ok := b.Times.Current(p.now); ok && b.Stop {
			if t := w.Start.Add(-DisplaceWarning); t.After(p.now) && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
		if w, active := b.Active(p.now); active && b.ReleaseAfter > 0 {
			if t := w.Start.Add(b.ReleaseAfter); t.After(p.now) && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
	}
	if next.IsZero() {
		return 0
	}
	return next.Sub(p.now) + 10*time.Millisecond
}

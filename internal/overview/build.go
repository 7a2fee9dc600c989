package overview

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/reservation"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// Week is how far ahead the reservations are shown.
const Week = reservation.Week

// Input is what a Snapshot is built from.
type Input struct {
	GPUs         []gpuwardenv1alpha1.GPU
	Allocations  []gpuwardenv1alpha1.GPUAllocation
	Quotas       []gpuwardenv1alpha1.GPUQuota
	Reservations []gpuwardenv1alpha1.GPUReservation
	Policies     []gpuwardenv1alpha1.ContainerPolicy
	// Readings are the devices' readings by Key.
	Readings map[string]Reading
	// Source names where the readings come from, and ReadingsError why there are none.
	Source, ReadingsError string
}

// Reading is what a node's metrics say of one device; nil where they say nothing.
type Reading struct {
	UtilizationPercent *float64
	MemoryUsedBytes    *int64
	MemoryTotalBytes   *int64
	TemperatureC       *float64
	PowerWatts         *float64
}

// Build makes the snapshot of node (empty: every node) at now.
func Build(in Input, node string, now time.Time) Snapshot {
	s := Snapshot{Time: now.UTC(), Node: node, Readings: in.Source, ReadingsError: in.ReadingsError,
		Devices: []Device{}, Queue: []Waiting{}, Reservations: []Booking{}, Users: []User{}}
	onNode := func(n string) bool { return node == "" || n == node }

	holders := map[string]*Holder{} // by device UUID
	for i := range in.Allocations {
		a := &in.Allocations[i]
		if a.Status.Phase != gpuwardenv1alpha1.PhaseBound || !onNode(a.Spec.NodeName) {
			continue
		}
		h := holderOf(a, in.Policies, now)
		for _, d := range a.Status.Devices {
			holders[d.UUID] = h
		}
	}
	reserved := reservedNow(in.Reservations, now)

	gpus := slices.Clone(in.GPUs)
	slices.SortFunc(gpus, func(a, b gpuwardenv1alpha1.GPU) int {
		return cmp.Or(cmp.Compare(a.Spec.NodeName, b.Spec.NodeName), cmp.Compare(a.Spec.Index, b.Spec.Index))
	})
	for _, g := range gpus {
		if !onNode(g.Spec.NodeName) {
			continue
		}
		d := Device{Node: g.Spec.NodeName, GPU: g.Name, Index: g.Spec.Index, UUID: g.Status.UUID, Model: g.Status.Model,
			MIG: g.Status.MIGMode == gpuwardenv1alpha1.MIGEnabled, Health: string(g.Status.Health),
			Holder: holders[g.Status.UUID], ReservedBy: reserved[g.Status.UUID]}
		if g.Status.Memory != nil {
			d.MemoryTotalBytes = ptr(g.Status.Memory.Value())
		}
		d.read(in.Readings[Key(g.Status.UUID, 0, false)])
		s.Devices = append(s.Devices, d)
		for _, m := range g.Status.MIGInstances {
			md := Device{Node: d.Node, GPU: g.Name, Index: g.Spec.Index, UUID: m.UUID, Model: d.Model, Profile: m.Profile,
				Health: d.Health, Holder: holders[m.UUID], ReservedBy: reserved[m.UUID]}
			md.read(in.Readings[Key(g.Status.UUID, m.GPUInstanceID, true)])
			s.Devices = append(s.Devices, md)
		}
	}

	s.Queue, s.Unplaced = Queue(in.Allocations, node)
	s.Reservations = Bookings(in.Reservations, node, now, now.Add(Week))
	s.Users = users(in, s.Queue, onNode)
	return s
}

func ptr[T any](v T) *T { return &v }

func (d *Device) read(r Reading) {
	d.UtilizationPercent, d.TemperatureC, d.PowerWatts = r.UtilizationPercent, r.TemperatureC, r.PowerWatts
	if r.MemoryUsedBytes != nil {
		d.MemoryUsedBytes = r.MemoryUsedBytes
	}
	if r.MemoryTotalBytes != nil {
		d.MemoryTotalBytes = r.MemoryTotalBytes
	}
}

// holderOf is a bound allocation as its devices show it, with when its container's policy
// warns and stops it. The policy is the one for its user and container type: labels and
// groups, which the API server does not know, may select another (`gpuwarden explain
// container` says which).
func holderOf(a *gpuwardenv1alpha1.GPUAllocation, policies []gpuwardenv1alpha1.ContainerPolicy, now time.Time) *Holder {
	st := &a.Status
	h := &Holder{User: a.Spec.User, Allocation: a.Name, Container: cmp.Or(st.ContainerName, a.Spec.ContainerName),
		Type: string(a.Spec.ContainerType), Borrowed: st.Borrowed}
	if st.BoundTime != nil {
		h.Since = ptr(st.BoundTime.UTC())
	}
	if d := st.Displacement; d != nil {
		h.DisplacedBy, h.DisplacedAt = d.Reservation, ptr(d.At.UTC())
	}
	p, err := resolve.EffectivePolicy(policies, resolve.Container{User: a.Spec.User, Type: cmp.Or(a.Spec.ContainerType, resolve.ClaimedTypeSeenAs)}, now)
	if err != nil {
		return h
	}
	r := lifecycle.RulesFrom(p)
	if idle := st.Idle; idle != nil && idle.Since != nil && int(idle.Samples) >= r.Idle.Consecutive {
		since := idle.Since.UTC()
		h.IdleSince = &since
		if t := r.Idle.Timeout; t.Applies() {
			stop := since.Add(t.Duration)
			if idle.WarnedFor != nil {
				stop = idle.WarnedFor.UTC()
			}
			h.IdleStopAt = &stop
			for _, f := range r.Idle.WarnAt {
				if w := since.Add(time.Duration(f * float64(t.Duration))); w.After(now) && w.Before(stop) {
					h.IdleWarnAt = &w
					break
				}
			}
		}
	}
	if rt := st.Runtime; rt != nil && rt.Since != nil && r.Runtime.Max.Applies() {
		h.RuntimeEnd = ptr(rt.Since.UTC().Add(r.Runtime.Max.Duration))
	}
	return h
}

// reservedNow are the devices whose reservation's window is on at now, by UUID.
func reservedNow(rsvs []gpuwardenv1alpha1.GPUReservation, now time.Time) map[string]string {
	out := map[string]string{}
	for _, b := range reservation.Of(rsvs) {
		w, ok := b.Times.Current(now)
		if !ok || !w.Contains(now) || (!b.ReleasedUnused.IsZero() && w.Contains(b.ReleasedUnused)) {
			continue
		}
		for _, u := range b.Slots {
			out[u] = b.Name
		}
	}
	return out
}

// Queue are node's waiting requests (every node's when empty) by node and place, and how
// many pending requests no node has placed yet.
func Queue(allocs []gpuwardenv1alpha1.GPUAllocation, node string) (q []Waiting, unplaced int) {
	q = []Waiting{}
	for i := range allocs {
		a := &allocs[i]
		if a.Status.Phase != gpuwardenv1alpha1.PhasePending || (node != "" && a.Spec.NodeName != node) {
			continue
		}
		qs := a.Status.Queue
		if qs == nil {
			if a.Status.Reason == gpuwardenv1alpha1.ReasonNoCapacity || a.Status.Reason == "" {
				unplaced++
			}
			continue
		}
		w := Waiting{Node: a.Spec.NodeName, Position: qs.Position, Name: a.Name, User: a.Spec.User, Request: allocation.RequestSummary(a.Spec.Request),
			WaitingSince: a.CreationTimestamp.UTC(), BlockedBy: qs.BlockedBy, Why: why(qs)}
		if qs.EstimatedStart != nil {
			w.EstimatedStart = ptr(qs.EstimatedStart.UTC())
		}
		if qs.LatestStart != nil {
			w.LatestStart = ptr(qs.LatestStart.UTC())
		}
		q = append(q, w)
	}
	slices.SortFunc(q, func(a, b Waiting) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Position, b.Position))
	})
	return q, unplaced
}

// why is why a request waits: capacity, held by whom and until when.
func why(q *gpuwardenv1alpha1.QueueStatus) string {
	switch {
	case q.LatestStart != nil && q.BlockedBy != "":
		return "capacity: until " + q.BlockedBy + " ends"
	case q.BlockedBy != "":
		return "capacity: " + q.BlockedBy + " holds its GPUs without a time limit"
	}
	return "capacity"
}

// Bookings are the windows of the accepted reservations (on node, when given) that overlap
// [from, to), by start.
func Bookings(rsvs []gpuwardenv1alpha1.GPUReservation, node string, from, to time.Time) []Booking {
	out := []Booking{}
	for i := range rsvs {
		r := &rsvs[i]
		switch r.Status.Phase {
		case gpuwardenv1alpha1.ReservationRejected, gpuwardenv1alpha1.ReservationEnded, "":
			continue
		}
		n := cmp.Or(r.Status.NodeName, r.Spec.NodeName)
		if node != "" && n != "" && n != node {
			continue
		}
		t := reservation.TimesOf(&r.Spec)
		for _, w := range t.Between(from, to) {
			out = append(out, Booking{Name: r.Name, Phase: string(r.Status.Phase), Node: n, Devices: r.Status.DevicesSummary,
				Request: allocation.RequestSummary(r.Spec.Request), For: reservation.Who(r.Spec.Subjects), Subjects: r.Spec.Subjects, Start: w.Start, End: w.End,
				Weekly: t.Weekly, Active: w.Contains(from), Displace: string(r.Spec.Displace)})
		}
	}
	slices.SortFunc(out, func(a, b Booking) int { return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Name, b.Name)) })
	return out
}

// users are the users holding, waiting or named in a quota's usage, with their limits. A
// quota's status lists the users it covers (the controller knows their groups); their
// limits are those quotas merged.
func users(in Input, queue []Waiting, onNode func(string) bool) []User {
	by := map[string]*User{}
	get := func(name string) *User {
		u := by[name]
		if u == nil {
			u = &User{Name: name}
			by[name] = u
		}
		return u
	}
	for i := range in.Allocations {
		a := &in.Allocations[i]
		if a.Status.Phase != gpuwardenv1alpha1.PhaseBound || !onNode(a.Spec.NodeName) {
			continue
		}
		u := get(a.Spec.User)
		u.Containers++
		eq := 0.0
		if a.Status.GPUEquivalents != nil {
			eq = a.Status.GPUEquivalents.AsApproximateFloat64()
		}
		u.GPUEquivalents += eq
		if a.Status.Borrowed {
			u.Borrowed += eq
		}
	}
	for _, w := range queue {
		get(w.User).Waiting++
	}
	covering := map[string][]gpuwardenv1alpha1.GPUQuota{}
	for _, q := range in.Quotas {
		for _, use := range q.Status.Usage {
			// As if it named them: the status says it covers them.
			c := *q.DeepCopy()
			c.Spec.Subjects = []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectEveryone}}
			covering[use.User] = append(covering[use.User], c)
			u := get(use.User)
			if b := use.Budget; b != nil && b.GPUHours != "" {
				u.BudgetUsedGPUHours, _ = strconv.ParseFloat(b.UsedGPUHours, 64)
				u.BudgetGPUHours, _ = strconv.ParseFloat(b.GPUHours, 64)
				u.BudgetWindow = b.Window
			}
		}
	}
	out := make([]User, 0, len(by))
	for name, u := range by {
		if qs := covering[name]; len(qs) > 0 {
			l := resolve.EffectiveQuota(qs, name, nil, nil).GPUEquivalents
			switch {
			case l.Unlimited:
				u.Quota = "unlimited"
			case l.Set:
				u.Quota = strconv.FormatFloat(l.Value, 'f', -1, 64)
			}
		}
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b User) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

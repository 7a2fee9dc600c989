package allocation

import (
	"slices"
	"sort"
	"time"
)

// Holder is a live binding of a node as the queue's plan sees it: its slots, and when they
// are free at the latest and probably.
type Holder struct {
	Name  string
	Slots []string // UUIDs
	// Latest is when its slots are free at the latest: what its limits allow, its stop's
	// grace period included; zero when nothing bounds its hold. Estimate is when they
	// probably are (never zero).
	Latest, Estimate time.Time
}

// Waiter is a request that waits for capacity, as the plan sees it.
type Waiter struct {
	Name    string
	Request Request
	// MaxRuntime bounds its hold once it starts (0: nothing does); Typical is how long it
	// probably holds.
	MaxRuntime, Typical time.Duration
}

// Start is when a waiting request starts: at the latest (zero when some holder it waits
// for has no limit), and probably; each with the allocation whose end lets it start (or,
// for an unknown latest start, the holder without a limit).
type Start struct {
	Latest, Estimate     time.Time
	LatestBy, EstimateBy string
}

// Plan places a node's waiting requests in time, in queue order: each at the first moment
// its request fits the slots left by the holders that have not ended and the requests
// planned before it whose holds may overlap its own. It is what the queue promises
// (latestStart holds while no request of higher order arrives), and what keeps a request
// from taking now the slots a request ahead of it is promised (a request behind may still
// take them when it is bound to end before that one starts: backfill).
type Plan struct {
	inventory []Slot
	now       time.Time
	holders   []Holder
	// latest and estimate are the requests planned so far, by their latest and their
	// probable times.
	latest, estimate []hold
	// blocks are the reservations' windows on the node's devices.
	blocks []Block
}

// Block is a reservation as the plan sees it: its slots are taken during its windows from
// every request whose user it is not for.
type Block struct {
	Name    string
	Slots   []string
	Windows []Span
	// For reports whether the reservation is for user.
	For func(user string) bool
}

// Span is a stretch of time from Start to End.
type Span struct{ Start, End time.Time }

// Block adds a reservation to the plan: the requests planned from now on keep out of its
// windows unless it is for them.
func (p *Plan) Block(b Block) { p.blocks = append(p.blocks, b) }

// hold is a planned hold: slots from start to end (zero: for ever).
type hold struct {
	name       string
	slots      []string
	start, end time.Time
}

// NewPlan starts a node's plan at now.
func NewPlan(inventory []Slot, holders []Holder, now time.Time) *Plan {
	return &Plan{inventory: inventory, holders: holders, now: now}
}

// Reserved are the slots planned for requests ahead whose holds may overlap one that
// starts now and lasts d (0: for ever), as holdings that belong to no user: what a request
// decided now must leave free.
func (p *Plan) Reserved(d time.Duration) []Holding {
	var out []Holding
	for _, h := range p.latest {
		if d == 0 || h.start.Before(p.now.Add(d)) {
			out = append(out, Holding{Name: h.name, Slots: h.slots})
		}
	}
	return out
}

// Started makes a request bound now a holder of the plan.
func (p *Plan) Started(w Waiter, slots []Slot) {
	h := Holder{Name: w.Name, Estimate: p.now.Add(w.Typical)}
	if w.MaxRuntime > 0 {
		h.Latest = p.now.Add(w.MaxRuntime)
	}
	for _, s := range slots {
		h.Slots = append(h.Slots, s.UUID)
	}
	p.holders = append(p.holders, h)
}

// Reserve plans a waiting request behind those planned before it and says when it starts.
func (p *Plan) Reserve(w Waiter) Start {
	var s Start
	var ok bool
	s.Latest, s.LatestBy, ok = p.place(w, &p.latest, func(h Holder) time.Time { return h.Latest }, w.MaxRuntime)
	if !ok {
		s.Latest, s.LatestBy = time.Time{}, p.unbounded(w)
	}
	s.Estimate, s.EstimateBy, _ = p.place(w, &p.estimate, func(h Holder) time.Time { return h.Estimate }, w.Typical)
	if !s.Latest.IsZero() && s.Estimate.After(s.Latest) {
		s.Estimate, s.EstimateBy = s.Latest, s.LatestBy
	}
	return s
}

// place finds the first moment w fits, holders ending at end(h) and w holding for d, and
// records the hold in planned; false when it never fits.
func (p *Plan) place(w Waiter, planned *[]hold, end func(Holder) time.Time, d time.Duration) (time.Time, string, bool) {
	ends := func(t time.Time) time.Time { // an overdue holder ends any moment now
		if !t.IsZero() && t.Before(p.now) {
			return p.now
		}
		return t
	}
	times := []time.Time{p.now}
	for _, h := range p.holders {
		if t := ends(end(h)); !t.IsZero() {
			times = append(times, t)
		}
	}
	for _, h := range *planned {
		if !h.end.IsZero() {
			times = append(times, h.end)
		}
	}
	var blocks []Block // the reservations w keeps out of
	for _, b := range p.blocks {
		if b.For == nil || !b.For(w.Request.User) {
			blocks = append(blocks, b)
			for _, s := range b.Windows {
				if s.End.After(p.now) {
					times = append(times, s.End)
				}
			}
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	for i, t := range times {
		if i > 0 && t.Equal(times[i-1]) {
			continue
		}
		var occupied []Holding
		var endingNow []string
		for _, h := range p.holders {
			e := ends(end(h))
			if e.IsZero() || e.After(t) {
				occupied = append(occupied, Holding{Name: h.Name, Slots: h.Slots})
			} else if e.Equal(t) {
				endingNow = append(endingNow, h.Name)
			}
		}
		for _, h := range *planned {
			if (h.end.IsZero() || h.end.After(t)) && (d == 0 || h.start.Before(t.Add(d))) {
				occupied = append(occupied, Holding{Name: h.name, Slots: h.slots})
			} else if h.end.Equal(t) {
				endingNow = append(endingNow, h.name)
			}
		}
		for _, b := range blocks {
			for _, s := range b.Windows {
				if s.End.After(t) && (d == 0 || s.Start.Before(t.Add(d))) {
					occupied = append(occupied, Holding{Name: b.Name, Slots: b.Slots})
					break
				} else if s.End.Equal(t) {
					endingNow = append(endingNow, b.Name)
				}
			}
		}
		dec := Decide(p.inventory, occupied, Quota{}, w.Request)
		if !dec.Placed() {
			continue
		}
		h := hold{name: w.Name, start: t}
		if d > 0 {
			h.end = t.Add(d)
		}
		for _, s := range dec.Slots {
			h.slots = append(h.slots, s.UUID)
		}
		*planned = append(*planned, h)
		return t, p.blocker(endingNow, h.slots, *planned), true
	}
	return time.Time{}, "", false
}

// blocker is, of the holds ending when a request starts, the one whose slots it takes
// (else the first by name).
func (p *Plan) blocker(ending, slots []string, planned []hold) string {
	slices.Sort(ending)
	for _, name := range ending {
		for _, h := range p.holders {
			if h.Name == name && overlaps(h.Slots, slots) {
				return name
			}
		}
		for _, h := range planned {
			if h.name == name && overlaps(h.slots, slots) {
				return name
			}
		}
		for _, b := range p.blocks {
			if b.Name == name && overlaps(b.Slots, slots) {
				return name
			}
		}
	}
	if len(ending) > 0 {
		return ending[0]
	}
	return ""
}

// unbounded is a holder without a limit that w waits for, for an unknown latest start:
// one whose end, once every bounded holder has ended, would let it fit (else the first
// without a limit, by name).
func (p *Plan) unbounded(w Waiter) string {
	var names []string
	for _, h := range p.holders {
		if h.Latest.IsZero() {
			names = append(names, h.Name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		var occupied []Holding
		for _, h := range p.holders {
			if h.Latest.IsZero() && h.Name != name {
				occupied = append(occupied, Holding{Name: h.Name, Slots: h.Slots})
			}
		}
		if Decide(p.inventory, occupied, Quota{}, w.Request).Placed() {
			return name
		}
	}
	if len(names) > 0 {
		return names[0]
	}
	return ""
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// EstimateEnd is when a hold bound at boundAt probably ends, seen at now: after its user's
// typical hold; one held longer than that already probably runs a while yet (half as long
// again as it has so far, as long-lived jobs do), never past latest (zero: no bound).
func EstimateEnd(boundAt, now time.Time, typical time.Duration, latest time.Time) time.Time {
	end := boundAt.Add(typical)
	if !end.After(now) {
		end = now.Add(now.Sub(boundAt) / 2)
	}
	if !latest.IsZero() && end.After(latest) {
		end = latest
	}
	if end.Before(now) {
		end = now
	}
	return end
}

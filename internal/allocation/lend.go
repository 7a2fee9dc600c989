package allocation

import (
	"slices"
	"strings"
	"time"
)

// Lender is a borrowed binding that may be asked back.
type Lender struct {
	Name string
	// Priority is its user's quota priority; BoundAt when it was bound.
	Priority int32
	BoundAt  time.Time
}

// SortLenders orders lenders as they are asked back: lowest priority first, then the least
// work lost (the latest bound), then by name.
func SortLenders(lenders []Lender) {
	slices.SortFunc(lenders, func(x, y Lender) int {
		if x.Priority != y.Priority {
			return int(x.Priority - y.Priority)
		}
		if c := y.BoundAt.Compare(x.BoundAt); c != 0 {
			return c
		}
		return strings.Compare(x.Name, y.Name)
	})
}

// Fewest is the fewest lenders, taken in their order, whose slots (in live) let req fit,
// and the decision with them gone; none, and the decision without them, when even all
// would not do.
func Fewest(inventory []Slot, live []Holding, lenders []Lender, q Quota, req Request) ([]Lender, Decision) {
	var took []Lender
	var d Decision
	for _, l := range lenders {
		took = append(took, l)
		if d = Decide(inventory, Without(live, took), q, req); d.Placed() {
			break
		}
	}
	if !d.Placed() {
		return nil, Decide(inventory, live, q, req)
	}
	// Keep back any whose slots were not needed after all.
	for i := len(took) - 1; i >= 0; i-- {
		fewer := slices.Delete(slices.Clone(took), i, i+1)
		if e := Decide(inventory, Without(live, fewer), q, req); e.Placed() {
			took, d = fewer, e
		}
	}
	return took, d
}

// Without is live less the lenders' holdings.
func Without(live []Holding, gone []Lender) []Holding {
	return slices.DeleteFunc(slices.Clone(live), func(h Holding) bool {
		return slices.ContainsFunc(gone, func(l Lender) bool { return l.Name == h.Name })
	})
}

// Holds is the holding slots make for a user, under name.
func Holds(name, user string, slots []Slot) Holding {
	h := Holding{Name: name, User: user}
	for _, s := range slots {
		h.Slots = append(h.Slots, s.UUID)
		h.Weight += s.Weight()
	}
	return h
}

// Settle makes borrowed bindings the user's own where their own share has room for them
// again (their own holds ended): oldest first, while what they own stays within limit(user)
// (false: no limit bounds them, so nothing they hold is borrowed). It reports whether it
// changed anything.
func (l Ledger) Settle(limit func(user string) (float64, bool)) bool {
	own := map[string]float64{}
	var loans []string
	for name, b := range l.Bindings {
		w := 0.0
		for _, s := range b.Slots {
			w += s.Weight
		}
		switch {
		case b.Borrowed:
			loans = append(loans, name)
		case !b.Uncharged:
			own[b.User] += w
		}
	}
	slices.SortFunc(loans, func(x, y string) int {
		if c := l.Bindings[x].BoundAt.Compare(l.Bindings[y].BoundAt); c != 0 {
			return c
		}
		return strings.Compare(x, y)
	})
	changed := false
	for _, name := range loans {
		b := l.Bindings[name]
		w := 0.0
		for _, s := range b.Slots {
			w += s.Weight
		}
		max, limited := limit(b.User)
		if limited && own[b.User]+w > max+Epsilon {
			continue
		}
		b.Borrowed = false
		l.Bindings[name] = b
		own[b.User] += w
		changed = true
	}
	return changed
}

package audit

// Decisions remembers the allocation decisions passed, by event ID, so that one recorded
// again after a crash (the same ID, `recovered: true`) is passed once. It remembers the
// last limit IDs (all when limit is 0): a follower runs for weeks, and a decision is
// recorded again only while its allocation is live or retained.
type Decisions struct {
	limit int
	seen  map[string]bool
	order []string
	next  int
}

// NewDecisions remembers up to limit decision IDs; 0 is no limit.
func NewDecisions(limit int) *Decisions {
	return &Decisions{limit: limit, seen: map[string]bool{}}
}

// FollowedDecisions is how many decision IDs a follower remembers.
const FollowedDecisions = 1 << 18

// Again reports whether e is a decision already passed, and remembers it if not. Other
// events are never "again".
func (d *Decisions) Again(e *Event) bool {
	if !decision(e.Type) || e.ID == "" {
		return false
	}
	if d.seen[e.ID] {
		return true
	}
	d.seen[e.ID] = true
	if d.limit > 0 {
		if len(d.order) < d.limit {
			d.order = append(d.order, e.ID)
		} else {
			delete(d.seen, d.order[d.next])
			d.order[d.next] = e.ID
			d.next = (d.next + 1) % d.limit
		}
	}
	return false
}

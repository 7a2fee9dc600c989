package allocation

import (
	"encoding/json"
	"maps"
	"sort"
	"time"
)

// Binding is one bound allocation in the ledger.
type Binding struct {
	User    string    `json:"user"`
	Node    string    `json:"node"`
	Slots   []Bound   `json:"slots"`
	BoundAt time.Time `json:"boundAt"`
	// Borrowed says the binding took its user beyond their quota (GPUQuota borrowing).
	Borrowed bool `json:"borrowed,omitempty"`
	// Reservation names the GPUReservation whose devices the binding holds, for one of its
	// users; Uncharged says that reservation does not charge its users' quota: the binding
	// counts against no limit and no budget.
	Reservation string `json:"reservation,omitempty"`
	Uncharged   bool   `json:"uncharged,omitempty"`
}

// Bound is one slot of a binding.
type Bound struct {
	GPUIndex int     `json:"index"`
	UUID     string  `json:"uuid"`
	Profile  string  `json:"profile,omitempty"`
	Weight   float64 `json:"weight"`
}

// Ledger is the record of every live binding in the cluster, by allocation name. Each
// change to it is written to one object with optimistic concurrency (package ledger), so
// two binds (by one controller or by controllers of several nodes) never both land on a
// slot or a quota.
type Ledger struct {
	Bindings map[string]Binding `json:"bindings"`
	// Usage is each user's recent GPU use (Charge), for the queue's fair share: written
	// with the release that ends a hold, so it survives restarts and is fenced like it.
	Usage map[string]Usage `json:"usage,omitempty"`
}

// Clone returns a copy whose bindings and usage can be changed without changing l's.
func (l Ledger) Clone() Ledger {
	return Ledger{Bindings: maps.Clone(l.Bindings), Usage: maps.Clone(l.Usage)}
}

// Encode returns the form the ledger was stored in before it was split (package ledger
// reads it still).
func (l Ledger) Encode() (string, error) {
	data, err := json.Marshal(Ledger{Bindings: l.Bindings})
	return string(data), err
}

// Holdings returns the bindings as live holdings, sorted by name.
func (l Ledger) Holdings() []Holding {
	out := make([]Holding, 0, len(l.Bindings))
	for name, b := range l.Bindings {
		h := Holding{Name: name, User: b.User, Uncharged: b.Uncharged}
		for _, s := range b.Slots {
			h.Slots = append(h.Slots, s.UUID)
			h.Weight += s.Weight
		}
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Bind records slots for an allocation.
func (l Ledger) Bind(name, user, node string, slots []Slot, at time.Time) Binding {
	b := Binding{User: user, Node: node, BoundAt: at.UTC()}
	for _, s := range slots {
		b.Slots = append(b.Slots, Bound{GPUIndex: s.GPUIndex, UUID: s.UUID, Profile: s.Profile, Weight: s.Weight()})
	}
	l.Bindings[name] = b
	return b
}

package allocation

import (
	"testing"
	"time"
)

// TestFewestAsksBackTheLeastItNeeds: lenders are taken lowest priority first, then the
// latest bound; those not needed after all are kept back.
func TestFewestAsksBackTheLeastItNeeds(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	inv := []Slot{{GPUIndex: 0, UUID: "G0", Healthy: true}, {GPUIndex: 1, UUID: "G1", Healthy: true}, {GPUIndex: 2, UUID: "G2", Healthy: true}}
	live := []Holding{{Name: "own", User: "a", Slots: []string{"G0"}, Weight: 1}, {Name: "old", User: "a", Slots: []string{"G1"}, Weight: 1},
		{Name: "new", User: "a", Slots: []string{"G2"}, Weight: 1}}
	lenders := []Lender{{Name: "old", BoundAt: t0}, {Name: "new", BoundAt: t0.Add(time.Hour)}, {Name: "vip", Priority: 50, BoundAt: t0.Add(2 * time.Hour)}}
	SortLenders(lenders)
	if lenders[0].Name != "new" || lenders[1].Name != "old" || lenders[2].Name != "vip" {
		t.Fatalf("order %v: want the latest bound of the lowest priority first", lenders)
	}
	took, d := Fewest(inv, live, lenders, Quota{}, Request{User: "b", GPUs: 1})
	if !d.Placed() || len(took) != 1 || took[0].Name != "new" || d.Slots[0].UUID != "G2" {
		t.Errorf("one GPU: took %v, %+v", took, d)
	}
	took, d = Fewest(inv, live, lenders, Quota{}, Request{User: "b", GPUs: 2})
	if !d.Placed() || len(took) != 2 {
		t.Errorf("two GPUs: took %v, %+v", took, d)
	}
	if took, d := Fewest(inv, live, lenders, Quota{}, Request{User: "b", GPUs: 4}); d.Placed() || took != nil {
		t.Errorf("more than there is: took %v, %+v", took, d)
	}
}

// TestSettleMakesLoansOwnWhereTheShareHasRoom: a borrower whose own hold ended owns their
// oldest loans again, up to their quota.
func TestSettleMakesLoansOwnWhereTheShareHasRoom(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	one := []Bound{{UUID: "x", Weight: 1}}
	l := Ledger{Bindings: map[string]Binding{
		"l1": {User: "a", Slots: one, BoundAt: t0, Borrowed: true},
		"l2": {User: "a", Slots: one, BoundAt: t0.Add(time.Minute), Borrowed: true},
		"l3": {User: "a", Slots: one, BoundAt: t0.Add(2 * time.Minute), Borrowed: true},
		"o1": {User: "a", Slots: one, BoundAt: t0.Add(3 * time.Minute)},
	}}
	if !l.Settle(func(string) (float64, bool) { return 2, true }) {
		t.Fatal("nothing settled")
	}
	if l.Bindings["l1"].Borrowed || !l.Bindings["l2"].Borrowed || !l.Bindings["l3"].Borrowed {
		t.Errorf("settled %+v; want only the oldest loan owned (one own hold + one = the quota of 2)", l.Bindings)
	}
	if l.Settle(func(string) (float64, bool) { return 2, true }) {
		t.Error("settled again with no room")
	}
}

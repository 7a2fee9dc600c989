package allocation

import (
	"math"
	"testing"
	"time"
)

func wholeGPUs(n int) []Slot {
	var out []Slot
	for i := 0; i < n; i++ {
		u := "GPU-" + string(rune('a'+i))
		out = append(out, Slot{GPUIndex: i, GPUUUID: u, UUID: u, Healthy: true})
	}
	return out
}

// TestPlanLatestStartFromHolderLimits: a request for two GPUs on a full node starts when the
// second of the holders it needs ends at the latest, named as its blocker; the one behind it
// starts when the first planned hold ends; a holder without a limit makes the latest start
// unknown and is named.
func TestPlanLatestStartFromHolderLimits(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return now.Add(time.Duration(h) * time.Hour) }
	holders := []Holder{
		{Name: "h0", Slots: []string{"GPU-a"}, Latest: at(1), Estimate: at(1)},
		{Name: "h1", Slots: []string{"GPU-b"}, Latest: at(3), Estimate: at(2)},
		{Name: "h2", Slots: []string{"GPU-c"}, Latest: at(5), Estimate: at(1)},
	}
	p := NewPlan(wholeGPUs(3), holders, now)
	two := p.Reserve(Waiter{Name: "w-two", Request: Request{User: "a", GPUs: 2}, MaxRuntime: 4 * time.Hour, Typical: time.Hour})
	if !two.Latest.Equal(at(3)) || two.LatestBy != "h1" {
		t.Errorf("two GPUs: latest %v by %q, want %v by h1", two.Latest, two.LatestBy, at(3))
	}
	if !two.Estimate.Equal(at(1)) || two.EstimateBy == "" {
		t.Errorf("two GPUs: estimate %v by %q, want %v (h0 and h2 probably end by then)", two.Estimate, two.EstimateBy, at(1))
	}
	// Behind it, one hour fits on GPU-a between h0's end and the two-GPU request's start
	// (backfill); three hours do not, and wait for GPU-c at 5 h.
	short := p.Reserve(Waiter{Name: "w-short", Request: Request{User: "b", GPUs: 1}, MaxRuntime: time.Hour, Typical: time.Hour})
	if !short.Latest.Equal(at(1)) || short.LatestBy != "h0" {
		t.Errorf("one hour behind: latest %v by %q, want %v by h0", short.Latest, short.LatestBy, at(1))
	}
	long := p.Reserve(Waiter{Name: "w-long", Request: Request{User: "b", GPUs: 1}, MaxRuntime: 3 * time.Hour, Typical: time.Hour})
	if !long.Latest.Equal(at(5)) || long.LatestBy != "h2" {
		t.Errorf("three hours behind: latest %v by %q, want %v by h2", long.Latest, long.LatestBy, at(5))
	}

	unbounded := NewPlan(wholeGPUs(2), []Holder{
		{Name: "forever", Slots: []string{"GPU-a"}, Estimate: at(2)},
		{Name: "bounded", Slots: []string{"GPU-b"}, Latest: at(1), Estimate: at(1)},
	}, now)
	s := unbounded.Reserve(Waiter{Name: "w", Request: Request{User: "a", GPUs: 2}, Typical: time.Hour})
	if !s.Latest.IsZero() || s.LatestBy != "forever" {
		t.Errorf("behind a holder without a limit: latest %v by %q, want none, by forever", s.Latest, s.LatestBy)
	}
	if !s.Estimate.Equal(at(2)) {
		t.Errorf("estimate %v, want %v", s.Estimate, at(2))
	}
}

// TestPlanBackfill: a request behind one that waits may take a free GPU now only if it is
// bound to end before the one ahead starts.
func TestPlanBackfill(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	p := NewPlan(wholeGPUs(2), []Holder{{Name: "h", Slots: []string{"GPU-a"}, Latest: now.Add(2 * time.Hour), Estimate: now.Add(time.Hour)}}, now)
	head := p.Reserve(Waiter{Name: "big", Request: Request{User: "a", GPUs: 2}, MaxRuntime: time.Hour, Typical: time.Hour})
	if !head.Latest.Equal(now.Add(2 * time.Hour)) {
		t.Fatalf("head latest %v", head.Latest)
	}
	free := wholeGPUs(2)
	live := []Holding{{Name: "h", User: "x", Slots: []string{"GPU-a"}, Weight: 1}}
	short := Decide(free, append(live, p.Reserved(time.Hour)...), Quota{}, Request{User: "b", GPUs: 1})
	if !short.Placed() {
		t.Errorf("a one-hour request is refused the GPU free for two hours: %+v", short)
	}
	long := Decide(free, append(live, p.Reserved(3*time.Hour)...), Quota{}, Request{User: "b", GPUs: 1})
	if long.Placed() {
		t.Error("a three-hour request took the GPU the request ahead is promised in two")
	}
	forever := Decide(free, append(live, p.Reserved(0)...), Quota{}, Request{User: "b", GPUs: 1})
	if forever.Placed() {
		t.Error("a request without a runtime limit took the GPU the request ahead is promised")
	}
}

// TestSortQueueFairShare: within a priority the lower fair share goes first, whatever the
// age; shares within ShareResolution are equal.
func TestSortQueueFairShare(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	q := []Queued{
		{Name: "heavy-old", Priority: 10, Share: 3, Created: t0},
		{Name: "light-new", Priority: 10, Share: 0.5, Created: t0.Add(time.Hour)},
		{Name: "vip", Priority: 50, Share: 9, Created: t0.Add(2 * time.Hour)},
		{Name: "none-new", Priority: 10, Share: 0, Created: t0.Add(3 * time.Hour)},
		{Name: "none-old", Priority: 10, Share: 0, Created: t0.Add(2 * time.Hour)},
		{Name: "tiny-older", Priority: 10, Share: ShareResolution / 2, Created: t0.Add(90 * time.Minute)},
	}
	SortQueue(q, func(x Queued) Queued { return x })
	// A share below the resolution is none: age decides.
	want := []string{"vip", "tiny-older", "none-old", "none-new", "light-new", "heavy-old"}
	for i, w := range want {
		if q[i].Name != w {
			t.Fatalf("order %v, want %v", q, want)
		}
	}
}

// TestChargeDecaysWithHalfLife: a hold is charged its decayed gpu-hours, which halve each
// half-life; RecentUse adds what is still held; users whose use decayed away are forgotten.
func TestChargeDecaysWithHalfLife(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	hl := 24 * time.Hour
	l := Ledger{Bindings: map[string]Binding{}}
	b := Binding{User: "alice", Node: "n", BoundAt: t0, Slots: []Bound{{UUID: "GPU-a", Weight: 1}, {UUID: "GPU-b", Weight: 1}}}
	l.Charge(b, t0.Add(time.Hour), 0) // no decay: 2 GPUs × 1 h
	if got := l.Usage["alice"].GPUHours; math.Abs(got-2) > 1e-9 {
		t.Fatalf("charged %v gpu-h, want 2", got)
	}
	if got := l.Usage["alice"].GPUHoursAt(t0.Add(time.Hour+hl), hl); math.Abs(got-1) > 1e-9 {
		t.Errorf("a half-life later: %v, want 1", got)
	}
	if d, ok := l.Usage["alice"].TypicalHold(); !ok || d != time.Hour {
		t.Errorf("typical hold %v %v, want 1h", d, ok)
	}
	l.Bindings["x"] = Binding{User: "alice", BoundAt: t0.Add(time.Hour), Slots: []Bound{{UUID: "GPU-a", Weight: 0.5}}}
	if got := l.RecentUse("alice", t0.Add(3*time.Hour), 0); math.Abs(got-3) > 1e-9 {
		t.Errorf("recent use with a half GPU held 2 h: %v, want 3", got)
	}
	l.Charge(Binding{User: "bob", BoundAt: t0, Slots: []Bound{{UUID: "GPU-c", Weight: 1}}}, t0.Add(40*hl), hl)
	if _, ok := l.Usage["alice"]; !ok {
		t.Error("alice's use, 40 half-lives but only 40 days old, is forgotten: budgets count it")
	}
	l.Charge(Binding{User: "bob", BoundAt: t0, Slots: []Bound{{UUID: "GPU-c", Weight: 1}}}, t0.Add(BudgetDays*hl), hl)
	if _, ok := l.Usage["alice"]; ok {
		t.Errorf("alice's use, %d half-lives and days old, is still kept", BudgetDays)
	}
}

// TestEstimateEnd: a hold probably ends after its user's typical hold; one held longer
// already runs half as long again; never past its latest end nor before now.
func TestEstimateEnd(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		now     time.Time
		typical time.Duration
		latest  time.Time
		want    time.Time
	}{
		{"within its typical hold", t0.Add(time.Hour), 3 * time.Hour, time.Time{}, t0.Add(3 * time.Hour)},
		{"past it", t0.Add(4 * time.Hour), 3 * time.Hour, time.Time{}, t0.Add(6 * time.Hour)},
		{"bounded by its limit", t0.Add(4 * time.Hour), 3 * time.Hour, t0.Add(5 * time.Hour), t0.Add(5 * time.Hour)},
		{"overdue on its limit", t0.Add(6 * time.Hour), 3 * time.Hour, t0.Add(5 * time.Hour), t0.Add(6 * time.Hour)},
	} {
		if got := EstimateEnd(t0, tc.now, tc.typical, tc.latest); !got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestPlanKeepsOutOfReservations: a request waiting behind a holder starts after the holder
// ends only where its hold fits before a reservation's window on the freed GPU, else after
// the window, named as its blocker; the reservation's own users are not kept out.
func TestPlanKeepsOutOfReservations(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return now.Add(time.Duration(h) * time.Hour) }
	plan := func() *Plan {
		p := NewPlan(wholeGPUs(1), []Holder{{Name: "h0", Slots: []string{"GPU-a"}, Latest: at(1), Estimate: at(1)}}, now)
		p.Block(Block{Name: "reservation/friday", Slots: []string{"GPU-a"}, Windows: []Span{{at(3), at(5)}}, For: func(u string) bool { return u == "ann" }})
		return p
	}
	if s := plan().Reserve(Waiter{Name: "short", Request: Request{User: "bob", GPUs: 1}, MaxRuntime: 2 * time.Hour, Typical: time.Hour}); !s.Latest.Equal(at(1)) {
		t.Errorf("two hours from 1 h fit before the window at 3 h: latest %v", s.Latest)
	}
	s := plan().Reserve(Waiter{Name: "long", Request: Request{User: "bob", GPUs: 1}, MaxRuntime: 3 * time.Hour, Typical: time.Hour})
	if !s.Latest.Equal(at(5)) || s.LatestBy != "reservation/friday" {
		t.Errorf("three hours do not fit before the window: latest %v by %q, want %v by the reservation", s.Latest, s.LatestBy, at(5))
	}
	if s := plan().Reserve(Waiter{Name: "ann", Request: Request{User: "ann", GPUs: 1}, MaxRuntime: 3 * time.Hour, Typical: time.Hour}); !s.Latest.Equal(at(1)) {
		t.Errorf("the reservation's user: latest %v, want %v", s.Latest, at(1))
	}
}

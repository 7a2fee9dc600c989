package allocation

import (
	"math"
	"strings"
	"testing"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

func TestParseWindow(t *testing.T) {
	for in, want := range map[string]Window{"": {Span: 30 * 24 * time.Hour}, "30d": {Span: 30 * 24 * time.Hour}, "168h": {Span: 168 * time.Hour},
		"Month": {Month: true}, "90d": {Span: 90 * 24 * time.Hour}} {
		if got, err := ParseWindow(in); err != nil || got != want {
			t.Errorf("ParseWindow(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"91d", "0d", "d", "month", "30", "-1d", "1w", "2161h"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("ParseWindow(%q): no error", bad)
		}
	}
}

// TestSpentCountsWhatWasHeldInTheWindow: ended holds by the day, a rolling window's first
// day in part, the month from its first, what is held now up to now; a 3/7 slice counts 3/7.
func TestSpentCountsWhatWasHeldInTheWindow(t *testing.T) {
	t0 := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	l := Ledger{Bindings: map[string]Binding{}}
	// 2 GPUs for 24 h from noon on the 10th: 24 gpu-h on the 10th, 24 on the 11th.
	l.Charge(Binding{User: "alice", BoundAt: t0, Slots: []Bound{{Weight: 1}, {Weight: 1}}}, t0.Add(24*time.Hour), time.Hour)
	// A 3g slice of a 7-slice GPU for 7 h on the 30th.
	l.Charge(Binding{User: "alice", BoundAt: t0.Add(20 * 24 * time.Hour), Slots: []Bound{{Weight: 3.0 / 7}}}, t0.Add(20*24*time.Hour+7*time.Hour), time.Hour)
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	l.Bindings["run"] = Binding{User: "alice", BoundAt: now.Add(-2 * time.Hour), Slots: []Bound{{Weight: 1}}}
	l.Bindings["bob"] = Binding{User: "bob", BoundAt: now.Add(-5 * time.Hour), Slots: []Bound{{Weight: 1}}}
	for _, tc := range []struct {
		w    Window
		want float64
	}{
		{Window{Span: 30 * 24 * time.Hour}, 24 + 24 + 3 + 2}, // from Nov 2 00:00: everything
		{Window{Span: 21 * 24 * time.Hour}, 24 + 3 + 2},      // from Nov 11 00:00: the 11th's, not the 10th's
		{Window{Month: true}, 2},                             // December: only what is held now
		{Window{Span: 3 * time.Hour}, 2},
	} {
		if got := l.Spent([]string{"alice"}, tc.w, now); math.Abs(got-tc.want) > 1e-3 {
			t.Errorf("%s: spent %v, want %v", tc.w.Phrase(), got, tc.want)
		}
	}
	// A rolling window that begins mid-day counts that day's use in part.
	if got := l.Spent([]string{"alice"}, Window{Span: 21*24*time.Hour + 6*time.Hour}, now); math.Abs(got-(24*0.25+24+3+2)) > 1e-3 {
		t.Errorf("a window from 18:00 on the 10th: %v, want a quarter of the 10th", got)
	}
	if got := l.Spent([]string{"alice", "bob"}, Window{Month: true}, now); math.Abs(got-7) > 1e-3 {
		t.Errorf("the pool this month: %v, want 7", got)
	}
	// The days are the ledger's own: a clone's charge does not change them.
	c := l.Clone()
	c.Charge(Binding{User: "alice", BoundAt: now.Add(-time.Hour), Slots: []Bound{{Weight: 1}}}, now, time.Hour)
	if got := l.Spent([]string{"alice"}, Window{Span: 30 * 24 * time.Hour}, now); math.Abs(got-53) > 1e-3 {
		t.Errorf("the original after a clone's charge: %v, want 53", got)
	}
}

// TestBudgetFrees: a rolling window frees as the oldest use leaves it; a month at its end.
func TestBudgetFrees(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	l := Ledger{Bindings: map[string]Binding{}}
	l.Charge(Binding{User: "alice", BoundAt: t0, Slots: []Bound{{Weight: 4}}}, t0.Add(10*time.Hour), time.Hour) // 40 gpu-h on Nov 1
	l.Charge(Binding{User: "alice", BoundAt: t0.Add(5 * 24 * time.Hour), Slots: []Bound{{Weight: 1}}}, t0.Add(5*24*time.Hour+10*time.Hour), time.Hour)
	now := t0.Add(7 * 24 * time.Hour)
	w := Window{Span: 7 * 24 * time.Hour}
	if got := l.Spent([]string{"alice"}, w, now); math.Abs(got-50) > 1e-3 {
		t.Fatalf("spent %v, want 50", got)
	}
	// Below 45: once most of Nov 1 has left the window (its use taken as spread over the day).
	at := l.BudgetFrees([]string{"alice"}, w, now, 45, 0)
	if at.Before(now) || at.After(now.Add(24*time.Hour)) || l.Spent([]string{"alice"}, w, at) >= 45 {
		t.Errorf("frees at %s (spent then %v)", at, l.Spent([]string{"alice"}, w, at))
	}
	if got := l.BudgetFrees([]string{"alice"}, Window{Month: true}, now, 45, 0); !got.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("a month's budget frees at %s, want Dec 1", got)
	}
}

// TestDecideBudgetAndBorrowing: a budget used up refuses with BudgetExceeded naming use,
// limit, the quota and when it frees; borrowing lets a request beyond the quota through,
// marked, up to the quota plus what may be borrowed.
func TestDecideBudgetAndBorrowing(t *testing.T) {
	inv := []Slot{{GPUIndex: 0, UUID: "GPU-0", Healthy: true}, {GPUIndex: 1, UUID: "GPU-1", Healthy: true}, {GPUIndex: 2, UUID: "GPU-2", Healthy: true},
		{GPUIndex: 3, UUID: "GPU-3", Healthy: true}}
	frees := time.Date(2026, 12, 9, 10, 0, 0, 0, time.UTC)
	q := Quota{GPUEquivalents: Limit[float64]{Set: true, Value: 1, From: "GPUQuota students"},
		Budget: Limit[float64]{Set: true, Value: 500, From: "GPUQuota lab"}, BudgetWindow: Window{Span: 30 * 24 * time.Hour}, BudgetUsed: 500.004, BudgetFrees: frees}
	d := Decide(inv, nil, q, Request{User: "alice", GPUs: 1})
	if d.Reason != gpuwardenv1alpha1.ReasonBudgetExceeded || !d.Final() ||
		d.Message != "alice used 500 of a budget of 500 gpu-hours in the last 30d (GPUQuota lab); enough frees up at 2026-12-09T10:00:00Z" {
		t.Errorf("at the budget: %+v", d)
	}
	q.BudgetUsed = 499.5
	if d := Decide(inv, nil, q, Request{User: "alice", GPUs: 1}); !d.Placed() || d.Borrowed {
		t.Errorf("below the budget, within quota: %+v", d)
	}
	live := []Holding{{Name: "a1", User: "alice", Slots: []string{"GPU-0"}, Weight: 1}}
	if d := Decide(inv, live, q, Request{User: "alice", GPUs: 1}); d.Reason != gpuwardenv1alpha1.ReasonQuotaExceeded {
		t.Errorf("beyond the quota without borrowing: %+v", d)
	}
	q.Borrow = Limit[float64]{Set: true, Value: 2, From: "GPUQuota night"}
	if d := Decide(inv, live, q, Request{User: "alice", GPUs: 2}); !d.Placed() || !d.Borrowed {
		t.Errorf("beyond the quota within borrowing: %+v", d)
	}
	d = Decide(inv, live, q, Request{User: "alice", GPUs: 3})
	if d.Reason != gpuwardenv1alpha1.ReasonQuotaExceeded || !strings.Contains(d.Message, "beyond the 2 they may borrow (GPUQuota night)") {
		t.Errorf("beyond quota and borrowing: %+v", d)
	}
}

func TestFormatHours(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.00123456: "0.00123", 0.5: "0.5", 12.3456: "12.35", 500: "500", 1: "1"} {
		if got := FormatHours(v); got != want {
			t.Errorf("FormatHours(%v) = %q, want %q", v, got, want)
		}
	}
}

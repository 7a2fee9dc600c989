package report_test

import (
	"math"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/report"
)

// TestBudgetUseAgreesWithTheReport: what a GPU-hour budget counts (the ledger's days and
// what is held now) is what gpuwarden report counts as allocated from the same holds'
// gpu.allocate and gpu.release records, over the budget's window: whole GPUs, a 3/7 slice,
// holds across midnight, one begun before the window and one still held.
func TestBudgetUseAgreesWithTheReport(t *testing.T) {
	monthStart := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	now := monthStart.Add(9*24*time.Hour + 13*time.Hour + 17*time.Minute)
	type hold struct {
		name       string
		from, to   time.Time // to zero: still held
		weight     float64
		weightText string
	}
	holds := []hold{
		{"a", monthStart.Add(-5 * time.Hour), monthStart.Add(3 * time.Hour), 2, "2"}, // begun before the window
		{"b", monthStart.Add(47 * time.Hour), monthStart.Add(50*time.Hour + 30*time.Minute), 3.0 / 7, "0.428571429"},
		{"c", monthStart.Add(100 * time.Hour), monthStart.Add(100*time.Hour + 12*time.Minute), 1, "1"},
		{"d", now.Add(-26 * time.Hour), time.Time{}, 1, "1"},
	}
	ledger := allocation.Ledger{Bindings: map[string]allocation.Binding{}}
	type ev struct {
		at time.Time
		e  audit.Event
	}
	var events []ev
	for _, h := range holds {
		b := allocation.Binding{User: "alice", BoundAt: h.from, Slots: []allocation.Bound{{UUID: "x-" + h.name, Weight: h.weight}}}
		ref := audit.Allocation{Name: h.name, GPUEquivalents: h.weightText}
		events = append(events, ev{h.from, audit.GPUAllocate("alice", ref)})
		if h.to.IsZero() {
			ledger.Bindings[h.name] = b
			continue
		}
		ledger.Charge(b, h.to, time.Hour)
		events = append(events, ev{h.to, audit.GPURelease("alice", ref, "container removed")})
	}
	b := &report.Builder{Since: monthStart}
	for len(events) > 0 { // in time order
		first := 0
		for i := range events {
			if events[i].at.Before(events[first].at) {
				first = i
			}
		}
		e := events[first].e
		e.Time = events[first].at
		b.Add(&e)
		events = append(events[:first], events[first+1:]...)
	}
	r := b.Report(now)
	var reported float64
	for _, row := range r.Rows {
		if row.User == "alice" {
			reported = row.AllocatedGPUHours
		}
	}
	spent := ledger.Spent([]string{"alice"}, allocation.Window{Month: true}, now)
	want := 2*3 + 3.0/7*3.5 + 0.2 + 26
	if math.Abs(spent-reported) > 1e-4 || math.Abs(spent-want) > 1e-4 {
		t.Errorf("budget use %.6f, report %.6f, want both %.6f", spent, reported, want)
	}
}

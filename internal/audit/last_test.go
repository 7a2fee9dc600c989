package audit

import (
	"strings"
	"testing"
)

func seqs(events []Event) []int {
	var out []int
	for _, e := range events {
		out = append(out, e.Details["seq"].(int))
	}
	return out
}

func TestLastKeepsTheLastN(t *testing.T) {
	l := NewLast(3)
	for i := range 200 {
		l.Add(Event{Type: "x", Details: map[string]any{"seq": i}})
	}
	if got := seqs(l.Events()); len(got) != 3 || got[0] != 197 || got[2] != 199 || l.HeldBack() != 0 {
		t.Errorf("the last 3 of 200: %v, held back %d", got, l.HeldBack())
	}
	all := NewLast(0)
	for i := range 100 {
		all.Add(Event{Type: "x", Details: map[string]any{"seq": i}})
	}
	if got := seqs(all.Events()); len(got) != 100 || got[0] != 0 || got[99] != 99 {
		t.Errorf("all of 100: %v", got)
	}
}

// TestLastHoldsNoMoreThanMaxBytes: large events push the oldest of the last n out, and
// HeldBack says how many; the newest is kept however large.
func TestLastHoldsNoMoreThanMaxBytes(t *testing.T) {
	big := strings.Repeat("x", 10_000)
	l := NewLast(50)
	l.MaxBytes = 35_000
	for i := range 10 {
		l.Add(Event{Type: "detection.unmanaged_process", Details: map[string]any{"seq": i, "command": big}})
	}
	got := seqs(l.Events())
	if len(got) != 3 || got[2] != 9 || l.HeldBack() != 7 {
		t.Errorf("10 events of 10 kB in 35 kB: kept %v, held back %d", got, l.HeldBack())
	}
	one := NewLast(5)
	one.MaxBytes = 100
	one.Add(Event{Type: "x", Details: map[string]any{"seq": 0, "command": big}})
	if len(one.Events()) != 1 || one.HeldBack() != 0 {
		t.Errorf("one event over MaxBytes: kept %d, held back %d", len(one.Events()), one.HeldBack())
	}
}

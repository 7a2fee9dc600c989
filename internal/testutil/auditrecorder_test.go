package testutil

import (
	"sync"
	"testing"

	"github.com/gpuwarden/gpuwarden/internal/audit"
)

func TestAuditRecorderKeepsEventsInOrderAcrossGoroutines(t *testing.T) {
	var r AuditRecorder
	if r.Events() != nil || r.Of(audit.TypeAuthDenied) != nil || r.Len() != 0 {
		t.Fatalf("a new recorder holds %v", r.Events())
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			typ := "gpu.allocate"
			if i%4 == 0 {
				typ = audit.TypeAuthDenied
			}
			r.Log(audit.Event{Type: typ, User: "alice"})
		})
	}
	wg.Wait()
	if n := r.Len(); n != 20 {
		t.Errorf("Len = %d, want 20", n)
	}
	if denied := r.Of(audit.TypeAuthDenied); len(denied) != 5 {
		t.Errorf("Of(%s) = %d events, want 5", audit.TypeAuthDenied, len(denied))
	}
	got := r.Events()
	got[0].User = "mallory"
	if r.Events()[0].User != "alice" {
		t.Error("changing what Events returned changed the recorder")
	}
	r.Reset()
	if r.Len() != 0 {
		t.Errorf("%d events after Reset", r.Len())
	}
	r.Log(audit.Event{Type: "gpu.allocate", User: "ann"})
	r.Log(audit.Event{Type: "gpu.release", User: "bo"})
	if evs := r.Events(); len(evs) != 2 || evs[0].User != "ann" || evs[1].User != "bo" {
		t.Errorf("events %+v, want ann's then bo's, as logged", evs)
	}
}

package testutil

import (
	"slices"
	"sync"

	"github.com/gpuwarden/gpuwarden/internal/audit"
)

// AuditRecorder is an audit.Logger that keeps what is logged in memory, in order, for a
// test to read back. It is safe for concurrent use; the zero value is ready.
type AuditRecorder struct {
	mu     sync.Mutex
	events []audit.Event
}

var _ audit.Logger = (*AuditRecorder)(nil)

// Log records e.
func (r *AuditRecorder) Log(e audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// Events returns a copy of everything recorded so far, in the order logged (nil when none).
func (r *AuditRecorder) Events() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Of returns the events recorded so far of type typ (e.g. audit.TypeGPURelease), in order
// (nil when none).
func (r *AuditRecorder) Of(typ string) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, e := range r.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// Len is how many events were recorded.
func (r *AuditRecorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// Reset forgets everything recorded.
func (r *AuditRecorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}

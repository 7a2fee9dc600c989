package testutil

import (
	"path/filepath"
	"testing"

	"github.com/gpuwarden/gpuwarden/internal/audit"
)

// AuditLog writes events to a new audit log in a temporary directory and returns its path.
func AuditLog(tb testing.TB, events ...audit.Event) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "events.jsonl")
	w, err := audit.Open(audit.Options{Path: path, Node: "gpu01", Source: "test"})
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range events {
		w.Log(e)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

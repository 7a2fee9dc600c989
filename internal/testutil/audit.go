package testutil

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// DecisionIDs reads audit logs (those that cannot be read are skipped: a process that never
// wrote) and returns, for each allocation, the event_ids of its records of type eventType
// (gpu.allocate, gpu.release), each with the log and time it was found under. A decision
// recorded again after a crash keeps its ID: more than one ID is a decision made twice.
func DecisionIDs(eventType string, logs ...string) map[string]map[string]string {
	ids := map[string]map[string]string{}
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var e struct {
				Type    string         `json:"event_type"`
				ID      string         `json:"event_id"`
				Time    string         `json:"timestamp"`
				Details map[string]any `json:"details"`
			}
			if json.Unmarshal([]byte(line), &e) != nil || e.Type != eventType {
				continue
			}
			name := fmt.Sprint(e.Details["allocation"])
			if ids[name] == nil {
				ids[name] = map[string]string{}
			}
			ids[name][e.ID] = filepath.Base(l) + " " + e.Time
		}
	}
	return ids
}

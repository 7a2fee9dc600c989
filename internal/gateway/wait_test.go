package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// TestWaitLabel: a create may ask to wait for its GPUs as long as its policy's
// queue.maxWait allows (a day where none sets it); the wait granted stays on the container
// as a label; a wait that is no duration, or too long, is refused before anything is
// allocated, saying what to ask for.
func TestWaitLabel(t *testing.T) {
	gpuCreate := func(labels string) string {
		return `{"Image":"x","Labels":{` + labels + `},"HostConfig":{"DeviceRequests":[{"Count":1,"Capabilities":[["gpu"]]}]}}`
	}
	for _, tc := range []struct {
		name     string
		policy   staticPolicies
		labels   string
		status   int
		refusing string
		wait     time.Duration
		max      time.Duration
	}{
		{"none asked", nil, ``, http.StatusCreated, "", 0, DefaultMaxWait},
		{"eight hours", nil, `"gpuwarden.io/wait":"8h"`, http.StatusCreated, "", 8 * time.Hour, DefaultMaxWait},
		{"the policy's bound", staticPolicies{"queue.maxWait": "12h"}, `"gpuwarden.io/wait":"1h30m"`, http.StatusCreated, "", 90 * time.Minute, 12 * time.Hour},
		{"beyond the policy", staticPolicies{"queue.maxWait": "2h"}, `"gpuwarden.io/wait":"8h"`, http.StatusForbidden,
			"asks to wait longer than the 2h allowed (queue.maxWait, ContainerPolicy researchers): ask for 2h at most", 0, 0},
		{"beyond the default bound", nil, `"gpuwarden.io/wait":"48h"`, http.StatusForbidden, "longer than the 24h allowed", 0, 0},
		{"no duration", nil, `"gpuwarden.io/wait":"tomorrow"`, http.StatusBadRequest, `is not a wait: give a duration such as 30m`, 0, 0},
		{"under a second", nil, `"gpuwarden.io/wait":"1ns"`, http.StatusBadRequest, "wait at least 1s", 0, 0},
		{"negative", nil, `"gpuwarden.io/wait":"-1h"`, http.StatusBadRequest, "is not a wait", 0, 0},
		{"too long a label", nil, `"gpuwarden.io/wait":"` + strings.Repeat("1", 40) + `h"`, http.StatusBadRequest, "characters long", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			if tc.policy != nil {
				w.s.Policies = tc.policy
			}
			rec := w.do(w.alice(), "POST", "/v1.41/containers/create", gpuCreate(tc.labels))
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.refusing) {
				t.Fatalf("%d %s; want %d saying %q", rec.Code, strings.TrimSpace(rec.Body.String()), tc.status, tc.refusing)
			}
			if tc.status != http.StatusCreated {
				if len(w.gpus.asked) != 0 {
					t.Errorf("a refused wait asked the allocator for GPUs: %+v", w.gpus.asked)
				}
				return
			}
			if got := w.gpus.asked[0]; got.Wait != tc.wait || got.MaxWait != tc.max {
				t.Errorf("asked wait %s (max %s), want %s (max %s)", got.Wait, got.MaxWait, tc.wait, tc.max)
			}
			labels, _ := w.engine.lastBody()["Labels"].(map[string]any)
			var want any // none asked: none kept (the caller's own gpuwarden.io/ labels are dropped)
			if tc.wait > 0 {
				want = strings.TrimPrefix(tc.labels, `"gpuwarden.io/wait":`)
				want = strings.Trim(want.(string), `"`)
			}
			if got := labels[gpuwardenv1alpha1.LabelWait]; got != want {
				t.Errorf("label %s on the container = %v, want %v", gpuwardenv1alpha1.LabelWait, got, want)
			}
		})
	}
}

// TestCheckpointLabels: a create may declare a checkpoint hook and a timeout for it; both
// stay on the container as given, while labels that cannot be used are refused naming
// the label (a hook gpuwarden would never run must not look declared).
func TestCheckpointLabels(t *testing.T) {
	for _, tc := range []struct {
		name, labels, refusing string
		keep                   map[string]any
	}{
		{"a hook", `"gpuwarden.io/checkpoint":"python save.py --to /workspace/ckpt"`, "",
			map[string]any{"gpuwarden.io/checkpoint": "python save.py --to /workspace/ckpt"}},
		{"a hook and its timeout", `"gpuwarden.io/checkpoint":"./save","gpuwarden.io/checkpoint-timeout":"2m"`, "",
			map[string]any{"gpuwarden.io/checkpoint": "./save", "gpuwarden.io/checkpoint-timeout": "2m"}},
		{"empty", `"gpuwarden.io/checkpoint":"  "`, "label gpuwarden.io/checkpoint is empty", nil},
		{"too long", `"gpuwarden.io/checkpoint":"` + strings.Repeat("x", 1025) + `"`, "is 1025 characters long; a checkpoint command is at most 1024", nil},
		{"a timeout alone", `"gpuwarden.io/checkpoint-timeout":"2m"`, "a timeout needs a checkpoint command", nil},
		{"a timeout without a unit", `"gpuwarden.io/checkpoint":"./save","gpuwarden.io/checkpoint-timeout":"30"`, "is not a timeout: give a duration of at least 1s", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			rec := w.do(w.alice(), "POST", "/v1.41/containers/create", `{"Image":"x","Labels":{`+tc.labels+`}}`)
			if tc.refusing != "" {
				if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), tc.refusing) {
					t.Fatalf("%d %s; want 400 saying %q", rec.Code, strings.TrimSpace(rec.Body.String()), tc.refusing)
				}
				return
			}
			if rec.Code != http.StatusCreated {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			labels, _ := w.engine.lastBody()["Labels"].(map[string]any)
			for k, v := range tc.keep {
				if labels[k] != v {
					t.Errorf("label %s = %v, want %v", k, labels[k], v)
				}
			}
		})
	}
}

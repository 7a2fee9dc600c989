package containers

import (
	"strings"
	"testing"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestTheOwnerHearsBeforeAnythingIrreversible: a stopped container's owner is told, once,
// when its GPUs go back and when it will be removed (and what removal destroys), before
// either happens; what the mode will not do is not announced.
func TestTheOwnerHearsBeforeAnythingIrreversible(t *testing.T) {
	for _, tc := range []struct {
		mode                 gpuwardenv1alpha1.PolicyMode
		wantRemoval, release bool
	}{
		{gpuwardenv1alpha1.ModeEnforce, true, true},
		{gpuwardenv1alpha1.ModeNotifyOnly, false, true},
		{gpuwardenv1alpha1.ModeDryRun, false, false},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			policy := testutil.MakePolicy("lab").Mode(tc.mode).GPUHoldAfterStop(15*time.Minute).RemoveAfterStop(30*time.Minute).
				Notify("/workspace/.gpuwarden-notice", "").Obj()
			a := testutil.MakeAllocation("dee-1").User("dee").Node("n1").Bound("GPU-0").Attached(idA).Obj()
			stopped := docker.Container{ID: idA, Name: "train", State: docker.StateExited, Created: t0.Add(-time.Hour), StartedAt: t0.Add(-time.Hour),
				FinishedAt: t0.Add(-time.Minute), Labels: map[string]string{gpuwardenv1alpha1.LabelUser: "dee", gpuwardenv1alpha1.LabelAllocation: "dee-1"},
				GPUs: docker.GPURequest{Devices: []string{"GPU-0"}}}
			e := newContainerTest(t, []client.Object{policy, a}, stopped)
			e.r.Actions.Notices = &notify.Notifier{Engine: e.engine}
			e.reconcile(idA)
			all := e.events("")
			removal, release := matching(all, reasons.EventRemovalScheduled), matching(all, reasons.EventReleaseScheduled)
			if got := len(removal) == 1; got != tc.wantRemoval {
				t.Errorf("removal announced: %v, want %v (%q)", got, tc.wantRemoval, removal)
			}
			if got := len(release) == 1; got != tc.release {
				t.Errorf("release announced: %v, want %v (%q)", got, tc.release, release)
			}
			file, _ := e.engine.File(idA, "/workspace/.gpuwarden-notice")
			at := t0.Add(29 * time.Minute).UTC().Format(time.RFC3339)
			if tc.wantRemoval && (!strings.Contains(string(file), "removed at "+at) || !strings.Contains(string(file), "writable layer")) {
				t.Errorf("the notice file does not say when it will be removed (%s) and what is lost:\n%s", at, file)
			}
			if tc.release && !strings.Contains(string(file), "GPUs go back at "+t0.Add(14*time.Minute).UTC().Format(time.RFC3339)) {
				t.Errorf("the notice file does not say when the GPUs go back:\n%s", file)
			}
			e.reconcile(idA)
			next := e.events("")
			if again := append(matching(next, reasons.EventRemovalScheduled), matching(next, reasons.EventReleaseScheduled)...); len(again) != 0 {
				t.Errorf("announced again on the next look: %q", again)
			}
		})
	}
}

// matching are the events that name reason.
func matching(events []string, reason string) []string {
	var out []string
	for _, ev := range events {
		if strings.Contains(ev, reason) {
			out = append(out, ev)
		}
	}
	return out
}

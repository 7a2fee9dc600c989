package allocation_test

import (
	"maps"
	"testing"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

func TestDevicesSummaryNamesEveryDevice(t *testing.T) {
	for _, tc := range []struct {
		devices []gpuwardenv1alpha1.BoundDevice
		want    string
	}{
		{nil, ""},
		{[]gpuwardenv1alpha1.BoundDevice{{Index: 0}, {Index: 1}}, "0,1"},
		{[]gpuwardenv1alpha1.BoundDevice{{Index: 4, MIGProfile: "1g.10gb"}}, "4:1g.10gb"},
		{[]gpuwardenv1alpha1.BoundDevice{{Index: 4, MIGProfile: "1g.10gb"}, {Index: 5, MIGProfile: "3g.40gb"}}, "4:1g.10gb,5:3g.40gb"},
	} {
		if got := allocation.DevicesSummary(tc.devices); got != tc.want {
			t.Errorf("DevicesSummary(%v) = %q, want %q", tc.devices, got, tc.want)
		}
	}
}

func TestSortedUniqueNamesEachOnce(t *testing.T) {
	in := []string{"bob", "", "alice", "bob", "bob"}
	if got := allocation.SortedUnique(in); got != "alice,bob" {
		t.Errorf("SortedUnique = %q, want alice,bob", got)
	}
	if in[0] != "bob" || in[2] != "alice" {
		t.Errorf("SortedUnique changed its argument: %v", in)
	}
}

// The user label always says what the spec says: a forged user is corrected, a user that
// is no valid label value has no label, and the phase label an earlier version kept is
// removed (status.phase is a selectable field).
func TestSyncLabels(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    *gpuwardenv1alpha1.GPUAllocation
		want map[string]string
	}{
		{"set", testutil.MakeAllocation("a").User("alice").Obj(),
			map[string]string{gpuwardenv1alpha1.LabelUser: "alice"}},
		{"forged user corrected", testutil.MakeAllocation("a").User("carol").Label(gpuwardenv1alpha1.LabelUser, "alice").Obj(),
			map[string]string{gpuwardenv1alpha1.LabelUser: "carol"}},
		{"old phase label removed", testutil.MakeAllocation("a").User("alice").Label(gpuwardenv1alpha1.LabelUser, "alice").Label(gpuwardenv1alpha1.LabelPhase, "Bound").Obj(),
			map[string]string{gpuwardenv1alpha1.LabelUser: "alice"}},
		{"user no label value", testutil.MakeAllocation("a").User("dave@example.org").Label(gpuwardenv1alpha1.LabelUser, "alice").Label("keep", "me").Obj(),
			map[string]string{"keep": "me"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if allocation.LabelsInStep(tc.a) {
				t.Fatalf("LabelsInStep before SyncLabels = true, labels %v", tc.a.Labels)
			}
			if !allocation.SyncLabels(tc.a) {
				t.Fatal("SyncLabels reported no change")
			}
			if !maps.Equal(tc.a.Labels, tc.want) {
				t.Errorf("labels = %v, want %v", tc.a.Labels, tc.want)
			}
			if allocation.SyncLabels(tc.a) || !allocation.LabelsInStep(tc.a) {
				t.Error("a second SyncLabels changed something")
			}
		})
	}
}

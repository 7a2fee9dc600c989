package allocation

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// TestSlotsOfUsesTheRecordedWeights: a MIG slot costs what its GPU object records — a 1g
// slice of a 4-slice GPU (an A30) is 1/4, not 1/7 — in index order, instances in the GPU's
// own order; a GPU not yet known gives none; health carries over.
func TestSlotsOfUsesTheRecordedWeights(t *testing.T) {
	gpus := []gpuwardenv1alpha1.GPU{
		{Spec: gpuwardenv1alpha1.GPUSpec{Index: 2}, Status: gpuwardenv1alpha1.GPUStatus{UUID: "GPU-2", MIGMode: gpuwardenv1alpha1.MIGEnabled, Health: gpuwardenv1alpha1.HealthHealthy,
			MIGInstances: []gpuwardenv1alpha1.MIGInstance{
				{UUID: "MIG-2a", Profile: "1g.6gb", Weight: resource.MustParse("250m")},
				{UUID: "MIG-2b", Profile: "2g.12gb", Weight: resource.MustParse("500m")},
			}}},
		{Spec: gpuwardenv1alpha1.GPUSpec{Index: 0}, Status: gpuwardenv1alpha1.GPUStatus{UUID: "GPU-0", MIGMode: gpuwardenv1alpha1.MIGDisabled, Health: gpuwardenv1alpha1.HealthHealthy}},
		{Spec: gpuwardenv1alpha1.GPUSpec{Index: 1}, Status: gpuwardenv1alpha1.GPUStatus{UUID: "GPU-1", MIGMode: gpuwardenv1alpha1.MIGDisabled, Health: gpuwardenv1alpha1.HealthLost}},
		{Spec: gpuwardenv1alpha1.GPUSpec{Index: 3}}, // not known yet
	}
	want := []Slot{
		{GPUIndex: 0, GPUUUID: "GPU-0", UUID: "GPU-0", Healthy: true},
		{GPUIndex: 1, GPUUUID: "GPU-1", UUID: "GPU-1"},
		{GPUIndex: 2, GPUUUID: "GPU-2", UUID: "MIG-2a", Profile: "1g.6gb", Share: 0.25, Healthy: true},
		{GPUIndex: 2, GPUUUID: "GPU-2", UUID: "MIG-2b", Profile: "2g.12gb", Share: 0.5, Healthy: true},
	}
	got := SlotsOf(gpus)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("slots (-want +got):\n%s", diff)
	}
	if w := got[2].Weight(); w != 0.25 {
		t.Errorf("a 1g slice of a 4-slice GPU weighs %v, want 0.25", w)
	}
	if w := got[0].Weight(); w != 1 {
		t.Errorf("a whole GPU weighs %v, want 1", w)
	}
}

// TestSortQueue: the highest quota priority first, then the oldest, then by name.
func TestSortQueue(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	q := []Queued{
		{Name: "old-low", Priority: 10, Created: t0},
		{Name: "new-high", Priority: 50, Created: t0.Add(time.Hour)},
		{Name: "b-same", Priority: 10, Created: t0.Add(time.Minute)},
		{Name: "old-high", Priority: 50, Created: t0.Add(time.Minute)},
		{Name: "a-same", Priority: 10, Created: t0.Add(time.Minute)},
	}
	SortQueue(q, func(x Queued) Queued { return x })
	var names []string
	for _, x := range q {
		names = append(names, x.Name)
	}
	if diff := cmp.Diff([]string{"old-high", "new-high", "old-low", "a-same", "b-same"}, names); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

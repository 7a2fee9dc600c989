package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

// TestQueueListsEachNodesQueueInOrder: the waiting requests of each node in their order,
// with their times and why they wait; Bound ones are not listed; --node narrows it.
func TestQueueListsEachNodesQueueInOrder(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	latest := metav1.NewTime(now.Add(2 * time.Hour))
	two := int32(2)
	alloc := func(name, node string, pos int32, q *gpuwardenv1alpha1.QueueStatus) client.Object {
		a := &gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(now.Add(-90 * time.Minute))},
			Spec:   gpuwardenv1alpha1.GPUAllocationSpec{User: "u-" + name, NodeName: node, Request: gpuwardenv1alpha1.AllocationRequest{GPUs: &two}},
			Status: gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhasePending, Reason: gpuwardenv1alpha1.ReasonNoCapacity, Queue: q}}
		if q == nil {
			a.Status.Phase = gpuwardenv1alpha1.PhaseBound
		}
		return a
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(
		alloc("second", "gpu01", 2, &gpuwardenv1alpha1.QueueStatus{Position: 2, BlockedBy: "forever"}),
		alloc("first", "gpu01", 1, &gpuwardenv1alpha1.QueueStatus{Position: 1, LatestStart: &latest, EstimatedStart: &latest, BlockedBy: "bob-train"}),
		alloc("other", "gpu02", 1, &gpuwardenv1alpha1.QueueStatus{Position: 1}),
		alloc("holding", "gpu01", 0, nil),
	).Build()
	var out bytes.Buffer
	o := &Options{now: func() time.Time { return now }}
	if err := o.Run(context.Background(), c, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], "gpu01  1      first") || !strings.HasPrefix(lines[2], "gpu01  2      second") || !strings.HasPrefix(lines[3], "gpu02") {
		t.Fatalf("queue:\n%s", out.String())
	}
	for _, want := range []string{"2 GPUs", "1h30m", "2026-12-03T14:00:00Z", "capacity: until bob-train ends", "capacity: forever holds its GPUs without a time limit"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("queue lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	o.Node, o.Output = "gpu02", "json"
	if err := o.Run(context.Background(), c, &out); err != nil {
		t.Fatal(err)
	}
	var e Entry
	if err := json.Unmarshal(out.Bytes(), &e); err != nil || e.Name != "other" || e.Position != 1 || e.Why != "capacity" {
		t.Errorf("--node gpu02 -o json: %s (%v)", out.String(), err)
	}
}

package allocation

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

// TestDesiredStatusComesFromTheLedger: what each allocation's status should say, from the
// ledger and the pass's decisions alone — whatever the status said before.
func TestDesiredStatusComesFromTheLedger(t *testing.T) {
	boundAt := t0.Add(-time.Hour + 123456789*time.Nanosecond) // the ledger keeps nanoseconds, a status seconds
	ledger := allocation.Ledger{Bindings: map[string]allocation.Binding{
		"mine":   {User: "ann", Node: "n1", BoundAt: boundAt, Slots: []allocation.Bound{{GPUIndex: 4, UUID: "MIG-4a", Profile: "3g.40gb", Weight: 3.0 / 7}}},
		"theirs": {User: "ann", Node: "n2", BoundAt: boundAt, Slots: []allocation.Bound{{GPUIndex: 0, UUID: "GPU-x", Weight: 1}}},
	}}
	p := &pass{r: &Reconciler{NodeName: "n1"}, node: "n1", now: t0, ledger: ledger,
		outcome: map[string]allocation.Decision{
			"refused": {Reason: gpuwardenv1alpha1.ReasonQuotaExceeded, Message: strings.Repeat("q", 5000)},
			"waiting": {Reason: gpuwardenv1alpha1.ReasonNoCapacity, Message: "0 whole GPUs free of 1 asked for"},
			"claimed": {Reason: gpuwardenv1alpha1.ReasonNoCapacity, Message: "waiting for capacity on any GPU node"},
		},
		released: map[string]releaseInfo{"done": {binding: allocation.Binding{User: "ann"}, reason: "container removed"}},
	}
	forged := gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseBound,
		Devices: []gpuwardenv1alpha1.BoundDevice{{Index: 7, UUID: "GPU-forged", Weight: resource.MustParse("1")}}, GPUEquivalents: quantity(1)}
	alloc := func(name, node string, status gpuwardenv1alpha1.GPUAllocationStatus, annotations map[string]string) *gpuwardenv1alpha1.GPUAllocation {
		a := testutil.MakeAllocation(name).Generation(2).User("ann").Node(node).WithStatus(status).Obj()
		a.Annotations = annotations
		return a
	}
	cases := []struct {
		name   string
		a      *gpuwardenv1alpha1.GPUAllocation
		says   bool
		phase  gpuwardenv1alpha1.AllocationPhase
		reason string
		check  func(*testing.T, *gpuwardenv1alpha1.GPUAllocationStatus)
	}{
		{"bound here, forged devices put back", alloc("mine", "n1", forged, nil), true, gpuwardenv1alpha1.PhaseBound, "",
			func(t *testing.T, s *gpuwardenv1alpha1.GPUAllocationStatus) {
				if len(s.Devices) != 1 || s.Devices[0].UUID != "MIG-4a" || s.GPUEquivalentsRounded != "0.43" || s.GPUEquivalents.String() != "428571429n" ||
					!s.BoundTime.Time.Equal(boundAt.Truncate(time.Second)) || s.ObservedGeneration != 2 {
					t.Errorf("status %+v", s)
				}
			}},
		{"bound on another node: not this node's to say", alloc("theirs", "n2", forged, nil), false, "", "", nil},
		{"Bound written by someone else, no binding: Pending, holding nothing", alloc("forged", "n1", forged, nil), true, gpuwardenv1alpha1.PhasePending, "",
			func(t *testing.T, s *gpuwardenv1alpha1.GPUAllocationStatus) {
				if len(s.Devices) != 0 || s.GPUEquivalents != nil || s.GPUEquivalentsRounded != "" || s.BoundTime != nil {
					t.Errorf("a forged Bound keeps %+v", s)
				}
			}},
		{"released in this pass", alloc("done", "n1", forged, nil), true, gpuwardenv1alpha1.PhaseReleased, "Released",
			func(t *testing.T, s *gpuwardenv1alpha1.GPUAllocationStatus) {
				if s.Message != "Devices given back: container removed" || s.ReleasedTime == nil || !s.ReleasedTime.Time.Equal(t0) {
					t.Errorf("status %+v", s)
				}
			}},
		{"asked to release while it waited, with a 5000-character reason", alloc("asked", "n1", gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhasePending},
			map[string]string{gpuwardenv1alpha1.AnnotationRelease: strings.Repeat("r", 5000)}), true, gpuwardenv1alpha1.PhaseReleased, "Released",
			func(t *testing.T, s *gpuwardenv1alpha1.GPUAllocationStatus) {
				if len(s.Message) > message.MaxUserText+len("Devices given back: ") {
					t.Errorf("a message of %d bytes", len(s.Message))
				}
			}},
		{"refused for good, the message bounded", alloc("refused", "n1", forged, nil), true, gpuwardenv1alpha1.PhaseRejected, gpuwardenv1alpha1.ReasonQuotaExceeded,
			func(t *testing.T, s *gpuwardenv1alpha1.GPUAllocationStatus) {
				if len(s.Message) > message.Max || len(s.Devices) != 0 {
					t.Errorf("message of %d bytes, devices %v", len(s.Message), s.Devices)
				}
			}},
		{"waiting for capacity", alloc("waiting", "n1", gpuwardenv1alpha1.GPUAllocationStatus{}, nil), true, gpuwardenv1alpha1.PhasePending, gpuwardenv1alpha1.ReasonNoCapacity, nil},
		{"no node yet, decided here", alloc("claimed", "", gpuwardenv1alpha1.GPUAllocationStatus{}, nil), true, gpuwardenv1alpha1.PhasePending, gpuwardenv1alpha1.ReasonNoCapacity, nil},
		{"no node yet, nothing decided here", alloc("elsewhere", "", gpuwardenv1alpha1.GPUAllocationStatus{}, nil), false, "", "", nil},
		{"new, not decided yet", alloc("new", "n1", gpuwardenv1alpha1.GPUAllocationStatus{}, nil), true, gpuwardenv1alpha1.PhasePending, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, says := p.desiredStatus(tc.a)
			if says != tc.says {
				t.Fatalf("says = %v, want %v", says, tc.says)
			}
			if !says {
				return
			}
			if got.Phase != tc.phase || got.Reason != tc.reason {
				t.Errorf("phase %q reason %q, want %q %q", got.Phase, got.Reason, tc.phase, tc.reason)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}

// TestDesiredStatusOfAnUnchangedBindingIsWhatIsStored: a pass computes, for a binding that
// has not changed, exactly the status the API server stores (times to the second), so it
// writes nothing.
func TestDesiredStatusOfAnUnchangedBindingIsWhatIsStored(t *testing.T) {
	at := t0.Add(987654321 * time.Nanosecond)
	p := &pass{r: &Reconciler{NodeName: "n1"}, node: "n1", now: t0, outcome: map[string]allocation.Decision{},
		ledger: allocation.Ledger{Bindings: map[string]allocation.Binding{"a": {User: "ann", Node: "n1", BoundAt: at,
			Slots: []allocation.Bound{{GPUIndex: 0, UUID: "GPU-0", Weight: 1}}}}}}
	a := &gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: gpuwardenv1alpha1.GPUAllocationSpec{User: "ann", NodeName: "n1"}}
	first, _ := p.desiredStatus(a)
	// What comes back from the API server: the same status through JSON.
	data, err := json.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	var stored gpuwardenv1alpha1.GPUAllocationStatus
	if err := json.Unmarshal(data, &stored); err != nil {
		t.Fatal(err)
	}
	a.Status = stored
	again, _ := p.desiredStatus(a)
	if !equality.Semantic.DeepEqual(again, &a.Status) {
		t.Errorf("an unchanged binding would be written again:\nwant %+v\nhave %+v", again, a.Status)
	}
}

// TestAReleaseRecordedTwiceHasOneID: a pass that released a binding from the ledger records
// the release (ID from the bound time); if its status write did not land, a later pass
// writes Released from the release annotation and records it again — under the same ID,
// so that readers keep it once.
func TestAReleaseRecordedTwiceHasOneID(t *testing.T) {
	log := &testutil.AuditRecorder{}
	p := &pass{r: &Reconciler{NodeName: "n1", Audit: log, Recorder: events.NewFakeRecorder(10)}, node: "n1", now: t0,
		released: map[string]releaseInfo{}}
	boundAt := metav1.NewTime(t0.Add(-time.Hour).Truncate(time.Second))
	a := testutil.MakeAllocation("r").Created(t0.Add(-2 * time.Hour)).User("ann").Node("n1").Phase(gpuwardenv1alpha1.PhaseReleased).
		BoundAt(boundAt.Time).ReleasedAt(t0).Obj()
	p.record(a, &gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseBound, BoundTime: &boundAt})
	want := audit.DecisionID("release", "r", t0.Add(-time.Hour+300*time.Millisecond)) // as the ledger keeps it, finer
	if len(log.Events()) != 1 || log.Events()[0].ID != want {
		t.Fatalf("recorded %+v, want one gpu.release with ID %s (the ledger release's)", log.Events(), want)
	}
}

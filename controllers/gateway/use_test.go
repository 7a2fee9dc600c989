package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

func manualAlloc(name, user string) *testutil.AllocationWrapper {
	return testutil.MakeAllocation(name).User(user).Node("n1").Source(gpuwardenv1alpha1.SourceManual).GPUs(1)
}

// TestUseGivesOnlyTheCallersOwnUnusedAllocation: a create may use the caller's own Bound
// Manual allocation of this node that no container uses; another user's, one that does not
// exist and one whose name is no object name are answered alike, as missing; the rest is
// refused, saying why.
func TestUseGivesOnlyTheCallersOwnUnusedAllocation(t *testing.T) {
	g, c := newGatewayAllocator(t)
	for _, a := range []*gpuwardenv1alpha1.GPUAllocation{
		manualAlloc("alice-1", "alice").Bound("GPU-3", "GPU-4").Obj(),
		manualAlloc("alice-gw", "alice").Source(gpuwardenv1alpha1.SourceGateway).Bound("GPU-5").Obj(),
		manualAlloc("alice-used", "alice").Bound("GPU-6").Attached("0123456789abcdef").Obj(),
		manualAlloc("alice-old", "alice").Phase(gpuwardenv1alpha1.PhaseReleased).Reason("unused").Message("no container used it").Obj(),
		manualAlloc("alice-n2", "alice").Node("n2").Bound("GPU-7").Obj(),
		manualAlloc("alice-going", "alice").Bound("GPU-8").Annotation(gpuwardenv1alpha1.AnnotationRelease, "asked by alice").Obj(),
	} {
		st := a.Status
		if err := c.Create(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		a.Status = st
		if err := c.Status().Update(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	uuids, err := g.Use(context.Background(), "alice", "alice-1", "train")
	if err != nil || strings.Join(uuids, ",") != "GPU-3,GPU-4" {
		t.Fatalf("alice uses alice-1: %v %v", uuids, err)
	}
	refusal := func(user, name string) *gateway.AllocationError {
		t.Helper()
		_, err := g.Use(context.Background(), user, name, "x")
		var ae *gateway.AllocationError
		if !errors.As(err, &ae) {
			t.Fatalf("%s naming %s: %v; want a refusal", user, name, err)
		}
		return ae
	}
	missing := refusal("bob", "nosuch")
	for _, name := range []string{"alice-1", "alice-used", "alice-old"} {
		got := refusal("bob", name)
		if !got.Absent || got.Status != missing.Status || strings.ReplaceAll(got.Message, name, "X") != strings.ReplaceAll(missing.Message, "nosuch", "X") {
			t.Errorf("bob naming %s: %+v; want what a missing one gets: %+v", name, got, missing)
		}
	}
	if !missing.Absent || !strings.HasPrefix(missing.Message, "No such GPU allocation: nosuch") {
		t.Errorf("a missing allocation: %+v", missing)
	}
	for _, name := range []string{"Alice-1", "../alice-1", "alice-1/status", strings.Repeat("a", 300)} {
		if got := refusal("alice", name); !got.Absent || !strings.HasPrefix(got.Message, "No such GPU allocation: ") || len(got.Message) > 200 {
			t.Errorf("alice naming %.20q: %+v", name, got)
		}
	}
	for name, want := range map[string]string{
		"alice-gw":    "only an allocation you made with kubectl (source Manual) can be named",
		"alice-used":  "is used by container 0123456789ab already: an allocation is for one container",
		"alice-old":   "is Released (unused: no container used it): create a new one",
		"alice-n2":    "is for node n2; this gateway is node n1's",
		"alice-going": "is being released (asked by alice)",
	} {
		if got := refusal("alice", name); got.Absent || got.Status != http.StatusForbidden || !strings.Contains(got.Message, want) {
			t.Errorf("alice naming %s: %+v; want 403 %q", name, got, want)
		}
	}
}

// TestUseWaitsForAPendingAllocation: one that is Pending is waited for like a create's own
// allocation, then used once Bound; one still Pending when the wait is over is refused with
// its reason.
func TestUseWaitsForAPendingAllocation(t *testing.T) {
	g, c := newGatewayAllocator(t)
	a := manualAlloc("alice-1", "alice").Obj()
	if err := c.Create(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	a.Status = gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhasePending, Reason: gpuwardenv1alpha1.ReasonNoCapacity, Message: "every GPU is held"}
	if err := c.Status().Update(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	_, err := g.Use(context.Background(), "alice", "alice-1", "")
	var ae *gateway.AllocationError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable ||
		!strings.Contains(ae.Message, "GPU allocation alice-1 is still Pending after waiting 300ms: every GPU is held; try again once kubectl get ga alice-1 shows it Bound") {
		t.Errorf("still pending: %v", err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		cur := &gpuwardenv1alpha1.GPUAllocation{}
		if err := c.Get(context.Background(), client.ObjectKey{Name: "alice-1"}, cur); err == nil {
			cur.Status = gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseBound, Devices: []gpuwardenv1alpha1.BoundDevice{{UUID: "GPU-2"}}}
			_ = c.Status().Update(context.Background(), cur)
		}
	}()
	uuids, err := g.Use(context.Background(), "alice", "alice-1", "")
	if err != nil || len(uuids) != 1 || uuids[0] != "GPU-2" {
		t.Errorf("bound while it waited: %v %v", uuids, err)
	}
}

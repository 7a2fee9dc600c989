package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/provenance"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// decideAs plays the allocation controller: the first Gateway allocation it sees gets st.
func decideAs(t *testing.T, c client.Client, st gpuwardenv1alpha1.GPUAllocationStatus) {
	t.Helper()
	go func() {
		for range 200 {
			var list gpuwardenv1alpha1.GPUAllocationList
			if c.List(context.Background(), &list) == nil && len(list.Items) > 0 {
				a := list.Items[0]
				a.Status = st
				_ = c.Status().Update(context.Background(), &a)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
}

func newGatewayAllocator(t *testing.T) (*Allocator, client.Client) {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithStatusSubresource(&gpuwardenv1alpha1.GPUAllocation{}).Build()
	return &Allocator{Client: c, Reader: c, NodeName: "n1", Clock: clock.RealClock{}, BindWait: 300 * time.Millisecond, Poll: 10 * time.Millisecond,
		Audit: &testutil.AuditRecorder{}}, c
}

func TestGatewayAllocatorWaitsForTheBinding(t *testing.T) {
	g, c := newGatewayAllocator(t)
	decideAs(t, c, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseBound, Devices: []gpuwardenv1alpha1.BoundDevice{{UUID: "GPU-7"}}})
	name, uuids, err := g.Allocate(context.Background(), "alice", gateway.GPURequest{Count: 1}, "nb", gpuwardenv1alpha1.ContainerTypeDocker)
	if err != nil || len(uuids) != 1 || uuids[0] != "GPU-7" {
		t.Fatalf("Allocate = %s %v %v", name, uuids, err)
	}
	a := &gpuwardenv1alpha1.GPUAllocation{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, a); err != nil {
		t.Fatal(err)
	}
	if a.Spec.Source != gpuwardenv1alpha1.SourceGateway || a.Spec.User != "alice" || *a.Spec.Request.GPUs != 1 || !provenance.NeedsSignature(a) ||
		a.Annotations[gpuwardenv1alpha1.AnnotationSignature] == "" || a.Spec.ContainerName != "nb" {
		t.Errorf("the allocation made: %+v", a)
	}
}

func TestGatewayAllocatorRefusesAtOnceAndGivesUpWithThePosition(t *testing.T) {
	g, c := newGatewayAllocator(t)
	decideAs(t, c, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseRejected, Reason: gpuwardenv1alpha1.ReasonQuotaExceeded,
		Message: "2 of 2 gpu-equivalents in use (GPUQuota students)"})
	_, _, err := g.Allocate(context.Background(), "alice", gateway.GPURequest{Count: 1}, "", "")
	var ae *gateway.AllocationError
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, "GPUQuota students") {
		t.Errorf("a rejected request: %v", err)
	}
	var list gpuwardenv1alpha1.GPUAllocationList
	if _ = c.List(context.Background(), &list); len(list.Items) != 0 {
		t.Errorf("the rejected allocation is left: %d", len(list.Items))
	}

	decideAs(t, c, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhasePending, Reason: gpuwardenv1alpha1.ReasonNoCapacity, Message: "no free GPU"})
	_, _, err = g.Allocate(context.Background(), "alice", gateway.GPURequest{Count: 1}, "", "")
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "no GPU free after waiting 300ms: no free GPU") ||
		!strings.Contains(ae.Message, "number 1 of 1 waiting on n1") {
		t.Errorf("a request that waits too long: %v", err)
	}
	if _ = c.List(context.Background(), &list); len(list.Items) != 0 {
		t.Errorf("the abandoned allocation is left: %d", len(list.Items))
	}
	// The request given up on is a refused request, with how long it waited; the one the
	// allocation controller rejected was recorded by it.
	rejects := g.Audit.(*testutil.AuditRecorder).Of(audit.TypeGPUReject)
	if len(rejects) != 1 || rejects[0].User != "alice" || rejects[0].Details["reason"] != gpuwardenv1alpha1.ReasonNoCapacity ||
		rejects[0].Details["wait_seconds"] == nil || !strings.Contains(fmt.Sprint(rejects[0].Details["message"]), "no GPU free after waiting") {
		t.Errorf("records of the requests refused: %+v; want one gpu.reject (NoCapacity, with its wait) for the one given up on", rejects)
	}
}

// decideFor plays the allocation controller for the first allocation that names container id.
func decideFor(t *testing.T, c client.Client, id string, st gpuwardenv1alpha1.GPUAllocationStatus) {
	t.Helper()
	go func() {
		for range 200 {
			var list gpuwardenv1alpha1.GPUAllocationList
			if c.List(context.Background(), &list) == nil {
				for _, a := range list.Items {
					if a.Spec.ContainerID == id {
						a.Status = st
						_ = c.Status().Update(context.Background(), &a)
						return
					}
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
}

func withGPUs(t *testing.T, c client.Client, uuids ...string) {
	t.Helper()
	for i, u := range uuids {
		g := &gpuwardenv1alpha1.GPU{ObjectMeta: metav1.ObjectMeta{Name: gpu.ObjectName("n1", i), Labels: map[string]string{gpuwardenv1alpha1.LabelNode: "n1"}},
			Spec:   gpuwardenv1alpha1.GPUSpec{NodeName: "n1", Index: int32(i)},
			Status: gpuwardenv1alpha1.GPUStatus{UUID: u, MIGMode: gpuwardenv1alpha1.MIGDisabled, Health: gpuwardenv1alpha1.HealthHealthy}}
		if err := c.Create(context.Background(), g); err != nil { // no status subresource here: the status is written with it
			t.Fatal(err)
		}
	}
}

func put(t *testing.T, c client.Client, a *gpuwardenv1alpha1.GPUAllocation) {
	t.Helper()
	st := a.Status
	if err := c.Create(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	a.Status = st
	if err := c.Status().Update(context.Background(), a); err != nil {
		t.Fatal(err)
	}
}

// A start through the gateway: the container's allocation when still Bound to its devices;
// its devices refused at once, naming the holder, when another allocation holds them; else a
// new allocation for exactly those devices, naming the container, waited for like a create.
func TestGatewayReacquireForAStart(t *testing.T) {
	const id = "aaaa000000000000000000000000000000000000000000000000000000000001"
	g, c := newGatewayAllocator(t)
	withGPUs(t, c, "GPU-0", "GPU-1")
	held := testutil.MakeAllocation("gateway-old").User("alice").Node("n1").Bound("GPU-1").Obj()
	held.Spec.Source = gpuwardenv1alpha1.SourceGateway
	held.Status.ContainerID = id
	put(t, c, held)
	start := gateway.Starting{ID: id, Name: "nb", Allocation: "gateway-old", Devices: []string{"GPU-1"}, Type: gpuwardenv1alpha1.ContainerTypeDocker}
	if name, err := g.Reacquire(context.Background(), "alice", start); err != nil || name != "gateway-old" {
		t.Fatalf("a start whose allocation still holds its GPU: %s %v", name, err)
	}

	// The hold passed: released, and GPU-1 went to bob.
	held.Status.Phase = gpuwardenv1alpha1.PhaseReleased
	if err := c.Status().Update(context.Background(), held); err != nil {
		t.Fatal(err)
	}
	put(t, c, testutil.MakeAllocation("gateway-bob").User("bob").Node("n1").Bound("GPU-1").Obj())
	_, err := g.Reacquire(context.Background(), "alice", start)
	var ae *gateway.AllocationError
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, "held by bob's allocation gateway-bob") ||
		!strings.Contains(ae.Message, "recreate the container with --gpus 1") {
		t.Errorf("a start on bob's GPU: %v", err)
	}
	var list gpuwardenv1alpha1.GPUAllocationList
	if _ = c.List(context.Background(), &list); len(list.Items) != 2 {
		t.Errorf("%d allocations after a refused start, want the 2 there were", len(list.Items))
	}

	// Bob's is gone: the start gets a new allocation for GPU-1 (named by index in the
	// container, as an admin's create may have named it), attached by the container's ID.
	if err := c.Delete(context.Background(), testutil.MakeAllocation("gateway-bob").User("bob").Node("n1").Bound().Obj()); err != nil {
		t.Fatal(err)
	}
	decideFor(t, c, id, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseBound, Devices: []gpuwardenv1alpha1.BoundDevice{{Index: 1, UUID: "GPU-1"}}})
	start.Devices = []string{"1"}
	name, err := g.Reacquire(context.Background(), "alice", start)
	if err != nil || name == "gateway-old" {
		t.Fatalf("a start on a free GPU: %s %v", name, err)
	}
	a := &gpuwardenv1alpha1.GPUAllocation{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, a); err != nil {
		t.Fatal(err)
	}
	if a.Spec.User != "alice" || a.Spec.Source != gpuwardenv1alpha1.SourceGateway || a.Spec.ContainerID != id || a.Spec.ContainerName != "nb" ||
		strings.Join(a.Spec.Request.Devices, ",") != "GPU-1" || a.Annotations[gpuwardenv1alpha1.AnnotationSignature] == "" {
		t.Errorf("the allocation made for the start: %+v", a.Spec)
	}
	// Started again later: the allocation naming the container is found, none made.
	again, err := g.Reacquire(context.Background(), "alice", start)
	if err != nil || again != name {
		t.Errorf("a second start: %s %v, want %s", again, err, name)
	}

	// A limit refuses the start like a create, and says what to do.
	start.ID = "bbbb000000000000000000000000000000000000000000000000000000000002"
	start.Allocation, start.Devices = "", []string{"GPU-0"}
	decideFor(t, c, start.ID, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseRejected, Reason: gpuwardenv1alpha1.ReasonQuotaExceeded,
		Message: "alice holds 1/1 gpu-equivalents and asked for 1 more (GPUQuota students)"})
	if _, err := g.Reacquire(context.Background(), "alice", start); !errors.As(err, &ae) || ae.Status != http.StatusForbidden ||
		!strings.Contains(ae.Message, "cannot start until its GPUs (GPU-0) are held again") || !strings.Contains(ae.Message, "GPUQuota students") {
		t.Errorf("a start over quota: %v", err)
	}
}

// TestGatewayAllocatorWaitsAsAskedAndSaysWhereItWas: a create waits as long as it asked
// (within its bound), its allocation says until when and for which gateway; given up, the
// message gives its place, both start times and how to wait longer; a caller gone leaves
// nothing behind.
func TestGatewayAllocatorWaitsAsAskedAndSaysWhereItWas(t *testing.T) {
	g, c := newGatewayAllocator(t)
	g.Waiter = "gw-1"
	latest, estimate := metav1.NewTime(time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)), metav1.NewTime(time.Date(2026, 12, 3, 14, 30, 0, 0, time.UTC))
	decideAs(t, c, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhasePending, Reason: gpuwardenv1alpha1.ReasonNoCapacity, Message: "0 whole GPUs free of 1 asked for",
		Queue: &gpuwardenv1alpha1.QueueStatus{Position: 2, Waiting: 3, LatestStart: &latest, EstimatedStart: &estimate, BlockedBy: "bob-train"}})
	start := time.Now()
	_, _, err := g.Allocate(context.Background(), "alice", gateway.GPURequest{Count: 1, Wait: 400 * time.Millisecond, MaxWait: 8 * time.Hour}, "train", gpuwardenv1alpha1.ContainerTypeDocker)
	if waited := time.Since(start); waited < 400*time.Millisecond {
		t.Errorf("gave up after %s; it asked to wait 400ms (the default is 300ms)", waited)
	}
	var ae *gateway.AllocationError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"no GPU free after waiting 400ms", "number 2 of 3 waiting", "estimated start 2026-12-03T14:30:00Z",
		"at the latest 2026-12-03T16:00:00Z, when bob-train ends", "wait longer with --label gpuwarden.io/wait=8h (at most 8h)"} {
		if !strings.Contains(ae.Message, want) {
			t.Errorf("message %q lacks %q", ae.Message, want)
		}
	}

	// The allocation made for a wait records until when, and for which gateway.
	created := make(chan *gpuwardenv1alpha1.GPUAllocation, 1)
	g.Client = interceptCreate(c, func(a *gpuwardenv1alpha1.GPUAllocation) { created <- a.DeepCopy() })
	ctx, cancel := context.WithCancel(context.Background())
	var made *gpuwardenv1alpha1.GPUAllocation
	done := make(chan struct{})
	go func() {
		defer close(done)
		made = <-created
		cancel() // the caller goes away
	}()
	before := time.Now()
	if _, _, err := g.Allocate(ctx, "alice", gateway.GPURequest{Count: 1, Wait: time.Hour, MaxWait: 8 * time.Hour}, "train", gpuwardenv1alpha1.ContainerTypeDocker); !errors.Is(err, context.Canceled) {
		t.Fatalf("a caller gone: err = %v", err)
	}
	<-done
	until, perr := time.Parse(time.RFC3339, made.Annotations[gpuwardenv1alpha1.AnnotationWaitUntil])
	if perr != nil || until.Before(before.Add(time.Hour-time.Second)) || until.After(time.Now().Add(time.Hour)) || made.Annotations[gpuwardenv1alpha1.AnnotationWaiter] != "gw-1" {
		t.Errorf("annotations %v; want wait-until an hour on and waiter gw-1", made.Annotations)
	}
	var list gpuwardenv1alpha1.GPUAllocationList
	if err := c.List(context.Background(), &list); err != nil || len(list.Items) != 0 {
		t.Errorf("left behind after the caller went away: %d allocations (%v)", len(list.Items), err)
	}
}

// interceptCreate is c, calling seen with each allocation it creates.
func interceptCreate(c client.Client, seen func(*gpuwardenv1alpha1.GPUAllocation)) client.Client {
	return createHook{Client: c, seen: seen}
}

type createHook struct {
	client.Client
	seen func(*gpuwardenv1alpha1.GPUAllocation)
}

func (h createHook) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	err := h.Client.Create(ctx, obj, opts...)
	if a, ok := obj.(*gpuwardenv1alpha1.GPUAllocation); ok && err == nil {
		h.seen(a)
	}
	return err
}

// tells records the notices told.
type tells struct {
	mu sync.Mutex
	n  []notify.Notice
}

func (t *tells) Tell(_ context.Context, n notify.Notice) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n = append(t.n, n)
}

func (t *tells) all() []notify.Notice {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]notify.Notice(nil), t.n...)
}

// TestGatewayAllocatorTellsAWaitedRequestStartedOrGaveUp: a request that waited long
// enough is told through the user's channels that it got its GPUs; one given up is told
// so, with its place; a quick bind tells nothing.
func TestGatewayAllocatorTellsAWaitedRequestStartedOrGaveUp(t *testing.T) {
	for _, tc := range []struct {
		name   string
		after  time.Duration
		status gpuwardenv1alpha1.GPUAllocationStatus
		want   string // the notice's type; none when empty
		says   string
	}{
		{"bound after a long wait", time.Nanosecond, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseBound, DevicesSummary: "2",
			Devices: []gpuwardenv1alpha1.BoundDevice{{Index: 2, UUID: "GPU-2"}}}, notify.TypeQueueStarted, "Your request got GPU 2 after waiting"},
		{"bound at once", time.Hour, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseBound, DevicesSummary: "2",
			Devices: []gpuwardenv1alpha1.BoundDevice{{Index: 2, UUID: "GPU-2"}}}, "", ""},
		{"given up", time.Nanosecond, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhasePending, Reason: gpuwardenv1alpha1.ReasonNoCapacity,
			Queue: &gpuwardenv1alpha1.QueueStatus{Position: 1, Waiting: 1}}, notify.TypeQueueGaveUp, "number 1 of 1 waiting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, c := newGatewayAllocator(t)
			told := &tells{}
			g.Notices, g.NoticeAfter = told, tc.after
			decideAs(t, c, tc.status)
			_, _, _ = g.Allocate(context.Background(), "alice", gateway.GPURequest{Count: 1}, "train", gpuwardenv1alpha1.ContainerTypeDocker)
			got := told.all()
			if tc.want == "" {
				if len(got) != 0 {
					t.Errorf("told %+v, want nothing", got)
				}
				return
			}
			if len(got) != 1 || got[0].Type != tc.want || got[0].User != "alice" || got[0].Container != "train" || !strings.Contains(got[0].Message, tc.says) {
				t.Errorf("told %+v, want one %s to alice about train saying %q", got, tc.want, tc.says)
			}
		})
	}
}

package containers

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

func stopPolicy() *gpuwardenv1alpha1.ContainerPolicy {
	return &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "strict"},
		Spec: gpuwardenv1alpha1.ContainerPolicySpec{OnUnallocatedGPU: gpuwardenv1alpha1.UnallocatedGPUStop}}
}

func (e *containerTest) stopped(id string) bool {
	return slices.ContainsFunc(e.engine.Calls(), func(call string) bool { return strings.HasPrefix(call, "stop "+id) })
}

func (e *containerTest) events(reason string) []string {
	var out []string
	for len(e.rec.Events) > 0 {
		if ev := <-e.rec.Events; strings.Contains(ev, reason) {
			out = append(out, ev)
		}
	}
	return out
}

// A user's own Manual allocation naming another user's container is never attached to it:
// the container runs on within its owner's allocation, is not stopped under
// onUnallocatedGPU: Stop, and no detection blames its owner; the allocation says why.
func TestAnAllocationNamesOnlyItsOwnUsersContainers(t *testing.T) {
	alices := testutil.MakeAllocation("alice-1").User("alice").Node("n1").Bound("GPU-0").Obj()
	bobs := testutil.MakeAllocation("bob-1").User("bob").Node("n1").Bound("GPU-1").Obj()
	bobs.Spec.Source, bobs.Spec.ContainerID = gpuwardenv1alpha1.SourceManual, idA
	e := newContainerTest(t, []client.Object{stopPolicy(), alices, bobs},
		running(idA, map[string]string{gpuwardenv1alpha1.LabelUser: "alice", gpuwardenv1alpha1.LabelAllocation: "alice-1"}, "GPU-0"))
	for range 2 {
		e.reconcile(idA)
	}
	if a, _ := e.allocation("bob-1"); a.Status.ContainerID != "" {
		t.Errorf("bob's allocation was attached to alice's container")
	}
	if a, _ := e.allocation("alice-1"); a.Status.ContainerID != idA {
		t.Errorf("alice's container is not attached to her own allocation")
	}
	if e.stopped(idA) {
		t.Errorf("alice's container was stopped: %v", e.engine.Calls())
	}
	if n := len(e.records(audit.TypeDetectionUnmanagedContainer)); n != 0 {
		t.Errorf("%d detection records blame alice", n)
	}
	if evs := e.events(reasons.EventNotAttached); len(evs) != 1 || !strings.Contains(evs[0], "belongs to alice, not to bob") {
		t.Errorf("NotAttached Events: %q", evs)
	}

	// One attached by an earlier version is detached.
	bobs, _ = e.allocation("bob-1")
	bobs.Status.ContainerID = idA
	if err := e.c.Status().Update(t.Context(), bobs); err != nil {
		t.Fatal(err)
	}
	e.reconcile(idA)
	if a, _ := e.allocation("bob-1"); a.Status.ContainerID != "" {
		t.Errorf("bob's allocation is still attached to alice's container")
	}
}

// gatewayContainer is alice's container made through the gateway on GPU-1, its allocation
// released (its hold passed while it was stopped), running again: restarted by the engine's
// restart policy, or started straight at the engine.
func gatewayContainer() (docker.Container, *gpuwardenv1alpha1.GPUAllocation) {
	c := running(idA, map[string]string{gpuwardenv1alpha1.LabelUser: "alice", gpuwardenv1alpha1.LabelManaged: "true",
		gpuwardenv1alpha1.LabelAllocation: "gateway-a"}, "GPU-1")
	old := testutil.MakeAllocation("gateway-a").User("alice").Node("n1").Bound("GPU-1").Obj()
	old.Spec.Source = gpuwardenv1alpha1.SourceGateway
	old.CreationTimestamp = metav1.NewTime(t0.Add(-3 * time.Hour))
	old.Status.Phase, old.Status.ContainerID = gpuwardenv1alpha1.PhaseReleased, idA
	return c, old
}

// A GPU container started outside the gateway on a GPU another allocation holds is stopped
// at once, whatever onUnallocatedGPU says, with an Event, a detection record for its owner and
// the reason; none is adopted for it.
func TestAStartOutsideTheGatewayOnAnotherUsersGPUIsStopped(t *testing.T) {
	c, old := gatewayContainer()
	bobs := testutil.MakeAllocation("gateway-b").User("bob").Node("n1").Bound("GPU-1").Obj()
	bobs.Status.ContainerID = idB
	e := newContainerTest(t, []client.Object{old, bobs}, c,
		running(idB, map[string]string{gpuwardenv1alpha1.LabelUser: "bob", gpuwardenv1alpha1.LabelAllocation: "gateway-b"}, "GPU-1"))
	e.reconcile(idA)
	e.reconcile(idA) // looked at again before the store hears of the stop: said and done once
	if !e.stopped(idA) || e.stopped(idB) {
		t.Fatalf("engine calls %v: want alice's container stopped, bob's not", e.engine.Calls())
	}
	if _, ok := e.allocation(adoptedName(idA)); ok {
		t.Errorf("an allocation was adopted for alice's container on bob's GPU")
	}
	recs := e.records(audit.TypeDetectionUnmanagedContainer)
	if len(recs) != 1 || recs[0].User != "alice" {
		t.Errorf("detection records: %+v", recs)
	}
	evs := e.events(reasons.EventUnallocatedGPU)
	if len(evs) != 1 || !strings.Contains(evs[0], "GPU-1 is held by allocation gateway-b of bob") || !strings.Contains(evs[0], reasons.DeviceHeld) {
		t.Errorf("UnallocatedGPU Events: %q", evs)
	}
}

// The same start on a free GPU is adopted for its owner, and runs on.
func TestAStartOutsideTheGatewayOnAFreeGPUIsAdopted(t *testing.T) {
	c, old := gatewayContainer()
	e := newContainerTest(t, []client.Object{old}, c)
	e.reconcile(idA)
	if e.stopped(idA) {
		t.Fatalf("stopped on a free GPU: %v", e.engine.Calls())
	}
	a, ok := e.allocation(adoptedName(idA))
	if !ok || a.Spec.User != "alice" || strings.Join(a.Spec.Request.Devices, ",") != "GPU-1" {
		t.Fatalf("adopted: %v %+v", ok, a)
	}

	// Refused (a limit): a container the gateway made is stopped, as a start through the
	// gateway would have been refused, though the policy only records.
	a.Status.Phase, a.Status.Reason, a.Status.Message = gpuwardenv1alpha1.PhaseRejected, gpuwardenv1alpha1.ReasonQuotaExceeded, "alice holds 1/1 gpu-equivalents"
	if err := e.c.Status().Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	e.reconcile(idA)
	if !e.stopped(idA) {
		t.Errorf("a gateway container refused its GPUs runs on: %v", e.engine.Calls())
	}
}

// A stopped container whose GPUs a start through the gateway has just held again (bound
// since it stopped, the engine about to run it) keeps them for gpuHoldAfterStop from the
// binding, not from the stop long ago.
func TestAHoldCountsFromTheBindingOfAStart(t *testing.T) {
	minute := gpuwardenv1alpha1.Duration("1m")
	hold := &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "hold"},
		Spec: gpuwardenv1alpha1.ContainerPolicySpec{GPUHoldAfterStop: &minute}}
	c, old := gatewayContainer()
	c.State, c.FinishedAt = docker.StateExited, t0.Add(-2*time.Hour)
	again := testutil.MakeAllocation("gateway-again").User("alice").Node("n1").Bound("GPU-1").Obj()
	again.Spec.Source, again.Spec.ContainerID = gpuwardenv1alpha1.SourceGateway, idA
	boundAt := metav1.NewTime(t0)
	again.Status.BoundTime = &boundAt
	e := newContainerTest(t, []client.Object{hold, old, again}, c)
	if res := e.reconcile(idA); res.RequeueAfter <= 0 || res.RequeueAfter > time.Minute {
		t.Errorf("requeued after %s, want within the minute's hold", res.RequeueAfter)
	}
	if a, _ := e.allocation("gateway-again"); a.Annotations[gpuwardenv1alpha1.AnnotationRelease] != "" || a.Status.ContainerID != idA {
		t.Fatalf("the GPUs a start just held again: release %q, container %q", a.Annotations[gpuwardenv1alpha1.AnnotationRelease], a.Status.ContainerID)
	}
	e.clock.Step(2 * time.Minute) // never started after all: the hold passes
	e.reconcile(idA)
	if a, _ := e.allocation("gateway-again"); a.Annotations[gpuwardenv1alpha1.AnnotationRelease] == "" {
		t.Errorf("a minute's hold from the binding has passed and the GPUs are kept")
	}
}

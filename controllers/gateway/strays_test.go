package gateway

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestGatewayStraysReleasesOnlyAllocationsWhoseContainerNeverCame: an old gateway
// allocation without a container, with none of its name on the engine, is released; a
// young one, one whose container exists (seen or not yet attached), a Manual one, another
// node's, and any at all while the engine is out of view are left alone.
func TestGatewayStraysReleasesOnlyAllocationsWhoseContainerNeverCame(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	alloc := func(name, container string, age time.Duration, mod func(*gpuwardenv1alpha1.GPUAllocation)) *gpuwardenv1alpha1.GPUAllocation {
		a := testutil.MakeAllocation(name).Created(now.Add(-age)).User("alice").Node("n1").Source(gpuwardenv1alpha1.SourceGateway).
			Container(container).Phase(gpuwardenv1alpha1.PhaseBound).Obj()
		if mod != nil {
			mod(a)
		}
		return a
	}
	objs := []client.Object{
		alloc("stray", "never-made", 10*time.Minute, nil),
		alloc("stray-pending", "never-made-2", 10*time.Minute, func(a *gpuwardenv1alpha1.GPUAllocation) { a.Status.Phase = gpuwardenv1alpha1.PhasePending }),
		alloc("young", "being-made", 30*time.Second, nil),
		alloc("exists", "made", 10*time.Minute, nil),
		alloc("attached", "gone-but-followed", 10*time.Minute, func(a *gpuwardenv1alpha1.GPUAllocation) { a.Status.ContainerID = "abc" }),
		alloc("manual", "", 10*time.Minute, func(a *gpuwardenv1alpha1.GPUAllocation) { a.Spec.Source = gpuwardenv1alpha1.SourceManual }),
		alloc("other-node", "never-made-3", 10*time.Minute, func(a *gpuwardenv1alpha1.GPUAllocation) { a.Spec.NodeName = "n2" }),
		alloc("released", "never-made-4", 10*time.Minute, func(a *gpuwardenv1alpha1.GPUAllocation) { a.Status.Phase = gpuwardenv1alpha1.PhaseReleased }),
		// Waiting as long as its create asked, for this process's gateway: left alone.
		alloc("waits-long", "queued", 3*time.Hour, func(a *gpuwardenv1alpha1.GPUAllocation) { waiting(a, "gw-this", now.Add(5*time.Hour)) }),
		// Its wait is over, or the gateway that waited for it is gone: released.
		alloc("wait-over", "queued-2", 3*time.Hour, func(a *gpuwardenv1alpha1.GPUAllocation) { waiting(a, "gw-this", now.Add(-2*time.Minute)) }),
		alloc("waiter-gone", "queued-3", 2*time.Minute, func(a *gpuwardenv1alpha1.GPUAllocation) { waiting(a, "gw-before", now.Add(5*time.Hour)) }),
		// Waiting, its gateway gone, named like someone else's running container: released.
		alloc("waiter-gone-named", "made", 2*time.Minute, func(a *gpuwardenv1alpha1.GPUAllocation) { waiting(a, "gw-before", now.Add(5*time.Hour)) }),
		// Bound a moment ago after a long wait: its create goes on now.
		alloc("bound-after-wait", "being-made-2", 3*time.Hour, func(a *gpuwardenv1alpha1.GPUAllocation) {
			waiting(a, "gw-this", now.Add(5*time.Hour))
			a.Status.Phase, a.Status.BoundTime = gpuwardenv1alpha1.PhaseBound, &metav1.Time{Time: now.Add(-20 * time.Second)}
		}),
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).WithStatusSubresource(objs...).Build()
	store := containerstore.New()
	store.Replace([]docker.Container{{ID: "1", Name: "/made", State: docker.StateRunning}}, now)
	g := &Strays{Client: c, Store: store, Actions: &actions.Actions{Client: c}, NodeName: "n1", Clock: clocktesting.NewFakePassiveClock(now), After: 4 * time.Minute,
		Waiter: "gw-this"}
	released := func() map[string]string {
		var list gpuwardenv1alpha1.GPUAllocationList
		if err := c.List(context.Background(), &list); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, a := range list.Items {
			if r := a.Annotations[gpuwardenv1alpha1.AnnotationRelease]; r != "" {
				out[a.Name] = r
			}
		}
		return out
	}

	store.SetSynced(false) // the engine out of view: nothing is known to be missing
	if err := g.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := released(); len(got) != 0 {
		t.Fatalf("released during an outage: %v", got)
	}
	store.SetSynced(true)
	if err := g.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := released()
	want := []string{"stray", "stray-pending", "wait-over", "waiter-gone", "waiter-gone-named"}
	for _, name := range want {
		if got[name] != reasons.ReleaseNeverCreated {
			t.Errorf("%s released %q, want %q", name, got[name], reasons.ReleaseNeverCreated)
		}
	}
	if len(got) != len(want) {
		t.Errorf("released %v, want only %v", got, want)
	}
}

// waiting makes a a request that waits for its GPUs, for gateway waiter until until.
func waiting(a *gpuwardenv1alpha1.GPUAllocation, waiter string, until time.Time) {
	a.Status.Phase = gpuwardenv1alpha1.PhasePending
	a.Annotations = map[string]string{gpuwardenv1alpha1.AnnotationWaiter: waiter, gpuwardenv1alpha1.AnnotationWaitUntil: until.Format(time.RFC3339)}
}

package containers

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/docker/dockertest"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

type unusedTest struct {
	t     *testing.T
	u     *Unused
	c     client.Client
	store *containerstore.Store
	clock *clocktesting.FakeClock
	rec   *events.FakeRecorder
	audit *testutil.AuditRecorder
}

func newUnusedTest(t *testing.T, objs []client.Object, containers ...docker.Container) *unusedTest {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).WithStatusSubresource(&gpuwardenv1alpha1.GPUAllocation{}).Build()
	clk := clocktesting.NewFakeClock(t0)
	store := containerstore.New()
	store.Replace(containers, t0)
	rec := events.NewFakeRecorder(100)
	al := &testutil.AuditRecorder{}
	acts := &actions.Actions{Client: c, Engine: dockertest.New(), Store: store, Groups: resolve.StaticGroups{}, Clock: clk, Recorder: rec, Audit: al}
	return &unusedTest{t: t, u: &Unused{Client: c, Store: store, Actions: acts, NodeName: "n1", Clock: clk}, c: c, store: store, clock: clk, rec: rec, audit: al}
}

func (e *unusedTest) sweep() {
	e.t.Helper()
	if err := e.u.Sweep(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// released are the allocations asked back, with why.
func (e *unusedTest) released() map[string]string {
	e.t.Helper()
	var list gpuwardenv1alpha1.GPUAllocationList
	if err := e.c.List(context.Background(), &list); err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range list.Items {
		if r := a.Annotations[gpuwardenv1alpha1.AnnotationRelease]; r != "" {
			out[a.Name] = r
		}
	}
	return out
}

func (e *unusedTest) events() []string {
	var out []string
	for {
		select {
		case ev := <-e.rec.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func manual(name string, bound time.Time) *testutil.AllocationWrapper {
	return testutil.MakeAllocation(name).Created(bound).User("alice").Node("n1").Source(gpuwardenv1alpha1.SourceManual).GPUs(1).
		Bound("GPU-0").BoundAt(bound)
}

// TestUnusedManualAllocationIsAnnouncedThenReleased: a user's own allocation that no
// container uses is announced once (an Event, when it goes back) and released when
// releaseUnusedAfter (1h by default) has passed, with an Event and the reason its release
// record carries; while the engine is out of view nothing is released.
func TestUnusedManualAllocationIsAnnouncedThenReleased(t *testing.T) {
	e := newUnusedTest(t, []client.Object{manual("alice-1", t0).Obj()})
	e.sweep()
	if got := e.released(); len(got) != 0 {
		t.Fatalf("released at once: %v", got)
	}
	evs := e.events()
	if len(evs) != 1 || !strings.Contains(evs[0], reasons.EventReleaseScheduled) || !strings.Contains(evs[0], "go back at 2026-11-20T10:00:00Z") ||
		!strings.Contains(evs[0], "releaseUnusedAfter, set by gpuwarden's default") || !strings.Contains(evs[0], "docker run --label gpuwarden.io/allocation=alice-1") {
		t.Fatalf("events after the first sweep: %q; want one ReleaseScheduled naming the time, the limit and how to use it", evs)
	}
	e.clock.Step(30 * time.Minute)
	e.sweep()
	if evs := e.events(); len(evs) != 0 {
		t.Errorf("announced again: %q", evs)
	}
	e.clock.Step(31 * time.Minute)
	e.store.SetSynced(false)
	e.sweep()
	if got := e.released(); len(got) != 0 {
		t.Fatalf("released while the engine is out of view: %v", got)
	}
	e.store.SetSynced(true)
	e.sweep()
	got := e.released()["alice-1"]
	if !strings.HasPrefix(got, "unused: no container used it in the 1h1m0s since it was bound; releaseUnusedAfter is 1h0m0s (gpuwarden's default)") {
		t.Fatalf("release reason %q", got)
	}
	evs = e.events()
	if len(evs) != 1 || !strings.Contains(evs[0], reasons.EventReleasedUnused) || !strings.Contains(evs[0], "Released the GPUs of allocation alice-1 of alice") {
		t.Errorf("events at the release: %q", evs)
	}
}

// TestUnusedLeavesWhatAContainerUsesOrWillUse: only Bound Manual allocations of this node
// that no container uses (attached, or naming it by label before it is attached) and that
// are not on their way back are released; a policy's releaseUnusedAfter applies by user
// and containerType, and unlimited lifts it.
func TestUnusedLeavesWhatAContainerUsesOrWillUse(t *testing.T) {
	old := t0.Add(-2 * time.Hour)
	objs := []client.Object{
		manual("unused", old).Obj(),
		manual("attached", old).Attached(idA).Obj(),
		manual("labelled", old).Obj(),
		manual("gateway", old).Source(gpuwardenv1alpha1.SourceGateway).Obj(),
		manual("pending", old).Phase(gpuwardenv1alpha1.PhasePending).Obj(),
		manual("other-node", old).Node("n2").Obj(),
		manual("releasing", old).Annotation(gpuwardenv1alpha1.AnnotationRelease, "asked").Obj(),
		manual("bob-short", t0.Add(-15*time.Minute)).User("bob").Obj(),
		manual("carl-forever", old).User("carl").Obj(),
		testutil.MakePolicy("bob").Users("bob").ReleaseUnusedAfter(10 * time.Minute).Obj(),
		testutil.MakePolicy("carl").Users("carl").Unlimited(gpuwardenv1alpha1.PolicyLimitReleaseUnusedAfter).Obj(),
	}
	objs = append(objs, manual("named-by-bob", old).Obj())
	e := newUnusedTest(t, objs, docker.Container{ID: idB, Name: "/made", State: docker.StateCreated,
		Labels: map[string]string{gpuwardenv1alpha1.LabelUser: "alice", gpuwardenv1alpha1.LabelAllocation: "labelled"}},
		// bob's container naming alice's allocation (made at the engine) is never attached to
		// it: it does not keep it.
		docker.Container{ID: idA, Name: "/bobs", State: docker.StateRunning,
			Labels: map[string]string{gpuwardenv1alpha1.LabelUser: "bob", gpuwardenv1alpha1.LabelAllocation: "named-by-bob"}})
	e.sweep()
	got := e.released()
	if len(got) != 4 || got["unused"] == "" || got["named-by-bob"] == "" || got["releasing"] != "asked" ||
		!strings.Contains(got["bob-short"], "releaseUnusedAfter is 10m0s (ContainerPolicy bob)") {
		t.Errorf("released %v; want unused and named-by-bob (default) and bob-short (his policy's 10m), releasing left as it was", got)
	}
}

// TestUnusedUnderDryRunOnlyRecords: a DryRun policy records once what it would release.
func TestUnusedUnderDryRunOnlyRecords(t *testing.T) {
	e := newUnusedTest(t, []client.Object{manual("alice-1", t0.Add(-2*time.Hour)).Obj(),
		testutil.MakePolicy("watch").Mode(gpuwardenv1alpha1.ModeDryRun).Obj()})
	e.sweep()
	e.sweep()
	if got := e.released(); len(got) != 0 {
		t.Errorf("released under DryRun: %v", got)
	}
	would := e.audit.Of(audit.TypeLifecycleWouldRelease)
	if len(would) != 1 || would[0].User != "alice" || would[0].Details["allocation"] != "alice-1" || would[0].Details["policy"] != "watch" {
		t.Errorf("would_release records %+v; want one for alice-1 under policy watch", would)
	}
}

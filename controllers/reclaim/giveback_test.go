package reclaim

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestGiveBackStopsThenReleasesOnlyBorrowed: a borrowed allocation asked back has its
// container stopped (a paused one too) and is released only then, with the record; an
// allocation not bound as borrowed is not touched, whatever its annotations say.
func TestGiveBackStopsThenReleasesOnlyBorrowed(t *testing.T) {
	w := newSamplerWorld(t, 2)
	ctx := context.Background()
	c := w.s.Client
	paused, _ := w.engine.Container(w.ids[0])
	paused.State = docker.StatePaused
	w.engine.Put(paused, "")
	w.s.Store.Put(paused)
	for i, name := range []string{"nb-0", "nb-1"} {
		a := &gpuwardenv1alpha1.GPUAllocation{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, a); err != nil {
			t.Fatal(err)
		}
		orig := a.DeepCopy()
		a.Annotations = map[string]string{gpuwardenv1alpha1.AnnotationGiveBack: "borrowed beyond alice's quota; w-1 of bob waits for them within their quota"}
		if err := c.Patch(ctx, a, client.MergeFrom(orig)); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			orig = a.DeepCopy()
			a.Status.Borrowed = true
			if err := c.Status().Patch(ctx, a, client.MergeFrom(orig)); err != nil {
				t.Fatal(err)
			}
		}
	}
	g := &GiveBack{Client: c, Store: w.s.Store, Owners: &containerstore.Owners{}, Actions: w.s.Reclaim.Actions, Audit: w.audit, NodeName: "n1",
		Clock: w.clock, Interval: time.Second}
	if err := g.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	released := func(name string) string {
		a := &gpuwardenv1alpha1.GPUAllocation{}
		_ = c.Get(ctx, client.ObjectKey{Name: name}, a)
		return a.Annotations[gpuwardenv1alpha1.AnnotationRelease]
	}
	testutil.Eventually(t, 10*time.Second, "the borrowed allocation released", func() bool { return released("nb-0") != "" })
	if why := released("nb-0"); !strings.HasPrefix(why, "borrowed beyond alice's quota") {
		t.Errorf("release reason %q", why)
	}
	calls := w.engine.Calls()
	if !slices.ContainsFunc(calls, func(s string) bool { return strings.HasPrefix(s, "stop "+w.ids[0]) }) {
		t.Errorf("the paused container was not stopped: %q", calls)
	}
	if cur, _ := w.engine.Container(w.ids[0]); cur.State == docker.StatePaused || cur.State == docker.StateRunning {
		t.Errorf("the container still %s", cur.State)
	}
	if len(w.audit.Of(audit.TypeLifecycleGiveBack)) != 1 {
		t.Errorf("give-back records: %+v", w.audit.Of(audit.TypeLifecycleGiveBack))
	}
	doing := func(name string) bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.doing[name]
	}
	// nb-0's give-back may still be ending after its release was written.
	testutil.Eventually(t, 10*time.Second, "the give-back of nb-0 ended", func() bool { return !doing("nb-0") })
	if err := g.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	// a give-back started by the sweep is in doing until it ends
	if doing("nb-1") || released("nb-1") != "" || slices.ContainsFunc(w.engine.Calls(), func(s string) bool { return strings.HasPrefix(s, "stop "+w.ids[1]) }) {
		t.Error("an allocation not bound as borrowed was given back for its annotation")
	}
}

// TestReservationStopsAtItsStart: an allocation a reservation displaces is left running
// before the start, its owner told once; at the start it is stopped and released, with the
// record; one whose displacement names no start yet reached is not touched.
func TestReservationStopsAtItsStart(t *testing.T) {
	w := newSamplerWorld(t, 1)
	ctx := context.Background()
	c := w.s.Client
	start := w.clock.Now().Add(10 * time.Minute)
	a := &gpuwardenv1alpha1.GPUAllocation{}
	if err := c.Get(ctx, client.ObjectKey{Name: "nb-0"}, a); err != nil {
		t.Fatal(err)
	}
	orig := a.DeepCopy()
	a.Status.Displacement = &gpuwardenv1alpha1.Displacement{Reservation: "deadline", At: metav1.NewTime(start),
		Message: "GPUReservation deadline takes GPU 0 for group nlp from then"}
	if err := c.Status().Patch(ctx, a, client.MergeFrom(orig)); err != nil {
		t.Fatal(err)
	}
	g := &GiveBack{Client: c, Store: w.s.Store, Owners: &containerstore.Owners{}, Actions: w.s.Reclaim.Actions, Audit: w.audit, NodeName: "n1",
		Clock: w.clock, Interval: time.Second}
	for range 2 {
		if err := g.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.audit.Of(audit.TypeReservationDisplaced); len(got) != 1 {
		t.Errorf("warnings before the start: %+v", got)
	}
	if slices.ContainsFunc(w.engine.Calls(), func(s string) bool { return strings.HasPrefix(s, "stop ") }) {
		t.Fatal("stopped before the start")
	}
	w.clock.Step(10 * time.Minute)
	if err := g.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "released at the start", func() bool {
		got := &gpuwardenv1alpha1.GPUAllocation{}
		return c.Get(ctx, client.ObjectKey{Name: "nb-0"}, got) == nil && strings.Contains(got.Annotations[gpuwardenv1alpha1.AnnotationRelease], "reservation deadline")
	})
	if cur, _ := w.engine.Container(w.ids[0]); cur.State == docker.StateRunning {
		t.Error("still running after the start")
	}
	if got := w.audit.Of(audit.TypeLifecycleReservationStop); len(got) != 1 {
		t.Errorf("stop records: %+v", got)
	}
}

package integration

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/controllers"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestQueuePlaceTimesAndFairShare: on a full node, waiting requests carry their place, what
// is ahead, the latest start their holders' runtime limit allows (with the holder it comes
// from) and an estimate; the user with less recent use goes first although they asked
// later, and gets the first GPU that frees.
func TestQueuePlaceTimesAndFairShare(t *testing.T) {
	ctx := context.Background()
	c := allocationTest(t)
	t.Cleanup(func() { _ = c.DeleteAllOf(context.Background(), &gpuwardenv1alpha1.ContainerPolicy{}) })
	const (
		node     = "node-q"
		runtime  = 2 * time.Hour
		grace    = 30 * time.Second
		hold     = 15 * time.Minute
		sampling = 10 * time.Second
		// A holder gives its GPUs back at the latest its runtime limit, the stop's grace
		// period and a sampling round after its start, then its hold after the stop and
		// another round.
		latestEnd = runtime + grace + sampling + hold + sampling
	)
	pol := &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "queue-limits"},
		Spec: gpuwardenv1alpha1.ContainerPolicySpec{Selector: gpuwardenv1alpha1.PolicySelector{Users: []string{"qa", "qb", "qc"}},
			MaxRuntime: ptrTo(gpuwardenv1alpha1.Duration(runtime.String())), StopGracePeriod: ptrTo(gpuwardenv1alpha1.Duration(grace.String())),
			GPUHoldAfterStop: ptrTo(gpuwardenv1alpha1.Duration(hold.String()))}}
	if err := c.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(time.Now().UTC().Truncate(time.Second))
	fake, err := fakegpu.NewForNode("h100x8", node)
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, controllers.Options{NodeName: node, GPUs: gpu.NewNVML(fake), Groups: resolve.StaticGroups{}, Clock: clk, SampleInterval: sampling})
	n := len(fake.UUIDs())
	waitInventory(t, node, n)

	get := func(name string) *gpuwardenv1alpha1.GPUAllocation {
		a := &gpuwardenv1alpha1.GPUAllocation{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	create := func(name, user string, gpus int32) {
		t.Helper()
		if err := c.Create(ctx, testutil.MakeAllocation(name).User(user).Node(node).GPUs(gpus).Obj()); err != nil {
			t.Fatal(err)
		}
	}
	until := func(name, what string, ok func(*gpuwardenv1alpha1.GPUAllocation) bool) *gpuwardenv1alpha1.GPUAllocation {
		t.Helper()
		var a *gpuwardenv1alpha1.GPUAllocation
		testutil.Eventually(t, 30*time.Second, name+" "+what, func() bool {
			a = &gpuwardenv1alpha1.GPUAllocation{}
			return c.Get(ctx, client.ObjectKey{Name: name}, a) == nil && ok(a)
		})
		return a
	}
	bound := func(a *gpuwardenv1alpha1.GPUAllocation) bool { return a.Status.Phase == gpuwardenv1alpha1.PhaseBound }

	// qc used a GPU for ten hours lately; qb never did.
	create("q-c-before", "qc", 1)
	until("q-c-before", "Bound", bound)
	clk.Step(10 * time.Hour)
	if err := c.Delete(ctx, get("q-c-before")); err != nil {
		t.Fatal(err)
	}

	// qa holds every GPU: all but one now, the last one 30 minutes later.
	create("q-hold-many", "qa", int32(n-1))
	until("q-hold-many", "Bound", bound)
	clk.Step(30 * time.Minute)
	create("q-hold-one", "qa", 1)
	first := until("q-hold-one", "Bound", bound)
	many := get("q-hold-many")

	// qc asks first, qb a minute later: qb goes first (less recent use over the same share).
	create("q-wait-c", "qc", 1)
	clk.Step(time.Minute)
	create("q-wait-b", "qb", 1)
	queued := func(pos int32) func(*gpuwardenv1alpha1.GPUAllocation) bool {
		return func(a *gpuwardenv1alpha1.GPUAllocation) bool {
			return a.Status.Phase == gpuwardenv1alpha1.PhasePending && a.Status.Queue != nil && a.Status.Queue.Position == pos && a.Status.Queue.Waiting == 2
		}
	}
	b := until("q-wait-b", "first of two in the queue", queued(1))
	cw := until("q-wait-c", "second of two in the queue", queued(2))
	if !slices.Equal(cw.Status.Queue.Ahead, []string{"q-wait-b"}) || len(b.Status.Queue.Ahead) != 0 {
		t.Errorf("ahead: b %v, c %v; want none and [q-wait-b]", b.Status.Queue.Ahead, cw.Status.Queue.Ahead)
	}
	// The first GPU to free at the latest is q-hold-many's (bound 30 minutes before
	// q-hold-one).
	wantB := many.Status.BoundTime.Add(latestEnd)
	if q := b.Status.Queue; q.LatestStart == nil || !q.LatestStart.Time.Equal(wantB) || q.BlockedBy != "q-hold-many" {
		t.Errorf("q-wait-b queue = %+v; want latestStart %v blocked by q-hold-many", q, wantB)
	}
	// q-wait-c starts when the second holder ends (q-hold-many's GPUs go to q-wait-b first
	// only in part: it frees n-1 GPUs at once, so both start then).
	if q := cw.Status.Queue; q.LatestStart == nil || q.LatestStart.After(first.Status.BoundTime.Add(latestEnd)) {
		t.Errorf("q-wait-c queue = %+v; want a latest start no later than q-hold-one's end", q)
	}
	// Why b is ahead, as explain reads it: the same priority, a lower fair share (qc's ten
	// gpu-hours, decayed a little, over the node's eight GPUs; qb's none).
	rank := func(fairShare string) float64 {
		v, _, _ := strings.Cut(fairShare, ":")
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return -1
		}
		return f
	}
	if !strings.HasPrefix(b.Status.Queue.FairShare, "0.00: recent use 0.0 gpu-h") || rank(cw.Status.Queue.FairShare) < 1.2 ||
		!strings.Contains(cw.Status.Queue.FairShare, "gpu-h (half-life 168h0m0s) / quota 8 (no gpuEquivalents limit: the node's GPUs)") ||
		b.Status.Queue.Priority != cw.Status.Queue.Priority {
		t.Errorf("fair shares: b %q (priority %d), c %q (priority %d); want 0.00 against 1.25 at one priority",
			b.Status.Queue.FairShare, b.Status.Queue.Priority, cw.Status.Queue.FairShare, cw.Status.Queue.Priority)
	}
	for _, a := range []*gpuwardenv1alpha1.GPUAllocation{b, cw} {
		if q := a.Status.Queue; q.EstimatedStart == nil || q.LatestStart != nil && q.EstimatedStart.After(q.LatestStart.Time) || q.Message == "" {
			t.Errorf("%s queue = %+v; want an estimate no later than the latest start, and a message", a.Name, q)
		}
	}

	// The GPU that frees goes to qb, whose request is younger; qc moves up.
	if err := c.Delete(ctx, first); err != nil {
		t.Fatal(err)
	}
	until("q-wait-b", "Bound", bound)
	cw = until("q-wait-c", "first in the queue", func(a *gpuwardenv1alpha1.GPUAllocation) bool {
		return a.Status.Queue != nil && a.Status.Queue.Position == 1 && a.Status.Queue.Waiting == 1
	})
	if got := get("q-wait-b"); got.Status.Queue != nil {
		t.Errorf("a Bound allocation keeps its queue status: %+v", got.Status.Queue)
	}
	t.Logf("q-wait-c: %s", cw.Status.Queue.Message)
}

func ptrTo[T any](v T) *T { return &v }

package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
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

// allocWorld is a node of fakegpu GPUs with a manager on a fake clock.
type allocWorld struct {
	t    *testing.T
	c    client.Client
	clk  *clocktesting.FakeClock
	node string
	n    int
}

func newAllocWorld(t *testing.T, node string, quotas ...*gpuwardenv1alpha1.GPUQuota) *allocWorld {
	ctx := context.Background()
	c := allocationTest(t)
	for _, q := range quotas {
		if err := c.Create(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	clk := clocktesting.NewFakeClock(time.Now().UTC().Truncate(time.Second))
	fake, err := fakegpu.NewForNode("h100x8", node)
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, controllers.Options{NodeName: node, GPUs: gpu.NewNVML(fake), Groups: resolve.StaticGroups{}, Clock: clk})
	waitInventory(t, node, len(fake.UUIDs()))
	return &allocWorld{t: t, c: c, clk: clk, node: node, n: len(fake.UUIDs())}
}

func (w *allocWorld) create(name, user string, gpus int32) {
	w.t.Helper()
	if err := w.c.Create(context.Background(), testutil.MakeAllocation(name).User(user).Node(w.node).GPUs(gpus).Obj()); err != nil {
		w.t.Fatal(err)
	}
}

func (w *allocWorld) until(name, what string, ok func(*gpuwardenv1alpha1.GPUAllocation) bool) *gpuwardenv1alpha1.GPUAllocation {
	w.t.Helper()
	var a *gpuwardenv1alpha1.GPUAllocation
	testutil.Eventually(w.t, 30*time.Second, name+" "+what, func() (bool, string) {
		a = &gpuwardenv1alpha1.GPUAllocation{}
		if err := w.c.Get(context.Background(), client.ObjectKey{Name: name}, a); err != nil {
			return false, err.Error()
		}
		return ok(a), string(a.Status.Phase) + " " + a.Status.Reason + ": " + a.Status.Message
	})
	return a
}

func (w *allocWorld) quota(name string) *gpuwardenv1alpha1.GPUQuota {
	q := &gpuwardenv1alpha1.GPUQuota{}
	if err := w.c.Get(context.Background(), client.ObjectKey{Name: name}, q); err != nil {
		w.t.Fatal(err)
	}
	return q
}

func (w *allocWorld) remove(name string) {
	w.t.Helper()
	a := &gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := w.c.Delete(context.Background(), a); err != nil {
		w.t.Fatal(err)
	}
}

func isBound(a *gpuwardenv1alpha1.GPUAllocation) bool {
	return a.Status.Phase == gpuwardenv1alpha1.PhaseBound
}

func qty(s string) *resource.Quantity { q := resource.MustParse(s); return &q }

// TestBudgetRefusesPastIt: what a user held counts against their GPU-hour budget (whole
// GPUs by the hour, what they hold now included); the quota's status shows the use and
// remembers the 80 % and 100 % notices as told; past the budget a request is refused
// with BudgetExceeded, naming use, limit, the quota and when enough frees up; a request
// before that binds.
func TestBudgetRefusesPastIt(t *testing.T) {
	w := newAllocWorld(t, "node-budget", &gpuwardenv1alpha1.GPUQuota{ObjectMeta: metav1.ObjectMeta{Name: "budget-b"},
		Spec: gpuwardenv1alpha1.GPUQuotaSpec{Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: "ba"}},
			Limits: gpuwardenv1alpha1.QuotaLimits{GPUEquivalents: qty("8")},
			Budget: &gpuwardenv1alpha1.QuotaBudget{GPUHours: qty("10"), Window: "7d"}}})
	w.create("b-1", "ba", 2)
	w.until("b-1", "Bound", isBound)
	w.clk.Step(4 * time.Hour) // 8 gpu-hours: 80 %
	w.remove("b-1")
	w.create("b-2", "ba", 1)
	w.until("b-2", "Bound", isBound)
	testutil.Eventually(t, 30*time.Second, "the quota shows 80 % told", func() (bool, string) {
		q := w.quota("budget-b")
		for _, u := range q.Status.Usage {
			if u.User == "ba" && u.Budget != nil {
				return u.Budget.Told == 80 && u.Budget.GPUHours == "10" && u.Budget.Window == "7d" && u.Budget.From == "GPUQuota budget-b", u.Budget.UsedGPUHours + " told " + string(rune('0'+u.Budget.Told/10))
			}
		}
		return false, "no budget in the status"
	})
	w.clk.Step(2 * time.Hour) // b-2 held 2 h: 10 gpu-hours
	w.create("b-3", "ba", 1)
	a := w.until("b-3", "Rejected", func(a *gpuwardenv1alpha1.GPUAllocation) bool {
		return a.Status.Phase == gpuwardenv1alpha1.PhaseRejected
	})
	if a.Status.Reason != gpuwardenv1alpha1.ReasonBudgetExceeded ||
		!strings.HasPrefix(a.Status.Message, "ba used 10 of a budget of 10 gpu-hours in the last 7d (GPUQuota budget-b); enough frees up at ") {
		t.Errorf("past the budget: %s: %s", a.Status.Reason, a.Status.Message)
	}
	testutil.Eventually(t, 30*time.Second, "the quota shows 100 % told", func() bool {
		for _, u := range w.quota("budget-b").Status.Usage {
			if u.User == "ba" && u.Budget != nil && u.Budget.Told == 100 {
				return true
			}
		}
		return false
	})
}

// TestBorrowingAndGivingBack: a user may borrow beyond their quota while GPUs are free (the
// allocation says borrowed); another user's request within their quota that does not fit
// has the borrowed GPUs asked back (the fewest, the latest bound first), binds once they
// are released, and a new borrowing request waits behind it.
func TestBorrowingAndGivingBack(t *testing.T) {
	w := newAllocWorld(t, "node-borrow",
		&gpuwardenv1alpha1.GPUQuota{ObjectMeta: metav1.ObjectMeta{Name: "lender-l"},
			Spec: gpuwardenv1alpha1.GPUQuotaSpec{Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: "la"}},
				Limits: gpuwardenv1alpha1.QuotaLimits{GPUEquivalents: qty("2")}, Borrowing: &gpuwardenv1alpha1.QuotaBorrowing{GPUEquivalents: qty("7")}}},
		&gpuwardenv1alpha1.GPUQuota{ObjectMeta: metav1.ObjectMeta{Name: "owner-o"},
			Spec: gpuwardenv1alpha1.GPUQuotaSpec{Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: "lo"}},
				Limits: gpuwardenv1alpha1.QuotaLimits{GPUEquivalents: qty("4")}}})
	ctx := context.Background()
	w.create("l-own", "la", 2)
	if a := w.until("l-own", "Bound", isBound); a.Status.Borrowed {
		t.Error("an allocation within quota says borrowed")
	}
	w.clk.Step(time.Minute)
	w.create("l-borrow-a", "la", 3)
	w.until("l-borrow-a", "Bound, borrowed", func(a *gpuwardenv1alpha1.GPUAllocation) bool { return isBound(a) && a.Status.Borrowed })
	w.clk.Step(time.Minute)
	w.create("l-borrow-b", "la", 3) // every GPU held now
	w.until("l-borrow-b", "Bound, borrowed", func(a *gpuwardenv1alpha1.GPUAllocation) bool { return isBound(a) && a.Status.Borrowed })
	w.create("l-too-much", "la", 2) // 10 > 2 + 7
	if a := w.until("l-too-much", "Rejected", func(a *gpuwardenv1alpha1.GPUAllocation) bool {
		return a.Status.Phase == gpuwardenv1alpha1.PhaseRejected
	}); !strings.Contains(a.Status.Message, "beyond the 7 they may borrow (GPUQuota lender-l)") {
		t.Errorf("beyond quota and borrowing: %s", a.Status.Message)
	}
	testutil.Eventually(t, 30*time.Second, "the quota shows what is borrowed", func() bool {
		for _, u := range w.quota("lender-l").Status.Usage {
			if u.User == "la" {
				return u.BorrowedGPUEquivalents == "6" && u.GPUEquivalentsRounded == "8"
			}
		}
		return false
	})

	// lo asks for 2 within their quota: the latest borrowing (l-borrow-b) is asked back,
	// not l-borrow-a, and not la's own.
	w.create("o-want", "lo", 2)
	want := w.until("o-want", "waiting for borrowed GPUs", func(a *gpuwardenv1alpha1.GPUAllocation) bool {
		return a.Status.Reason == gpuwardenv1alpha1.ReasonNoCapacity && strings.Contains(a.Status.Message, "borrowed GPUs are being given back for it (l-borrow-b")
	})
	// Its latest start is the give-back's: a checkpoint hook's default timeout (no container
	// seen here), the default grace period and a round, not the borrowers' runtime.
	if q := want.Status.Queue; q == nil || q.LatestStart == nil || q.LatestStart.After(w.clk.Now().Add(10*time.Minute)) {
		t.Errorf("o-want's place: %+v; want a latest start within the give-back's bound", q)
	}
	asked := w.until("l-borrow-b", "asked back", func(a *gpuwardenv1alpha1.GPUAllocation) bool {
		return a.Annotations[gpuwardenv1alpha1.AnnotationGiveBack] != ""
	})
	if why := asked.Annotations[gpuwardenv1alpha1.AnnotationGiveBack]; !strings.Contains(why, "o-want of lo waits for them within their quota") {
		t.Errorf("give-back reason: %q", why)
	}
	for _, name := range []string{"l-borrow-a", "l-own"} {
		a := &gpuwardenv1alpha1.GPUAllocation{}
		if err := w.c.Get(ctx, client.ObjectKey{Name: name}, a); err != nil || a.Annotations[gpuwardenv1alpha1.AnnotationGiveBack] != "" {
			t.Errorf("%s asked back too: %v %v", name, a.Annotations, err)
		}
	}
	// A new borrowing request waits behind the request within its quota.
	w.create("l-borrow-c", "la", 1)
	w.until("l-borrow-c", "waiting behind a request within its quota", func(a *gpuwardenv1alpha1.GPUAllocation) bool {
		return a.Status.Reason == gpuwardenv1alpha1.ReasonNoCapacity && strings.Contains(a.Status.Message, "would borrow beyond its user's quota")
	})
	// The node gives them back (as its give-back sweep does after the checkpoint and stop).
	orig := asked.DeepCopy()
	asked.Annotations[gpuwardenv1alpha1.AnnotationRelease] = "given back: test"
	if err := w.c.Patch(ctx, asked, client.MergeFrom(orig)); err != nil {
		t.Fatal(err)
	}
	w.until("o-want", "Bound", func(a *gpuwardenv1alpha1.GPUAllocation) bool { return isBound(a) && !a.Status.Borrowed })
	w.until("l-borrow-c", "Bound, borrowed, on the GPU left", func(a *gpuwardenv1alpha1.GPUAllocation) bool { return isBound(a) && a.Status.Borrowed })
}

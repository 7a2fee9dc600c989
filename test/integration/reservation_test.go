package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// reserve creates an admin's reservation of devices for users from start for length.
func (w *allocWorld) reserve(name string, devices []string, users []string, start time.Time, length time.Duration, displace gpuwardenv1alpha1.Displace) {
	w.t.Helper()
	r := &gpuwardenv1alpha1.GPUReservation{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
			gpuwardenv1alpha1.AnnotationBookedBy: "admin", gpuwardenv1alpha1.AnnotationBookedByAdmin: "true"}},
		Spec: gpuwardenv1alpha1.GPUReservationSpec{NodeName: w.node, Request: gpuwardenv1alpha1.AllocationRequest{Devices: devices},
			Start: metav1.NewTime(start), End: metav1.NewTime(start.Add(length)), Displace: displace},
	}
	for _, u := range users {
		r.Spec.Subjects = append(r.Spec.Subjects, gpuwardenv1alpha1.Subject{Kind: gpuwardenv1alpha1.SubjectUser, Name: u})
	}
	if err := w.c.Create(context.Background(), r); err != nil {
		w.t.Fatal(err)
	}
}

// reservationUntil waits until the reservation satisfies ok.
func (w *allocWorld) reservationUntil(name, what string, ok func(*gpuwardenv1alpha1.GPUReservation) bool) *gpuwardenv1alpha1.GPUReservation {
	w.t.Helper()
	var r *gpuwardenv1alpha1.GPUReservation
	testutil.Eventually(w.t, 30*time.Second, name+" "+what, func() (bool, string) {
		r = &gpuwardenv1alpha1.GPUReservation{}
		if err := w.c.Get(context.Background(), client.ObjectKey{Name: name}, r); err != nil {
			return false, err.Error()
		}
		return ok(r), string(r.Status.Phase) + " " + r.Status.Reason + ": " + r.Status.Message
	})
	return r
}

// poke wakes the allocator (an allocation's annotation changes) after the clock moved.
func (w *allocWorld) poke(name string) {
	w.t.Helper()
	a := &gpuwardenv1alpha1.GPUAllocation{}
	if err := w.c.Get(context.Background(), client.ObjectKey{Name: name}, a); err != nil {
		w.t.Fatal(err)
	}
	orig := a.DeepCopy()
	if a.Annotations == nil {
		a.Annotations = map[string]string{}
	}
	a.Annotations["test.gpuwarden.io/poke"] = w.clk.Now().String()
	if err := w.c.Patch(context.Background(), a, client.MergeFrom(orig)); err != nil {
		w.t.Fatal(err)
	}
}

func phaseIs(p gpuwardenv1alpha1.ReservationPhase) func(*gpuwardenv1alpha1.GPUReservation) bool {
	return func(r *gpuwardenv1alpha1.GPUReservation) bool { return r.Status.Phase == p }
}

func indexes(a *gpuwardenv1alpha1.GPUAllocation) []int32 {
	var out []int32
	for _, d := range a.Status.Devices {
		out = append(out, d.Index)
	}
	return out
}

// TestReservationsAreHonoured: a reservation is accepted on devices free of other
// reservations in its window, and an overlapping one that cannot be met is rejected with
// the reason; before the start, work whose runtime limit ends by then backfills the
// reserved devices and work without one goes elsewhere; a holder crossing a Stop start is
// marked to be stopped at it; within the window its user binds the reserved device at once,
// uncharged (beyond a quota of nothing), and another user's request waits, saying why; at
// the end the devices return to everyone.
func TestReservationsAreHonoured(t *testing.T) {
	ctx := context.Background()
	w := newAllocWorld(t, "node-rsv", &gpuwardenv1alpha1.GPUQuota{ObjectMeta: metav1.ObjectMeta{Name: "alice-nothing"},
		Spec: gpuwardenv1alpha1.GPUQuotaSpec{Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: "alice"}},
			Limits: gpuwardenv1alpha1.QuotaLimits{GPUEquivalents: qty("0")}}})
	t.Cleanup(func() { _ = w.c.DeleteAllOf(context.Background(), &gpuwardenv1alpha1.ContainerPolicy{}) })
	pol := &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "carol-short"},
		Spec: gpuwardenv1alpha1.ContainerPolicySpec{Selector: gpuwardenv1alpha1.PolicySelector{Users: []string{"carol"}},
			MaxRuntime: ptrTo(gpuwardenv1alpha1.Duration("20m")), StopGracePeriod: ptrTo(gpuwardenv1alpha1.Duration("10s")),
			GPUHoldAfterStop: ptrTo(gpuwardenv1alpha1.Duration("1m"))}}
	if err := w.c.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	t0 := w.clk.Now()
	start, length := t0.Add(2*time.Hour), 2*time.Hour

	// bob holds GPU 0 with no runtime limit.
	w.create("rsv-bob", "bob", 1)
	if got := indexes(w.until("rsv-bob", "Bound", isBound)); !slices.Equal(got, []int32{0}) {
		t.Fatalf("bob got GPU %v", got)
	}

	w.reserve("deadline", []string{"0", "1"}, []string{"alice"}, start, length, gpuwardenv1alpha1.DisplaceStop)
	r := w.reservationUntil("deadline", "Accepted", phaseIs(gpuwardenv1alpha1.ReservationAccepted))
	if r.Status.DevicesSummary != "0,1" || r.Status.NodeName != w.node || r.Status.WindowStart == nil || !r.Status.WindowStart.Time.Equal(start) {
		t.Errorf("accepted as %+v", r.Status)
	}
	// Device 1 again, overlapping: the conflict names the reservation in the way.
	w.reserve("overlap", []string{"1"}, []string{"dave"}, start.Add(time.Hour), length, gpuwardenv1alpha1.DisplaceWait)
	r = w.reservationUntil("overlap", "Rejected", phaseIs(gpuwardenv1alpha1.ReservationRejected))
	if r.Status.Reason != gpuwardenv1alpha1.ReasonDevicesConflict || !strings.Contains(r.Status.Message, "deadline") {
		t.Errorf("overlap rejected with %s: %s", r.Status.Reason, r.Status.Message)
	}

	// Before the start: carol's 20 minutes fit before it (backfill: the lowest free GPU,
	// reserved); erin has no limit and goes elsewhere.
	w.create("rsv-carol", "carol", 1)
	if got := indexes(w.until("rsv-carol", "Bound", isBound)); !slices.Equal(got, []int32{1}) {
		t.Errorf("carol (20m runtime limit, start in 2h) got GPU %v; want the reserved GPU 1", got)
	}
	w.create("rsv-erin", "erin", 1)
	if got := indexes(w.until("rsv-erin", "Bound", isBound)); !slices.Equal(got, []int32{2}) {
		t.Errorf("erin (no runtime limit) got GPU %v; want GPU 2, not a reserved one", got)
	}

	// Within the warning before a Stop start, bob (who crosses it) is marked.
	w.clk.Step(time.Hour + time.Minute)
	w.poke("rsv-bob")
	bob := w.until("rsv-bob", "displaced", func(a *gpuwardenv1alpha1.GPUAllocation) bool { return a.Status.Displacement != nil })
	if d := bob.Status.Displacement; d.Reservation != "deadline" || !d.At.Time.Equal(start) {
		t.Errorf("bob's displacement %+v", d)
	}
	if a := w.until("rsv-carol", "Bound", isBound); a.Status.Displacement != nil {
		t.Errorf("carol, who ends before the start, was displaced: %+v", a.Status.Displacement)
	}
	w.remove("rsv-carol") // her run ended

	// The start: alice binds the reserved GPU 1 at once, although her quota is nothing.
	w.clk.Step(time.Hour)
	w.poke("rsv-bob")
	w.reservationUntil("deadline", "Active", phaseIs(gpuwardenv1alpha1.ReservationActive))
	w.create("rsv-alice", "alice", 1)
	if got := indexes(w.until("rsv-alice", "Bound", isBound)); !slices.Equal(got, []int32{1}) {
		t.Errorf("alice got GPU %v; want the reserved GPU 1", got)
	}
	// Her hold counts against no quota while the window lasts.
	aliceUses := func() string {
		for _, u := range w.quota("alice-nothing").Status.Usage {
			if u.User == "alice" {
				return u.GPUEquivalentsRounded
			}
		}
		return ""
	}
	if used := aliceUses(); used != "" && used != "0" {
		t.Errorf("alice's uncharged hold shows in her quota's use: %q", used)
	}
	// Another user asking for the reserved GPU 0 by name, free now (bob was stopped at the
	// start), waits, and says why.
	w.remove("rsv-bob")
	if err := w.c.Create(ctx, testutil.MakeAllocation("rsv-frank").User("frank").Node(w.node).Devices("0").Obj()); err != nil {
		t.Fatal(err)
	}
	f := w.until("rsv-frank", "waiting for the reservation", func(a *gpuwardenv1alpha1.GPUAllocation) bool {
		return a.Status.Phase == gpuwardenv1alpha1.PhasePending && strings.Contains(a.Status.Message, "GPUReservation deadline")
	})
	if f.Status.Reason != gpuwardenv1alpha1.ReasonNoCapacity {
		t.Errorf("frank's reason %s: %s", f.Status.Reason, f.Status.Message)
	}

	// The end: the devices return to everyone, and alice's hold, past the window, counts.
	w.clk.Step(length)
	w.poke("rsv-alice")
	w.reservationUntil("deadline", "Ended", phaseIs(gpuwardenv1alpha1.ReservationEnded))
	if got := indexes(w.until("rsv-frank", "Bound", isBound)); !slices.Equal(got, []int32{0}) {
		t.Errorf("frank got GPU %v after the end", got)
	}
	testutil.Eventually(t, 30*time.Second, "alice's hold charged after the window", func() (bool, string) {
		u := aliceUses()
		return u == "1", u
	})
}

// TestAnUnusedReservationGoesBack: devices none of a reservation's users held for
// releaseUnusedAfter after its start go back to everyone for the rest of the window; one
// that its user holds is kept and counts its use.
func TestAnUnusedReservationGoesBack(t *testing.T) {
	ctx := context.Background()
	w := newAllocWorld(t, "node-rsv-unused")
	start := w.clk.Now().Add(time.Hour)
	after := gpuwardenv1alpha1.Duration("30m")
	for name, dev := range map[string]string{"unused2": "2", "used2": "3"} {
		r := &gpuwardenv1alpha1.GPUReservation{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{gpuwardenv1alpha1.AnnotationBookedByAdmin: "true"}},
			Spec: gpuwardenv1alpha1.GPUReservationSpec{NodeName: w.node, Request: gpuwardenv1alpha1.AllocationRequest{Devices: []string{dev}},
				Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: "alice"}},
				Start:    metav1.NewTime(start), End: metav1.NewTime(start.Add(4 * time.Hour)), ReleaseUnusedAfter: &after},
		}
		if err := w.c.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		w.reservationUntil(name, "Accepted", phaseIs(gpuwardenv1alpha1.ReservationAccepted))
	}
	w.clk.Step(time.Hour)
	w.create("unused-alice", "alice", 1) // a pass at the start: alice takes the first of her reserved GPUs
	if got := indexes(w.until("unused-alice", "Bound", isBound)); !slices.Equal(got, []int32{2}) && !slices.Equal(got, []int32{3}) {
		t.Fatalf("alice got GPU %v; want one of her reserved 2 and 3", got)
	}
	held := indexes(w.until("unused-alice", "Bound", isBound))[0]
	unused, used := "unused2", "used2"
	if held == 2 {
		unused, used = "used2", "unused2"
	}
	w.clk.Step(31 * time.Minute)
	w.poke("unused-alice")
	r := w.reservationUntil(unused, "given back unused", func(r *gpuwardenv1alpha1.GPUReservation) bool { return r.Status.ReleasedUnused != nil })
	if r.Status.Phase != gpuwardenv1alpha1.ReservationActive || !strings.Contains(r.Status.Message, "went back to everyone") {
		t.Errorf("given back unused: %s %s", r.Status.Phase, r.Status.Message)
	}
	kept := w.reservationUntil(used, "its use counted", func(r *gpuwardenv1alpha1.GPUReservation) bool { return r.Status.UsedGPUHours == "0.52" })
	if kept.Status.ReleasedUnused != nil {
		t.Errorf("a reservation its user holds was given back: %+v", kept.Status)
	}
	// Bob may now have the device given back, by name.
	dev := kept.Status.Devices[0].Index ^ 1 // 2 <-> 3
	if err := w.c.Create(ctx, testutil.MakeAllocation("unused-bob").User("bob").Node(w.node).Devices(fmt.Sprint(dev)).Obj()); err != nil {
		t.Fatal(err)
	}
	w.until("unused-bob", "Bound on the device given back", isBound)
}

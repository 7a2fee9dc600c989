package reservation

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
)

var t0 = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC) // a Monday

func weekly(start time.Time, d time.Duration) Times {
	return Times{First: Window{start, start.Add(d)}, Weekly: true}
}

func once(start time.Time, d time.Duration) Times { return Times{First: Window{start, start.Add(d)}} }

func TestWeeklyWindows(t *testing.T) {
	tu := weekly(t0.Add(24*time.Hour), 4*time.Hour) // Tuesdays 9–13
	ws := tu.Between(t0, t0.Add(3*Week))
	if len(ws) != 3 || !ws[0].Start.Equal(t0.Add(24*time.Hour)) || !ws[2].Start.Equal(t0.Add(24*time.Hour+2*Week)) {
		t.Fatalf("three Tuesdays: %v", ws)
	}
	// Within the second Tuesday: it is the current window; the next start a week on.
	now := t0.Add(24*time.Hour + Week + time.Hour)
	if w, ok := tu.Current(now); !ok || !w.Contains(now) {
		t.Errorf("current %v %v", w, ok)
	}
	if n := tu.Next(now); !n.Equal(t0.Add(24*time.Hour + 2*Week)) {
		t.Errorf("next start %v", n)
	}
	// Long after: still windows, and none before its first start.
	if ws := tu.Between(t0.Add(-Week), t0.Add(20*time.Hour)); len(ws) != 0 {
		t.Errorf("windows before the first: %v", ws)
	}
	if _, ok := tu.Current(t0.Add(100 * Week)); !ok {
		t.Error("a weekly reservation ran out")
	}
	o := once(t0, time.Hour)
	if _, ok := o.Current(t0.Add(time.Hour)); ok {
		t.Error("a one-off window is current at its end")
	}
}

func TestOverlap(t *testing.T) {
	tu := weekly(t0.Add(24*time.Hour), 4*time.Hour)
	for _, c := range []struct {
		name string
		a    Times
		want bool
	}{
		{"a one-off on the third Tuesday", once(t0.Add(24*time.Hour+2*Week+3*time.Hour), 2*time.Hour), true},
		{"a one-off on a Wednesday", once(t0.Add(48*time.Hour), 4*time.Hour), false},
		{"back to back", once(t0.Add(24*time.Hour+4*time.Hour), time.Hour), false},
		{"weekly Tuesday afternoons, from weeks later", weekly(t0.Add(24*time.Hour+5*Week+3*time.Hour), time.Hour), true},
		{"weekly Wednesdays", weekly(t0.Add(48*time.Hour), 4*time.Hour), false},
		{"a one-off before the first Tuesday", once(t0, 2*time.Hour), false},
	} {
		if _, got := Overlap(c.a, tu); got != c.want {
			t.Errorf("%s: overlap %v, want %v", c.name, got, c.want)
		}
		if _, got := Overlap(tu, c.a); got != c.want {
			t.Errorf("%s (other way): overlap %v, want %v", c.name, got, c.want)
		}
	}
}

func slots(n int) []allocation.Slot {
	var out []allocation.Slot
	for i := range n {
		u := "GPU-" + string(rune('a'+i))
		out = append(out, allocation.Slot{GPUIndex: i, GPUUUID: u, UUID: u, Healthy: true})
	}
	return out
}

func TestKeepLetsShortWorkBackfill(t *testing.T) {
	b := Booked{Name: "deadline", Node: "n1", Slots: []string{"GPU-a"}, Times: once(t0.Add(2*time.Hour), 2*time.Hour),
		Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectGroup, Name: "nlp"}}, Summary: "0"}
	booked := []Booked{b}
	if keep, _ := Keep(booked, "n1", "bob", nil, t0, time.Hour); len(keep) != 0 {
		t.Errorf("an hour's work before a start in two: kept off %v", keep)
	}
	keep, why := Keep(booked, "n1", "bob", nil, t0, 3*time.Hour)
	if len(keep) != 1 || !strings.Contains(why, "GPUReservation deadline for group nlp from 2026-12-07T11:00:00Z") {
		t.Errorf("three hours' work: kept off %v (%s)", keep, why)
	}
	if keep, _ := Keep(booked, "n1", "bob", nil, t0, 0); len(keep) != 1 {
		t.Error("work with no limit may use reserved devices")
	}
	if keep, _ := Keep(booked, "n1", "ann", []string{"nlp"}, t0.Add(3*time.Hour), 0); len(keep) != 0 {
		t.Error("a member of the group is kept off their own reservation")
	}
	if keep, why := Keep(booked, "n1", "bob", nil, t0.Add(3*time.Hour), time.Minute); len(keep) != 1 || !strings.Contains(why, "until 2026-12-07T13:00:00Z") {
		t.Errorf("within the window: kept off %v (%s)", keep, why)
	}
	if keep, _ := Keep(booked, "n1", "bob", nil, t0.Add(4*time.Hour), 0); len(keep) != 0 {
		t.Error("kept off after the end")
	}
	// Given back unused: everyone's again for the rest of the window.
	b.ReleasedUnused = t0.Add(3 * time.Hour)
	if keep, _ := Keep([]Booked{b}, "n1", "bob", nil, t0.Add(3*time.Hour+time.Minute), time.Minute); len(keep) != 0 {
		t.Error("kept off devices given back unused")
	}
	if m := Mine([]Booked{b}, "n1", "ann", []string{"nlp"}, t0.Add(3*time.Hour+time.Minute)); len(m) != 0 {
		t.Error("devices given back unused still go to its users first")
	}
}

func TestChoose(t *testing.T) {
	inv := map[string][]allocation.Slot{"n1": slots(4), "n2": slots(2)}
	mine := once(t0, 2*time.Hour)
	other := Booked{Name: "first", Node: "n1", Slots: []string{"GPU-a", "GPU-b"}, Times: once(t0.Add(time.Hour), 2*time.Hour), Summary: "0,1"}
	held := map[string][]allocation.Holding{"n1": {{Name: "x", Slots: []string{"GPU-c"}}}}

	// Two GPUs on n1: a and b are reserved then, c is held now: d and c, preferring free.
	c := Choose(allocation.Request{GPUs: 1}, "n1", mine, inv, []Booked{other}, held)
	if !c.Accepted() || c.Slots[0].UUID != "GPU-d" {
		t.Errorf("one GPU: %+v", c)
	}
	c = Choose(allocation.Request{GPUs: 2}, "n1", mine, inv, []Booked{other}, held)
	if !c.Accepted() || len(c.Slots) != 2 {
		t.Errorf("two GPUs (one held now): %+v", c)
	}
	c = Choose(allocation.Request{GPUs: 3}, "n1", mine, inv, []Booked{other}, held)
	if c.Reason != gpuwardenv1alpha1.ReasonNoRoom || !strings.Contains(c.Message, "first (GPU 0,1") {
		t.Errorf("three GPUs: %s %s", c.Reason, c.Message)
	}
	c = Choose(allocation.Request{Devices: []string{"GPU-b"}}, "n1", mine, inv, []Booked{other}, held)
	if c.Reason != gpuwardenv1alpha1.ReasonDevicesConflict {
		t.Errorf("a named device reserved: %s %s", c.Reason, c.Message)
	}
	// Any node: n1 has no room for 3, n2 none for 3 either; 2 fit on n1.
	if c := Choose(allocation.Request{GPUs: 5}, "", mine, inv, nil, nil); c.Reason != gpuwardenv1alpha1.ReasonUnsatisfiable {
		t.Errorf("more GPUs than any node has: %s %s", c.Reason, c.Message)
	}
	if c := Choose(allocation.Request{GPUs: 2}, "n9", mine, inv, nil, nil); c.Reason != gpuwardenv1alpha1.ReasonUnsatisfiable || !strings.Contains(c.Message, "n9") {
		t.Errorf("an unknown node: %s %s", c.Reason, c.Message)
	}
	// Not overlapping: the same devices are free.
	later := once(t0.Add(3*time.Hour), time.Hour)
	if c := Choose(allocation.Request{Devices: []string{"GPU-a"}}, "n1", later, inv, []Booked{other}, nil); !c.Accepted() {
		t.Errorf("after the other's window: %+v", c)
	}
}

func TestAllowanceHours(t *testing.T) {
	w, _ := allocation.ParseWindow("30d")
	p := Period(w, t0)
	if got := Hours(weekly(t0, 2*time.Hour), 1, p); got != 10 { // 5 Mondays in 30 days
		t.Errorf("weekly 2h over 30 days: %v gpu-hours", got)
	}
	m, _ := allocation.ParseWindow("Month")
	p = Period(m, t0)
	if !p.Start.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) || !p.End.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("month period %v", p)
	}
	if got := Hours(once(time.Date(2026, 12, 31, 22, 0, 0, 0, time.UTC), 4*time.Hour), 0.5, p); got != 1 {
		t.Errorf("a window across the month's end counts its part: %v", got)
	}
}

func TestBookerOf(t *testing.T) {
	r := &gpuwardenv1alpha1.GPUReservation{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{gpuwardenv1alpha1.AnnotationBookedBy: "root", gpuwardenv1alpha1.AnnotationBookedByAdmin: "true"}},
		Spec: gpuwardenv1alpha1.GPUReservationSpec{Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: "alice"}}}}
	if b := BookerOf(r); b != "" {
		t.Errorf("an admin's booking counted for %q", b)
	}
	r.Annotations[gpuwardenv1alpha1.AnnotationBookedByAdmin] = "false"
	r.Annotations[gpuwardenv1alpha1.AnnotationBookedBy] = "alice"
	if b := BookerOf(r); b != "alice" {
		t.Errorf("alice's booking counted for %q", b)
	}
	r.Annotations = nil // no admission record: never an admin's
	if b := BookerOf(r); b != "alice" {
		t.Errorf("an unrecorded booking counted for %q", b)
	}
	if got := Of([]gpuwardenv1alpha1.GPUReservation{*r}); len(got) != 0 {
		t.Error("a pending reservation reserves devices")
	}
	// Accepted: a user's own booking charges their quota whatever it says; an admin's may not.
	r.Status = gpuwardenv1alpha1.GPUReservationStatus{Phase: gpuwardenv1alpha1.ReservationAccepted,
		Devices: []gpuwardenv1alpha1.BoundDevice{{UUID: "GPU-a", Weight: resource.MustParse("1")}}}
	if got := Of([]gpuwardenv1alpha1.GPUReservation{*r}); len(got) != 1 || !got[0].Charge || got[0].Weight != 1 {
		t.Errorf("a user's own booking with chargeQuota false: %+v", got)
	}
	r.Annotations = map[string]string{gpuwardenv1alpha1.AnnotationBookedByAdmin: "true"}
	if got := Of([]gpuwardenv1alpha1.GPUReservation{*r}); len(got) != 1 || got[0].Charge {
		t.Errorf("an admin's booking with chargeQuota false: %+v", got)
	}
	if !slices.Equal([]string{Who(nil)}, []string{"no one (drained)"}) {
		t.Error(Who(nil))
	}
}

// TestWindowsOverCenturies: a weekly reservation whose first window is centuries away
// (which a Duration cannot span) still gives its windows at once.
func TestWindowsOverCenturies(t *testing.T) {
	old := weekly(time.Date(1700, 1, 4, 0, 0, 0, 0, time.UTC), time.Hour)
	ws := old.Between(t0, t0.Add(2*Week))
	if len(ws) != 2 || ws[0].Start.Weekday() != time.Monday || ws[0].Start.Before(t0) {
		t.Errorf("a weekly window from 1700, seen in 2026: %v", ws)
	}
	if w, ok := old.Current(t0); !ok || w.End.Sub(w.Start) != time.Hour {
		t.Errorf("current %v %v", w, ok)
	}
}

// TestPeakHoldsEveryWindow: the allowance holds in every window a new booking falls in,
// whatever the order the bookings were made in: a chain of back-to-back bookings, weekly
// ones begun in the past, one across a month's end.
func TestPeakHoldsEveryWindow(t *testing.T) {
	d30, _ := allocation.ParseWindow("30d")
	now := t0
	// A chain: each 100 h booking starts where the last ends; the third sees the first two
	// within 30 days of its end.
	var chain []Booked
	for i := range 2 {
		s := now.Add(time.Duration(i) * 100 * time.Hour)
		chain = append(chain, Booked{Name: fmt.Sprint("c", i), Times: once(s, 100*time.Hour), Weight: 1})
	}
	if peak, _ := Peak(d30, now, once(now.Add(200*time.Hour), 100*time.Hour), 1, chain); peak < 300-1e-9 {
		t.Errorf("a chain of three 100 h bookings within 30 days: peak %v, want 300", peak)
	}
	// Weekly bookings begun long ago count from now on, in every week.
	past := []Booked{{Name: "w1", Times: weekly(now.Add(-70*24*time.Hour), 20*time.Hour), Weight: 1}}
	if peak, _ := Peak(d30, now, weekly(now.Add(-140*24*time.Hour), 20*time.Hour), 1, past); peak < 2*20*4-1e-9 {
		t.Errorf("two weekly 20 h bookings begun in the past: peak %v, want at least 160 in 30 days", peak)
	}
	// Month: a 90-day booking counts in each month it falls in, not only its first.
	m, _ := allocation.ParseWindow("Month")
	if peak, in := Peak(m, now, once(time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC), 90*24*time.Hour), 8, nil); peak < 8*31*24-1e-9 || in.Start.Month() != time.January {
		t.Errorf("90 days from December's last hour: peak %v in %v, want all of January", peak, in)
	}
	// What is past is used, not booked: a one-off that ended counts nothing.
	if peak, _ := Peak(d30, now, once(now.Add(time.Hour), time.Hour), 1, []Booked{{Name: "gone", Times: once(now.Add(-5*time.Hour), time.Hour), Weight: 4}}); peak != 1 {
		t.Errorf("an ended booking counted: peak %v, want 1", peak)
	}
}

// TestUserBookingShield: a user's own booking keeps work without a runtime limit off its
// devices only from a day before its start; an admin's from its acceptance.
func TestUserBookingShield(t *testing.T) {
	user := Booked{Name: "mine", Node: "n1", Slots: []string{"GPU-a"}, Times: once(t0.Add(20*24*time.Hour), time.Hour),
		Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: "mallory"}}, Booker: "mallory"}
	if keep, _ := Keep([]Booked{user}, "n1", "bob", nil, t0, 0); len(keep) != 0 {
		t.Error("a user's booking 20 days ahead keeps work without a limit off now")
	}
	if keep, _ := Keep([]Booked{user}, "n1", "bob", nil, t0.Add(19*24*time.Hour+time.Hour), 0); len(keep) != 1 {
		t.Error("a user's booking a day ahead does not keep work without a limit off")
	}
	if keep, _ := Keep([]Booked{user}, "n1", "bob", nil, t0, 30*24*time.Hour); len(keep) != 1 {
		t.Error("a user's booking does not keep off work whose limit crosses its start")
	}
	admin := user
	admin.Booker = ""
	if keep, _ := Keep([]Booked{admin}, "n1", "bob", nil, t0, 0); len(keep) != 1 {
		t.Error("an admin's booking 20 days ahead does not keep work without a limit off")
	}
}

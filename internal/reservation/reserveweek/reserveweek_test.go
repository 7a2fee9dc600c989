package reserveweek

import (
	"slices"
	"strings"
	"testing"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// Seeds are the weeks replayed.
var Seeds = []uint64{2026, 7, 42}

// replayBoth replays the seeded weeks with backfill and against the reference.
func replayBoth(seeds []uint64) (on, ref Result) {
	for _, seed := range seeds {
		w := Generate(seed)
		on.Add(Replay(w, Backfill, DefaultSetting, seed))
		ref.Add(Replay(w, HeldFromAcceptance, DefaultSetting, seed))
	}
	return on, ref
}

func logResult(t *testing.T, name string, r Result) {
	t.Helper()
	late, by := r.Late()
	t.Logf("%s: %d occurrences, %d late %v; %d accepted, rejected %v; before the starts %.0f reserved GPU-h, %.0f used by backfill (%.0f %%), %.0f by their own users, %.0f by another reservation's users, %.0f by holders from before acceptance; stopped by Wait %d, by Stop %d; %.0f GPU-h held in all",
		name, len(r.Occurrences), late, by, r.Accepted, r.Rejected, r.PreStart, r.Backfill, r.BackfillShare(), r.OwnEarly, r.Spill, r.BeforeAccept, r.StoppedWait, r.StoppedStop, r.GPUHours)
	for _, o := range r.Occurrences {
		if o.Late > Step {
			t.Logf("  %s at %s started %s late: %s", o.Name, o.Start.Format("Mon 15:04"), o.Late, o.Cause)
		}
	}
}

// TestASeededWeekKeepsTheRules: on a seeded week, every booking is decided (the two that
// cannot be met rejected, saying why), no Wait reservation stops anything, no start is
// late for work backfill let in, backfill uses reserved hours before the starts that the
// reference leaves idle, and a Stop start is late only while its holders are stopped.
func TestASeededWeekKeepsTheRules(t *testing.T) {
	w := Generate(Seeds[0])
	on := Replay(w, Backfill, DefaultSetting, Seeds[0])
	ref := Replay(w, HeldFromAcceptance, DefaultSetting, Seeds[0])
	logResult(t, "backfill", on)
	logResult(t, "held from acceptance", ref)
	if got := strings.Join(on.Rejected, "; "); on.Accepted != 6 || got != "tue-gpu3-dup: "+gpuwardenv1alpha1.ReasonDevicesConflict+"; fri-big: "+gpuwardenv1alpha1.ReasonNoRoom {
		t.Errorf("%d accepted, rejected %q: want 6, and the duplicate of GPU 3 and the six GPUs within Friday's four rejected", on.Accepted, got)
	}
	if len(on.Occurrences) != 6 {
		t.Errorf("%d occurrences, want one start of each accepted reservation", len(on.Occurrences))
	}
	for _, r := range []Result{on, ref} {
		if r.StoppedWait != 0 {
			t.Errorf("a Wait reservation stopped %d containers", r.StoppedWait)
		}
		if _, by := r.Late(); by[CauseBackfill] != 0 {
			t.Errorf("%d starts late for work backfill let in", by[CauseBackfill])
		}
		if d, bound := r.MaxLate(CauseStopping), DefaultSetting.Hook+DefaultSetting.Grace+DefaultSetting.Pass+Step; d > bound {
			t.Errorf("a Stop start waited %s for its holders to stop; the bound is %s", d, bound)
		}
	}
	if ref.Backfill != 0 {
		t.Errorf("the reference used %.1f reserved GPU-h before a start", ref.Backfill)
	}
	if on.BackfillShare() < 50 {
		t.Errorf("backfill used %.0f %% of the reserved hours before the starts, want at least 50 %%", on.BackfillShare())
	}
	if on.GPUHours <= ref.GPUHours {
		t.Errorf("backfill held %.0f GPU-h, no more than the reference's %.0f", on.GPUHours, ref.GPUHours)
	}
}

// TestAHolderFromBeforeAcceptance: a job without a runtime limit holds GPU 0 when a
// reservation of it is accepted. With Wait it runs on and the start is late (counted as
// caused by a holder from before acceptance); with Stop it is stopped at the start and the
// start is late only by the stop. Short work waiting meanwhile backfills the device before
// the start, where the reference leaves it idle; work without a limit never does.
func TestAHolderFromBeforeAcceptance(t *testing.T) {
	users := []User{{Name: "carl"}, {Name: "ann"}, {Name: "bob", Limit: 2 * time.Hour}}
	// carl-long has a checkpoint hook and ignores SIGTERM: a stop of it takes a minute or more.
	jobs := []Job{{Name: "carl-long", User: "carl", GPUs: 1, Arrive: Monday, Run: 10 * time.Hour, Hook: true, IgnoresTerm: true}}
	for i := range 6 { // GPUs 1 to 6, for two days
		jobs = append(jobs, Job{Name: "carl-" + string(rune('a'+i)), User: "carl", GPUs: 1, Arrive: Monday, Run: 48 * time.Hour})
	}
	jobs = append(jobs,
		Job{Name: "carl-late", User: "carl", GPUs: 1, Arrive: Monday.Add(30 * time.Minute), Run: time.Hour}, // takes GPU 7
		Job{Name: "carl-waits", User: "carl", GPUs: 1, Arrive: Monday.Add(2 * time.Hour), Run: time.Hour},
		Job{Name: "bob-short", User: "bob", GPUs: 1, Arrive: Monday.Add(2 * time.Hour), Run: 90 * time.Minute})
	for _, stop := range []bool{false, true} {
		b := Booking{Name: "r", Subjects: user("ann"), Devices: []string{"GPU-0"}, Start: Monday.Add(4 * time.Hour), End: Monday.Add(6 * time.Hour),
			Stop: stop, Booked: Monday.Add(time.Hour)}
		w := Week{Start: Monday, Users: users, Jobs: jobs, Bookings: []Booking{
			b, {Name: "r7", Subjects: user("ann"), Devices: []string{"GPU-7"}, Start: Monday.Add(5 * time.Hour), End: Monday.Add(6 * time.Hour), Booked: Monday.Add(time.Hour)}}}
		on, ref := Replay(w, Backfill, DefaultSetting, 1), Replay(w, HeldFromAcceptance, DefaultSetting, 1)
		logResult(t, "backfill", on)
		logResult(t, "held from acceptance", ref)
		i := slices.IndexFunc(on.Occurrences, func(o Occurrence) bool { return o.Name == "r" })
		if i < 0 {
			t.Fatalf("stop %v: no occurrence of r: %+v", stop, on.Occurrences)
		}
		o := on.Occurrences[i]
		if !stop {
			if o.Late != 2*time.Hour || o.Cause != CauseBeforeAcceptance || on.LateWait(CauseBeforeAcceptance) != 1 || on.StoppedWait != 0 {
				t.Errorf("Wait: late %s (%s), %d Wait starts late for holders from before acceptance, %d stopped; want the whole window, by the holder from before acceptance, none stopped",
					o.Late, o.Cause, on.LateWait(CauseBeforeAcceptance), on.StoppedWait)
			}
		} else if o.Late > Step || on.StoppedStop != 1 {
			// The stop begins its hook's timeout, grace and sweeps before the start.
			t.Errorf("Stop: late %s (%s), %d stopped; want on time, one stopped", o.Late, o.Cause, on.StoppedStop)
		}
		// GPU 7 is free from 01:30 until r7's start at 05:00: bob's 90 minutes (a 2h limit)
		// fit before it (carl's hour without a limit does not); the reference leaves it
		// idle.
		if on.Backfill < 1.4 || on.Backfill > 1.6 || ref.Backfill != 0 {
			t.Errorf("backfill used %.2f GPU-h before the starts (want bob's 1.5), the reference %.2f (want 0)", on.Backfill, ref.Backfill)
		}
		want := 1 // Wait: r's alone (r7's device was backfilled and free in time)
		if stop {
			want = 0
		}
		if late, _ := on.Late(); late != want {
			t.Errorf("%d starts late, want %d (r7's device was backfilled and free in time)", late, want)
		}
	}
}

// BenchmarkReserveWeek reports the seeded weeks with backfill against the reference.
func BenchmarkReserveWeek(b *testing.B) {
	var on, ref Result
	for b.Loop() {
		on, ref = replayBoth(Seeds)
	}
	late, by := on.Late()
	refLate, _ := ref.Late()
	b.ReportMetric(float64(len(on.Occurrences)), "occurrences")
	b.ReportMetric(float64(late), "late")
	b.ReportMetric(float64(by[CauseStopping]), "late-stopping")
	b.ReportMetric(on.MaxLate(CauseStopping).Seconds(), "late-stopping-max-s")
	b.ReportMetric(float64(on.LateWait(CauseBeforeAcceptance)), "late-wait-before-accept")
	b.ReportMetric(on.MaxLate(CauseBeforeAcceptance).Hours(), "late-before-accept-max-h")
	b.ReportMetric(float64(by[CauseBackfill]), "late-backfill")
	b.ReportMetric(float64(by[CauseOtherReservation]), "late-other-rsv")
	b.ReportMetric(on.MaxLate(CauseOtherReservation).Minutes(), "late-other-rsv-max-min")
	b.ReportMetric(float64(refLate), "ref-late")
	b.ReportMetric(float64(ref.LateWait(CauseBeforeAcceptance)), "ref-late-wait-before-accept")
	b.ReportMetric(on.BackfillShare(), "backfill-pct")
	b.ReportMetric(on.Backfill, "backfill-GPUh")
	b.ReportMetric(on.PreStart, "prestart-GPUh")
	b.ReportMetric(ref.BackfillShare(), "ref-backfill-pct")
	b.ReportMetric(float64(on.StoppedWait), "wait-stopped")
	b.ReportMetric(float64(on.StoppedStop), "stop-stopped")
	b.ReportMetric(float64(ref.StoppedStop), "ref-stop-stopped")
	b.ReportMetric(float64(len(on.Rejected)), "rejected")
	b.ReportMetric(on.GPUHours, "GPUh")
	b.ReportMetric(ref.GPUHours, "ref-GPUh")
}

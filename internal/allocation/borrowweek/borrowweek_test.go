package borrowweek

import (
	"testing"
	"time"
)

// Seeds are the weeks replayed.
var Seeds = []uint64{2026, 7, 42}

func replayBoth(seeds []uint64) (off, on Result) {
	for _, seed := range seeds {
		jobs := Generate(seed)
		a, b := Replay(jobs, false, DefaultSetting, seed), Replay(jobs, true, DefaultSetting, seed)
		off.GPUHours += a.GPUHours
		on.GPUHours += b.GPUHours
		off.InQuotaP95 = max(off.InQuotaP95, a.InQuotaP95)
		on.InQuotaP95 = max(on.InQuotaP95, b.InQuotaP95)
		on.Reclaims += b.Reclaims
		on.Delays = append(on.Delays, b.Delays...)
	}
	return off, on
}

// TestBorrowingUsesIdleGPUsAndGivesThemBack: borrowing gives out more GPU-hours on the
// seeded weeks, gives back for requests within their quota, and each such request binds
// within the give-back's bound (hook + grace + pass).
func TestBorrowingUsesIdleGPUsAndGivesThemBack(t *testing.T) {
	off, on := replayBoth(Seeds[:1])
	t.Logf("off: %.0f GPU-h, in-quota p95 %s; on: %.0f GPU-h, in-quota p95 %s, %d give-backs, delay p50 %s p99 %s",
		off.GPUHours, off.InQuotaP95, on.GPUHours, on.InQuotaP95, on.Reclaims, on.DelayP(0.5), on.DelayP(0.99))
	if on.GPUHours <= off.GPUHours {
		t.Errorf("borrowing gave out %.0f GPU-h, not more than %.0f without", on.GPUHours, off.GPUHours)
	}
	if on.Reclaims == 0 || len(on.Delays) == 0 {
		t.Fatal("nothing was given back: the week does not test it")
	}
	bound := DefaultSetting.Hook + DefaultSetting.Grace + DefaultSetting.Pass + 10*time.Second // a step of the replay
	if d := on.DelayP(1); d > bound {
		t.Errorf("a request waited %s for a give-back; the bound is %s", d, bound)
	}
}

// BenchmarkBorrowWeek reports borrowing off against on.
func BenchmarkBorrowWeek(b *testing.B) {
	var off, on Result
	for b.Loop() {
		off, on = replayBoth(Seeds)
	}
	b.ReportMetric(off.GPUHours, "off-GPUh")
	b.ReportMetric(on.GPUHours, "on-GPUh")
	b.ReportMetric(off.InQuotaP95.Seconds(), "off-inquota-p95-s")
	b.ReportMetric(on.InQuotaP95.Seconds(), "on-inquota-p95-s")
	b.ReportMetric(float64(on.Reclaims), "reclaims")
	b.ReportMetric(on.DelayP(0.5).Seconds(), "delay-p50-s")
	b.ReportMetric(on.DelayP(0.99).Seconds(), "delay-p99-s")
	m := BudgetMonth(Seeds[0])
	b.ReportMetric(float64(m.GrantedBeyond), "budget-granted-beyond")
	b.ReportMetric(float64(len(m.Over)), "budget-users-over")
	b.ReportMetric(float64(m.Refused), "budget-refused")
	b.ReportMetric(m.MaxOverrun, "budget-max-overrun-GPUh")
}

// TestABudgetMonthGrantsNothingBeyondABudget: the two heavy users pass their budgets and
// are refused from then on; nothing is granted to a user at or past theirs.
func TestABudgetMonthGrantsNothingBeyondABudget(t *testing.T) {
	r := BudgetMonth(2026)
	t.Logf("%d requests, %d granted, %d refused, %d granted beyond a budget; over: %v (at most %.1f gpu-h past, by holds granted before)",
		r.Requests, r.Granted, r.Refused, r.GrantedBeyond, r.Over, r.MaxOverrun)
	if r.GrantedBeyond != 0 {
		t.Errorf("%d requests granted beyond a budget", r.GrantedBeyond)
	}
	if len(r.Over) != 2 || r.Refused == 0 {
		t.Errorf("users over their budget %v, %d refused: want the two heavy users, refused", r.Over, r.Refused)
	}
}

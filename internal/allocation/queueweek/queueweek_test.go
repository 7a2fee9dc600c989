package queueweek

import (
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/allocation"
)

// Seeds are the weeks replayed: four heavy and twelve light users on eight GPUs each.
var Seeds = []uint64{2026, 7, 42, 1, 99}

func replayBoth() (fifo, fair Result) {
	return replayWeeks(Seeds)
}

func replayWeeks(seeds []uint64) (fifo, fair Result) {
	return ReplayWeeks(seeds, 4, 12, 8, false, allocation.DefaultHalfLife), ReplayWeeks(seeds, 4, 12, 8, true, allocation.DefaultHalfLife)
}

// TestQueueWeekKeepsItsPromises: on the seeded contended weeks, no request that no later
// arrival overtook starts after the latest start it was given on arrival, in either order;
// the weeks are contended (light users wait under FIFO). The rest is reported by the bench.
func TestQueueWeekKeepsItsPromises(t *testing.T) {
	fifo, fair := replayWeeks(Seeds[:2]) // the bench replays them all
	for name, r := range map[string]Result{"FIFO": fifo, "fair share": fair} {
		t.Logf("%-10s light p95 %8s, heavy p95 %8s, %6.1f GPU-h, %d started (%d waited), %d/%d promises broken, estimate error %.0f%%",
			name, r.LightP95.Round(time.Minute), r.HeavyP95.Round(time.Minute), r.GPUHours, r.Started, r.Waited, r.Broken, r.Promised, 100*r.EstimateError)
		if r.Broken != 0 {
			t.Errorf("%s: %d of %d latest starts broken", name, r.Broken, r.Promised)
		}
		if r.Promised == 0 {
			t.Errorf("%s: no request was given a latest start it kept or broke: the week does not test it", name)
		}
	}
	if fifo.LightP95 < time.Hour {
		t.Errorf("light users' p95 wait under FIFO is %s: the week is not contended", fifo.LightP95)
	}
}

// BenchmarkQueueWeek reports both orders' outcomes as metrics.
func BenchmarkQueueWeek(b *testing.B) {
	var fifo, fair Result
	for b.Loop() {
		fifo, fair = replayBoth()
	}
	b.ReportMetric(fifo.LightP95.Minutes(), "fifo-light-p95-min")
	b.ReportMetric(fair.LightP95.Minutes(), "fair-light-p95-min")
	b.ReportMetric(fifo.HeavyP95.Minutes(), "fifo-heavy-p95-min")
	b.ReportMetric(fair.HeavyP95.Minutes(), "fair-heavy-p95-min")
	b.ReportMetric(fifo.GPUHours, "fifo-GPUh")
	b.ReportMetric(fair.GPUHours, "fair-GPUh")
	b.ReportMetric(float64(fifo.Broken+fair.Broken), "broken")
	b.ReportMetric(float64(fifo.Promised+fair.Promised), "promised")
	b.ReportMetric(100*fair.EstimateError, "fair-estimate-error-pct")
	b.ReportMetric(100*fifo.EstimateError, "fifo-estimate-error-pct")
}

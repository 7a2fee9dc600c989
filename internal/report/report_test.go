package report_test

import (
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/report"
)

var day = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

func at(h float64, e audit.Event) *audit.Event {
	e.Time = day.Add(time.Duration(h * float64(time.Hour)))
	return &e
}

func alloc(name, eq, id string, wait time.Duration) audit.Allocation {
	return audit.Allocation{Name: name, GPUEquivalents: eq, Container: audit.Container{Name: name, ID: id}, Wait: wait}
}

// A day of a small lab, reported from 06:00 to 18:00.
func TestReportOfADay(t *testing.T) {
	b := &report.Builder{Since: day.Add(6 * time.Hour), Until: day.Add(18 * time.Hour)}
	for _, e := range []*audit.Event{
		// mia holds two GPUs from 02:00 (before the period) to 10:00: 4 h in it → 8 GPU-h.
		at(2, audit.GPUAllocate("mia", alloc("mia-train", "2", "c1", 0))),
		at(7, audit.GPUUsage("mia", alloc("mia-train", "2", "c1", 0), audit.Usage{Window: time.Hour, Used: 90 * time.Minute, UtilizationKnown: time.Hour})),
		at(10, audit.GPURelease("mia", alloc("mia-train", "2", "c1", 0), "container removed")),
		// bo's notebook: one GPU from 08:00, idle, stopped at 12:00, released at 12:15.
		at(8, audit.GPUAllocate("bo", alloc("bo-nb", "1", "c2", 5*time.Minute))),
		at(9, audit.GPUUsage("bo", alloc("bo-nb", "1", "c2", 0), audit.Usage{Window: time.Hour, UtilizationKnown: time.Hour, Idle: 40 * time.Minute})),
		at(12, audit.Lifecycle(audit.IdleStop, "bo", audit.Container{Name: "bo-nb", ID: "c2"}, "notebooks", "Enforce", "idle")),
		at(12.25, audit.GPURelease("bo", alloc("bo-nb", "1", "", 0), "stopped longer than gpuHoldAfterStop")),
		// cy is refused twice, then waits 20 minutes for a 3g slice still held at 18:00.
		at(13, audit.GPUReject("cy", alloc("cy-a", "", "", 0), "QuotaExceeded", "…")),
		at(13.1, audit.GPUReject("cy", alloc("cy-b", "", "", 0), "FullGPUNotAllowed", "…")),
		at(14, audit.GPUAllocate("cy", alloc("cy-c", "0.428571", "", 20*time.Minute))),
		// After the period: not counted.
		at(19, audit.GPUReject("cy", alloc("cy-d", "", "", 0), "QuotaExceeded", "…")),
	} {
		b.Add(e)
	}
	r := b.Report(day.Add(30 * time.Hour))
	rows := map[string]report.Row{}
	for _, row := range r.Rows {
		rows[row.User] = row
	}
	near := func(got, want float64) bool { return got > want-1e-6 && got < want+1e-6 }
	if m := rows["mia"]; !near(m.AllocatedGPUHours, 8) || !near(m.UsedGPUHours, 1.5) || !near(m.UtilizationKnownHours, 2) || m.Binds != 0 {
		t.Errorf("mia: %+v; want 8 GPU-h allocated in the period, 1.5 used of 2 known", m)
	}
	// bo: 08:00–12:15 = 4.25 GPU-h; idle 40 min; reclaimed from 12:15 to 18:00 = 5.75 h.
	if b := rows["bo"]; !near(b.AllocatedGPUHours, 4.25) || !near(b.IdleGPUHours, 40.0/60) || b.IdleStops != 1 || !near(b.ReclaimedGPUHours, 5.75) ||
		b.Binds != 1 || b.MaxWait != 5*time.Minute {
		t.Errorf("bo: %+v", b)
	}
	// cy: 14:00–18:00 of 3/7 of a GPU.
	if c := rows["cy"]; !near(c.AllocatedGPUHours, 4*0.428571) || c.Rejections != 2 || c.MeanWait() != 20*time.Minute {
		t.Errorf("cy: %+v", c)
	}
	if r.Rejections["QuotaExceeded"] != 1 || r.Rejections["FullGPUNotAllowed"] != 1 {
		t.Errorf("rejections by reason: %v", r.Rejections)
	}
	if r.Rows[0].User != "mia" || !near(r.Total.AllocatedGPUHours, 8+4.25+4*0.428571) || r.Total.Rejections != 2 {
		t.Errorf("order and total: %+v / %+v", r.Rows, r.Total)
	}
	if !r.Until.Equal(day.Add(18 * time.Hour)) {
		t.Errorf("until %s", r.Until)
	}
}

// The GPU-hours an idle stop gave back count for a gateway container, whose gpu.allocate
// was written before it had an ID, and a request that waited and was refused counts its
// wait.
func TestReclaimAndWaitsOfGatewayRequests(t *testing.T) {
	b := &report.Builder{Since: day, Until: day.Add(24 * time.Hour)}
	for _, e := range []*audit.Event{
		at(8, audit.GPUAllocate("dee", audit.Allocation{Name: "gateway-1", GPUEquivalents: "1", Wait: time.Minute})),
		at(8, audit.ContainerEvent(audit.ContainerCreate, "dee", audit.Container{Name: "train", ID: "c7", Allocation: "gateway-1"}, "")),
		at(9, audit.Lifecycle(audit.IdleStop, "dee", audit.Container{Name: "train", ID: "c7"}, "lab", "Enforce", "idle")),
		at(9.25, audit.GPURelease("dee", audit.Allocation{Name: "gateway-1", GPUEquivalents: "1"}, "stopped longer than gpuHoldAfterStop")),
		at(10, audit.GPUReject("dee", audit.Allocation{Name: "gateway-2", Wait: 3 * time.Minute}, "NoCapacity", "no GPU free after waiting 3m0s")),
	} {
		b.Add(e)
	}
	r := b.Report(day.Add(30 * time.Hour))
	if len(r.Rows) != 1 {
		t.Fatalf("rows: %+v", r.Rows)
	}
	d := r.Rows[0]
	if d.IdleStops != 1 || d.ReclaimedGPUHours <= 0 || d.Rejections != 1 || d.MaxWait != 3*time.Minute {
		t.Errorf("dee: %+v; want the idle stop's GPU-hours given back, one rejection and a max wait of 3m", d)
	}
}

// A period that has not ended counts what is still bound until now.
func TestReportUntilNow(t *testing.T) {
	b := &report.Builder{Since: day}
	b.Add(at(1, audit.GPUAllocate("mia", alloc("mia-nb", "1", "", 0))))
	r := b.Report(day.Add(3 * time.Hour))
	if len(r.Rows) != 1 || r.Rows[0].AllocatedGPUHours != 2 {
		t.Errorf("%+v; want 2 GPU-h from 01:00 to now (03:00)", r.Rows)
	}
}

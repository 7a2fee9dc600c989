package reclaim

import (
	"sync"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
)

// UsagePeriod is the longest stretch one gpu.usage record covers: `gpuwarden report` counts a
// running container's used and idle GPU-hours up to its last record, so this is how far
// behind it may be (an hour made USED GPU-H read 0.00 for a container busy for 50 minutes).
const UsagePeriod = 5 * time.Minute

// usageBook adds up, between sample rounds, each running GPU container's use of what it
// holds, and writes it to the audit log as gpu.usage records: at every UsagePeriod of the
// clock (:00, :05, …), and when the container stops holding GPUs. `gpuwarden report` counts
// used and idle GPU-hours from them, and judges each run's right size by their peaks.
type usageBook struct {
	mu  sync.Mutex
	acc map[string]*usage // by container ID
}

type usage struct {
	user, allocation string
	ref              audit.Allocation
	since, last      time.Time
	u                audit.Usage
	busy             map[string]bool // the devices that showed use, by UUID
}

// add counts one sample: the time since the container's previous sample (at most two
// intervals: a gap is not counted as use) at the sample's utilisation and verdict. gpus
// are the round's device samples, by UUID, for the record's peaks.
func (b *usageBook) add(h held, s lifecycle.Sample, gpus map[string]gpu.Sample, v lifecycle.Verdict, interval time.Duration, lg audit.Logger) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.acc == nil {
		b.acc = map[string]*usage{}
	}
	eq := 0.0
	if h.a.Status.GPUEquivalents != nil {
		eq = h.a.Status.GPUEquivalents.AsApproximateFloat64()
	}
	cur := b.acc[h.c.ID]
	if cur != nil && cur.allocation != h.a.Name {
		b.flush(h.c.ID, lg) // another allocation: a new stretch from this sample
		cur = nil
	}
	if cur == nil {
		cur = &usage{user: h.a.Spec.User, allocation: h.a.Name, since: s.Time, last: s.Time, ref: usageRef(h)}
		b.acc[h.c.ID] = cur
		cur.peaks(h, s, gpus)
		return // the first sample starts the stretch
	}
	window := min(s.Time.Sub(cur.last), 2*interval)
	cur.last = s.Time
	if window > 0 {
		cur.u.Window += window
		weighted := func(f float64) time.Duration { return time.Duration(f * float64(window)) }
		if s.GPUKnown {
			cur.u.UtilizationKnown += window
			cur.u.Used += weighted(eq * s.GPUPercent / 100)
		}
		if v == lifecycle.Idle {
			cur.u.Idle += weighted(eq)
		}
	}
	cur.peaks(h, s, gpus)
	if !s.Time.Before(cur.since.Truncate(UsagePeriod).Add(UsagePeriod)) {
		// The period is over: its stretch is written, and this sample opens the next.
		b.flush(h.c.ID, lg)
		next := &usage{user: h.a.Spec.User, allocation: h.a.Name, since: s.Time, last: s.Time, ref: usageRef(h)}
		next.peaks(h, s, gpus)
		b.acc[h.c.ID] = next
	}
}

// peaks raises the stretch's peaks to one sample's, device by device: the most memory used
// on one device, the busiest device's utilisation (the sample's, which is the container's
// own share where others use the GPU too; only when NVML gives one for every device), how
// many devices showed use (a utilisation above 0, or more than audit.BusyMemoryFloor of
// memory), and the GPU model. A device NVML did not read this round adds nothing.
func (cur *usage) peaks(h held, s lifecycle.Sample, gpus map[string]gpu.Sample) {
	for _, d := range h.a.Status.Devices {
		x, ok := gpus[d.UUID]
		if !ok {
			continue
		}
		cur.u.MemorySampled = true
		cur.u.PeakMemoryBytes = max(cur.u.PeakMemoryBytes, x.MemoryUsedBytes)
		cur.u.MemoryTotalBytes = max(cur.u.MemoryTotalBytes, x.MemoryTotalBytes)
		if (x.UtilizationKnown && x.UtilizationPercent > 0) || x.MemoryUsedBytes > audit.BusyMemoryFloor {
			if cur.busy == nil {
				cur.busy = map[string]bool{}
			}
			cur.busy[d.UUID] = true
		}
		if m := x.Telemetry.Info.Model; m != "" {
			cur.u.GPUModel = m
		}
	}
	cur.u.BusyDevices = len(cur.busy)
	if s.GPUKnown {
		cur.u.PeakUtilization = max(cur.u.PeakUtilization, s.GPUPercent)
		cur.u.HasPeakUtilization = true
	}
}

// forget writes what is counted for containers no longer holding GPUs.
func (b *usageBook) forget(keep map[string]bool, lg audit.Logger) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id := range b.acc {
		if !keep[id] {
			b.flush(id, lg)
		}
	}
}

// flush writes one container's record, if it covers any time; b.mu held.
func (b *usageBook) flush(id string, lg audit.Logger) {
	cur := b.acc[id]
	delete(b.acc, id)
	if cur == nil || cur.u.Window <= 0 {
		return
	}
	lg.Log(audit.GPUUsage(cur.user, cur.ref, cur.u))
}

// usageRef is the allocation's reference in its gpu.usage records, with the MIG profile of
// its devices (the first slice's) for the right-size advice.
func usageRef(h held) audit.Allocation {
	ref := audit.AllocationOf(h.a, containerstore.AuditRef(h.c))
	for _, d := range h.a.Status.Devices {
		if d.MIGProfile != "" {
			ref.MIGProfile = d.MIGProfile
			break
		}
	}
	return ref
}

package reclaim

import (
	"sync"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
)

// UsagePeriod is the longest stretch one gpu.usage record covers: `gpuwarden report` counts a
// running container's used and idle GPU-hours up to its last record, so this is how far
// behind it may be (an hour made USED GPU-H read 0.00 for a container busy for 50 minutes).
const UsagePeriod = 5 * time.Minute

// usageBook adds up, between sample rounds, each running GPU container's use of what it
// holds, and writes it to the audit log as gpu.usage records: at every UsagePeriod of the
// clock (:00, :05, …), and when the container stops holding GPUs. `gpuwarden report` counts
// used and idle GPU-hours from them.
type usageBook struct {
	mu  sync.Mutex
	acc map[string]*usage // by container ID
}

type usage struct {
	user, allocation string
	ref              audit.Allocation
	since, last      time.Time
	u                audit.Usage
}

// add counts one sample: the time since the container's previous sample (at most two
// intervals: a gap is not counted as use) at the sample's utilisation and verdict.
func (b *usageBook) add(h held, s lifecycle.Sample, v lifecycle.Verdict, interval time.Duration, lg audit.Logger) {
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
		b.acc[h.c.ID] = &usage{user: h.a.Spec.User, allocation: h.a.Name, since: s.Time, last: s.Time, ref: usageRef(h)}
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
	if !s.Time.Before(cur.since.Truncate(UsagePeriod).Add(UsagePeriod)) {
		// The period is over: its stretch is written, and this sample opens the next.
		b.flush(h.c.ID, lg)
		b.acc[h.c.ID] = &usage{user: h.a.Spec.User, allocation: h.a.Name, since: s.Time, last: s.Time, ref: usageRef(h)}
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

func usageRef(h held) audit.Allocation { return audit.AllocationOf(h.a, containerstore.AuditRef(h.c)) }

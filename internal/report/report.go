// Package report turns the audit log into a usage report per user, the way Slurm's sreport
// does for a cluster: GPU-hours allocated (from gpu.allocate and gpu.release), GPU-hours
// used and idle (from gpu.usage), what the lifecycle rules stopped and gave back, refused
// requests and waits, and right-size advice: the runs that would have fit a smaller MIG
// profile or fewer GPUs, judged by their peaks (Advice). It does no I/O: Add each event in
// time order, then ask for the Report.
package report

import (
	"slices"
	"strconv"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/audit"
)

// ReclaimCap bounds what one lifecycle stop is credited with giving back: the time from
// its release to the end of the period, at most a day (the owner might have come back).
const ReclaimCap = 24 * time.Hour

// Row is one user's period.
type Row struct {
	User string
	// AllocatedGPUHours is gpu-equivalents × time bound, within the period.
	AllocatedGPUHours float64
	// UsedGPUHours is gpu-equivalents × utilisation over the time NVML gave one (not on MIG
	// slices); UtilizationKnownHours is that time.
	UsedGPUHours, UtilizationKnownHours float64
	// IdleGPUHours is gpu-equivalents × the time the lifecycle rules judged it idle.
	IdleGPUHours float64
	IdleStops    int
	RuntimeStops int
	// ReclaimedGPUHours is what lifecycle stops gave back: gpu-equivalents × the time from
	// the release after the stop to the end of the period, at most ReclaimCap each.
	ReclaimedGPUHours float64
	Rejections        int
	// Binds and TotalWait are the requests bound and how long they waited; MaxWait is the
	// longest wait of any request, bound or refused.
	Binds              int
	TotalWait, MaxWait time.Duration
}

// MeanWait is the average wait of the user's bound requests.
func (r Row) MeanWait() time.Duration {
	if r.Binds == 0 {
		return 0
	}
	return r.TotalWait / time.Duration(r.Binds)
}

// Report is the period's rows, busiest first, their total and the refusals by reason.
type Report struct {
	Since, Until time.Time
	Rows         []Row
	Total        Row
	Rejections   map[string]int
	// Advice is the right-size advice (see Advice), most GPU-hours freed first; nil when
	// no run would have fit a smaller choice.
	Advice []Advice
}

// Builder adds events up. Since and Until bound the period; events before Since are read
// too, for the allocations bound before it.
type Builder struct {
	Since, Until time.Time
	// MIGProfile is the MIG profile whole-GPU runs are judged against for right-size advice
	// where the log shows no MIG slice of their GPU model; "" is DefaultMIGProfile.
	MIGProfile string

	rows       map[string]*Row
	open       map[string]binding  // by allocation
	byID       map[string]binding  // the allocation of each container ID seen
	ids        map[string][]string // the container IDs byID has of each open allocation
	stops      map[string]time.Time
	rejections map[string]int
	// runs are the allocations bound within the log, with their peaks, for the advice;
	// profiles the MIG profiles each GPU model shows.
	runs     map[string]*run
	profiles map[string]map[string]profile
}

type binding struct {
	user       string
	allocation string
	eq         float64
	start      time.Time
}

func (b *Builder) row(user string) *Row {
	if b.rows == nil {
		b.rows = map[string]*Row{}
	}
	if user == "" {
		user = "(unknown)"
	}
	r := b.rows[user]
	if r == nil {
		r = &Row{User: user}
		b.rows[user] = r
	}
	return r
}

func (b *Builder) in(t time.Time) bool {
	return !t.Before(b.Since) && (b.Until.IsZero() || t.Before(b.Until))
}

// overlap is how much of [from, to) lies in the period.
func (b *Builder) overlap(from, to time.Time) time.Duration {
	if from.Before(b.Since) {
		from = b.Since
	}
	if !b.Until.IsZero() && to.After(b.Until) {
		to = b.Until
	}
	return max(0, to.Sub(from))
}

func str(d map[string]any, k string) string {
	s, _ := d[k].(string)
	return s
}

func num(d map[string]any, k string) float64 {
	switch v := d[k].(type) {
	case float64:
		return v
	case int:
		return float64(v)
	case int64:
		return float64(v)
	case uint64:
		return float64(v)
	case string:
		f, _ := strconv.ParseFloat(v, 64)
		return f
	}
	return 0
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// held counts a binding's time in the period, until end.
func (b *Builder) held(bd binding, end time.Time) {
	if d := b.overlap(bd.start, end); d > 0 {
		b.row(bd.user).AllocatedGPUHours += bd.eq * d.Hours()
	}
}

// see notes that container id is bd's allocation's, until its release.
func (b *Builder) see(id string, bd binding) {
	if b.byID[id].allocation != bd.allocation {
		b.ids[bd.allocation] = append(b.ids[bd.allocation], id)
	}
	b.byID[id] = bd
}

// forget drops the container IDs of a released allocation: a month of log names many
// more containers than are ever open at once (the status page reads it every few minutes).
func (b *Builder) forget(alloc string) {
	for _, id := range b.ids[alloc] {
		if b.byID[id].allocation == alloc {
			delete(b.byID, id)
		}
	}
	delete(b.ids, alloc)
}

// Add counts one event; events must come in time order.
func (b *Builder) Add(e *audit.Event) {
	if b.open == nil {
		b.open, b.byID, b.stops, b.rejections = map[string]binding{}, map[string]binding{}, map[string]time.Time{}, map[string]int{}
		b.ids = map[string][]string{}
		b.runs = map[string]*run{}
	}
	if !b.Until.IsZero() && !e.Time.Before(b.Until) {
		return
	}
	d := e.Details
	alloc := str(d, "allocation")
	switch e.Type {
	case audit.TypeGPUAllocate:
		bd := binding{user: e.User, allocation: alloc, eq: num(d, "gpu_equivalents"), start: e.Time}
		b.open[alloc] = bd
		b.addRun(e.User, alloc, d, e.Time)
		if id := str(d, "container_id"); id != "" {
			b.see(id, bd)
		}
		if b.in(e.Time) {
			r := b.row(e.User)
			r.Binds++
			w := seconds(num(d, "wait_seconds"))
			r.TotalWait += w
			r.MaxWait = max(r.MaxWait, w)
		}
	case audit.TypeGPURelease:
		bd, ok := b.open[alloc]
		if !ok {
			return // bound before the log begins: its start is unknown
		}
		delete(b.open, alloc)
		b.held(bd, e.Time)
		b.forget(alloc)
		if r := b.runs[alloc]; r != nil {
			r.end, r.released = e.Time, true
			if b.overlap(r.start, r.end) <= 0 {
				delete(b.runs, alloc) // over before the period: nothing to judge
			}
		}
		if stopped, ok := b.stops[alloc]; ok && !stopped.After(e.Time) && b.in(e.Time) {
			delete(b.stops, alloc)
			until := b.Until
			if until.IsZero() || until.Sub(e.Time) > ReclaimCap {
				until = e.Time.Add(ReclaimCap)
			}
			b.row(bd.user).ReclaimedGPUHours += bd.eq * max(0, until.Sub(e.Time)).Hours()
		}
	case audit.TypeContainerCreate, audit.TypeContainerStart:
		// A gateway container names its allocation, whose gpu.allocate came before the
		// container had an ID: the stops of the container are the allocation's.
		if bd, ok := b.open[alloc]; ok && alloc != "" {
			if id := str(d, "container_id"); id != "" {
				b.see(id, bd)
			}
		}
	case audit.TypeGPUUsage:
		if id := str(d, "container_id"); id != "" {
			b.byID[id] = binding{user: e.User, allocation: alloc, eq: num(d, "gpu_equivalents")}
		}
		b.usageOf(alloc, d)
		if !b.in(e.Time) {
			return
		}
		r := b.row(e.User)
		r.UsedGPUHours += num(d, "used_gpu_seconds") / 3600
		r.UtilizationKnownHours += num(d, "utilization_known_seconds") * num(d, "gpu_equivalents") / 3600
		r.IdleGPUHours += num(d, "idle_gpu_seconds") / 3600
	case audit.TypeLifecycleIdleStop, audit.TypeLifecycleRuntimeStop:
		if !b.in(e.Time) {
			return
		}
		r := b.row(e.User)
		if e.Type == audit.TypeLifecycleIdleStop {
			r.IdleStops++
		} else {
			r.RuntimeStops++
		}
		if bd, ok := b.byID[str(d, "container_id")]; ok {
			b.stops[bd.allocation] = e.Time
		}
	case audit.TypeGPUReject:
		if b.in(e.Time) {
			r := b.row(e.User)
			r.Rejections++
			b.rejections[str(d, "reason")]++
			// A request that waited and was refused (or given up on) waited too.
			r.MaxWait = max(r.MaxWait, seconds(num(d, "wait_seconds")))
		}
	}
}

// Report closes the allocations still bound at the end of the period (or now) and returns
// the rows.
func (b *Builder) Report(now time.Time) Report {
	end := b.Until
	if end.IsZero() || end.After(now) {
		end = now
	}
	for _, bd := range b.open {
		b.held(bd, end)
	}
	out := Report{Since: b.Since, Until: end, Rejections: b.rejections, Total: Row{User: "TOTAL"}, Advice: b.advice(end)}
	for _, r := range b.rows {
		out.Rows = append(out.Rows, *r)
		t := &out.Total
		t.AllocatedGPUHours += r.AllocatedGPUHours
		t.UsedGPUHours += r.UsedGPUHours
		t.UtilizationKnownHours += r.UtilizationKnownHours
		t.IdleGPUHours += r.IdleGPUHours
		t.IdleStops += r.IdleStops
		t.RuntimeStops += r.RuntimeStops
		t.ReclaimedGPUHours += r.ReclaimedGPUHours
		t.Rejections += r.Rejections
		t.Binds += r.Binds
		t.TotalWait += r.TotalWait
		t.MaxWait = max(t.MaxWait, r.MaxWait)
	}
	slices.SortFunc(out.Rows, func(a, b Row) int {
		if a.AllocatedGPUHours != b.AllocatedGPUHours {
			if a.AllocatedGPUHours > b.AllocatedGPUHours {
				return -1
			}
			return 1
		}
		if a.User < b.User {
			return -1
		}
		return 1
	})
	return out
}

// Package queueweek replays a contended week of a shared GPU server through the queue of
// internal/allocation (Decide, Plan, SortQueue, the ledger's fair-share usage) in simulated
// time: more demand than GPUs at the peaks, heavy users with long multi-GPU trainings and
// light users with short jobs, every job under a runtime limit. It measures what the queue
// promises and what its order does: waits by kind of user, GPU-hours given out, latest
// starts broken, and how far estimated starts were from the real ones. The trace is
// generated from a seed, so every run replays the same week; nothing is timed.
package queueweek

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/allocation"
)

// Job is one request of the trace: who, how many GPUs, when it arrives, how long it runs
// once started (within MaxRuntime, which bounds it).
type Job struct {
	Name, User string
	Light      bool
	GPUs       int
	Arrive     time.Time
	Run        time.Duration
}

// MaxRuntime is every job's runtime limit (the sample policies' order of magnitude).
const MaxRuntime = 24 * time.Hour

// Trace is a week of jobs on a node of GPUs whole GPUs.
type Trace struct {
	Start time.Time
	Jobs  []Job
	GPUs  int
}

// Generate makes a week from seed: heavy users who keep submitting trainings of 1 to 4 GPUs
// (each user their own number) of 2 to 12 hours (each user their own length, ±25 %), one
// every 4 to 16 hours; and light users who submit one to three 1-GPU jobs of 20 minutes to
// 3 hours (their own length, ±25 %) in each weekday's working hours.
func Generate(seed uint64, heavy, light, gpus int) Trace {
	r := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	start := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC) // a Monday
	tr := Trace{Start: start, GPUs: gpus}
	add := func(user string, isLight bool, gpus int, at time.Time, run time.Duration) {
		tr.Jobs = append(tr.Jobs, Job{Name: fmt.Sprintf("%s-%d", user, len(tr.Jobs)), User: user, Light: isLight, GPUs: gpus, Arrive: at, Run: min(run, MaxRuntime)})
	}
	// around is a user's own job length, varied by up to a quarter either way: people rerun
	// the same training or notebook, which is what a typical hold stands for.
	around := func(minutes int) time.Duration {
		return time.Duration(float64(minutes)*(0.75+0.5*r.Float64())) * time.Minute
	}
	for u := range heavy {
		user, length, gpus := fmt.Sprintf("heavy%d", u), 2*60+r.IntN(10*60), 1+r.IntN(4)
		for at := start.Add(time.Duration(r.IntN(120)) * time.Minute); at.Before(start.Add(7 * 24 * time.Hour)); {
			add(user, false, gpus, at, around(length))
			at = at.Add(time.Duration(4*60+r.IntN(12*60)) * time.Minute)
		}
	}
	for u := range light {
		user, length := fmt.Sprintf("light%d", u), 20+r.IntN(160)
		for day := range 5 {
			for range 1 + r.IntN(3) {
				at := start.Add(time.Duration(day*24*60+9*60+r.IntN(8*60)) * time.Minute)
				add(user, true, 1, at, around(length))
			}
		}
	}
	sort.SliceStable(tr.Jobs, func(i, j int) bool { return tr.Jobs[i].Arrive.Before(tr.Jobs[j].Arrive) })
	return tr
}

// Result is what a replay measured.
type Result struct {
	// LightP95, HeavyP95: the 95th percentile of the wait from arrival to start.
	LightP95, HeavyP95 time.Duration
	// GPUHours are the GPU-hours given out within the week.
	GPUHours float64
	// Started and Waited count the jobs that started in the week, and those of them that
	// waited at all.
	Started, Waited int
	// Promised counts the waiting jobs given a latest start on arrival that no later
	// arrival overtook; Broken those of them that started after it.
	Promised, Broken int
	// EstimateError is the median of |estimated − real start| over the real wait, for the
	// jobs that waited, each estimated on arrival.
	EstimateError float64
}

// Replay runs the trace through the queue: FIFO (priority then age, as before the fair
// share) when fair is false, else fair share with halfLife.
func Replay(tr Trace, fair bool, halfLife time.Duration) Result {
	var t tally
	t.replay(tr, fair, halfLife)
	return t.result()
}

// ReplayWeeks replays a week generated from each seed and measures them together, as one
// long trace: one seeded week says little about an order's effect.
func ReplayWeeks(seeds []uint64, heavy, light, gpus int, fair bool, halfLife time.Duration) Result {
	var t tally
	for _, seed := range seeds {
		t.replay(Generate(seed, heavy, light, gpus), fair, halfLife)
	}
	return t.result()
}

// tally is what replays measured, pooled.
type tally struct {
	res                    Result
	lightWaits, heavyWaits []time.Duration
	errs                   []float64
}

func (t *tally) result() Result {
	res := t.res
	res.LightP95, res.HeavyP95 = p95(t.lightWaits), p95(t.heavyWaits)
	if len(t.errs) > 0 {
		slices.Sort(t.errs)
		res.EstimateError = t.errs[len(t.errs)/2]
	}
	return res
}

func (t *tally) replay(tr Trace, fair bool, halfLife time.Duration) {
	var inventory []allocation.Slot
	for i := range tr.GPUs {
		u := fmt.Sprintf("GPU-%d", i)
		inventory = append(inventory, allocation.Slot{GPUIndex: i, GPUUUID: u, UUID: u, Healthy: true})
	}
	end := tr.Start.Add(7 * 24 * time.Hour)
	book := allocation.Ledger{Bindings: map[string]allocation.Binding{}}
	jobs := map[string]*Job{}
	for i := range tr.Jobs {
		jobs[tr.Jobs[i].Name] = &tr.Jobs[i]
	}
	started := map[string]time.Time{}
	type promise struct {
		latest, estimate time.Time
		known            bool
	}
	promised := map[string]promise{}
	var waiting []*Job
	next := 0
	now := tr.Start
	for now.Before(end) {
		// Arrivals and ends at now.
		for next < len(tr.Jobs) && !tr.Jobs[next].Arrive.After(now) {
			waiting = append(waiting, &tr.Jobs[next])
			next++
		}
		for name, b := range book.Bindings {
			if j := jobs[name]; !started[name].Add(j.Run).After(now) {
				delete(book.Bindings, name)
				book.Charge(b, now, halfLife)
			}
		}
		waiting = pass(now, inventory, &book, waiting, fair, halfLife, started, func(name string, s allocation.Start) {
			if _, seen := promised[name]; !seen {
				promised[name] = promise{latest: s.Latest, estimate: s.Estimate, known: !s.Latest.IsZero()}
			}
		})
		// The next event: an arrival or an end.
		at := end
		if next < len(tr.Jobs) {
			at = tr.Jobs[next].Arrive
		}
		for name := range book.Bindings {
			if e := started[name].Add(jobs[name].Run); e.Before(at) {
				at = e
			}
		}
		now = at
	}

	res := &t.res
	for _, j := range tr.Jobs {
		s, ok := started[j.Name]
		if !ok {
			continue
		}
		res.Started++
		wait := s.Sub(j.Arrive)
		if j.Light {
			t.lightWaits = append(t.lightWaits, wait)
		} else {
			t.heavyWaits = append(t.heavyWaits, wait)
		}
		res.GPUHours += float64(j.GPUs) * earlier(s.Add(j.Run), end).Sub(s).Hours()
		p, waited := promised[j.Name]
		if !waited || wait <= 0 {
			continue
		}
		res.Waited++
		t.errs = append(t.errs, math.Abs(p.estimate.Sub(s).Hours())/wait.Hours())
		if p.known && !overtaken(tr.Jobs, started, j) {
			res.Promised++
			if s.After(p.latest.Add(time.Second)) {
				res.Broken++
			}
		}
	}
}

// pass is one allocation pass at now: the waiting jobs in the queue's order, each bound if
// it fits what is free and not promised to a job ahead, else planned (promise is told its
// start); it returns those still waiting.
func pass(now time.Time, inventory []allocation.Slot, book *allocation.Ledger, waiting []*Job, fair bool, halfLife time.Duration,
	started map[string]time.Time, promise func(string, allocation.Start)) []*Job {
	type queued struct {
		job   *Job
		share float64
	}
	var queue []queued
	for _, j := range waiting {
		q := queued{job: j}
		if fair {
			q.share = allocation.FairShare{Use: book.RecentUse(j.User, now, halfLife), Quota: float64(len(inventory))}.Value()
		}
		queue = append(queue, q)
	}
	allocation.SortQueue(queue, func(q queued) allocation.Queued {
		return allocation.Queued{Name: q.job.Name, Share: q.share, Created: q.job.Arrive}
	})
	typical := func(user string) time.Duration {
		if d, ok := book.Usage[user].TypicalHold(); ok {
			return min(d, MaxRuntime)
		}
		return time.Hour
	}
	var holders []allocation.Holder
	for _, name := range slices.Sorted(maps.Keys(book.Bindings)) {
		b := book.Bindings[name]
		h := allocation.Holder{Name: name, Latest: b.BoundAt.Add(MaxRuntime)}
		h.Estimate = allocation.EstimateEnd(b.BoundAt, now, typical(b.User), h.Latest)
		for _, s := range b.Slots {
			h.Slots = append(h.Slots, s.UUID)
		}
		holders = append(holders, h)
	}
	plan := allocation.NewPlan(inventory, holders, now)
	var still []*Job
	for _, q := range queue {
		w := allocation.Waiter{Name: q.job.Name, Request: allocation.Request{User: q.job.User, GPUs: q.job.GPUs}, MaxRuntime: MaxRuntime, Typical: typical(q.job.User)}
		d := allocation.Decide(inventory, append(book.Holdings(), plan.Reserved(w.MaxRuntime)...), allocation.Quota{}, w.Request)
		if d.Placed() {
			book.Bind(q.job.Name, q.job.User, "node", d.Slots, now)
			started[q.job.Name] = now
			plan.Started(w, d.Slots)
			continue
		}
		promise(q.job.Name, plan.Reserve(w))
		still = append(still, q.job)
	}
	return still
}

// overtaken reports whether a job that arrived after j started before it.
func overtaken(jobs []Job, started map[string]time.Time, j Job) bool {
	for _, o := range jobs {
		if s, ok := started[o.Name]; ok && o.Arrive.After(j.Arrive) && s.Before(started[j.Name]) {
			return true
		}
	}
	return false
}

func p95(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(math.Ceil(0.95*float64(len(d))))-1)]
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

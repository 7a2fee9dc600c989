// Package borrowweek replays a week of a lab server whose GPUs are divided among its users
// by quota, with borrowing off and on, through the allocator's own functions (Decide with
// a quota's borrowing, SortLenders and Fewest to choose what is given back, the ledger's
// charges): four users with a quota of two GPUs each on eight GPUs; each works in the day
// within their quota, and two of them keep backlogs of sweeps they would run beyond it in
// the evenings and at weekends. With borrowing on, the sweeps run on GPUs that would
// otherwise stay free and are given back (checkpoint hook, stop, release) when a request
// within its quota waits; the given-back job resumes from its checkpoint when it can. It
// also replays a month of GPU-hour budgets. The traces come from seeds; nothing is timed.
package borrowweek

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/allocation"
)

// Job is one request: who, how many GPUs, when, how long it runs; Extra when its user asks
// for it beyond their quota (a sweep).
type Job struct {
	Name, User string
	GPUs       int
	Arrive     time.Time
	Run        time.Duration
	Extra      bool
}

// Setting is how a give-back takes time: the checkpoint hook's run (uniform up to Hook),
// the stop (Grace when the job ignores SIGTERM, which half do; a second otherwise) and the
// node's give-back sweep and the allocation pass after it (Pass).
type Setting struct {
	Hook, Grace, Pass time.Duration
}

// DefaultSetting is the sample policies' grace period, hooks of up to two minutes and the
// sweep's two seconds.
var DefaultSetting = Setting{Hook: 2 * time.Minute, Grace: 60 * time.Second, Pass: 2 * time.Second}

const (
	users = 4
	quota = 2
	gpus  = 8
)

// Generate makes a week from seed.
func Generate(seed uint64) []Job {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	start := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC) // a Monday
	var jobs []Job
	add := func(user string, g int, at time.Time, run time.Duration, extra bool) {
		jobs = append(jobs, Job{Name: fmt.Sprintf("%s-%d", user, len(jobs)), User: user, GPUs: g, Arrive: at, Run: run, Extra: extra})
	}
	for u := range users {
		user := fmt.Sprintf("user%d", u)
		for day := range 7 {
			if day < 5 { // work in the day: one to four jobs of one or two GPUs, 1 to 5 hours
				for range 1 + r.IntN(4) {
					at := start.Add(time.Duration(day*24*60+8*60+r.IntN(9*60)) * time.Minute)
					add(user, 1+r.IntN(2), at, time.Duration(60+r.IntN(4*60))*time.Minute, false)
				}
			}
			if u < 2 { // sweeps beyond the quota: evenings, and all day at the weekend
				from, span := 18*60, 5*60
				if day >= 5 {
					from, span = 6*60, 16*60
				}
				for range 6 + r.IntN(5) {
					at := start.Add(time.Duration(day*24*60+from+r.IntN(span)) * time.Minute)
					add(user, 1, at, time.Duration(3*60+r.IntN(7*60))*time.Minute, true)
				}
			}
		}
	}
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].Arrive.Before(jobs[j].Arrive) })
	return jobs
}

// Result is what a replay measured.
type Result struct {
	// GPUHours given out within the week.
	GPUHours float64
	// InQuotaP95 is the 95th percentile wait of the requests within their user's quota on
	// arrival (what they held of their own share and the request fit in it).
	InQuotaP95 time.Duration
	// Reclaims counts the give-backs; Delays are the times from the give-back made for a
	// request within its quota to its bind (it waits for nothing else then).
	Reclaims int
	Delays   []time.Duration
}

// DelayP is the p-th percentile (0 < p ≤ 1) of the delays.
func (r Result) DelayP(p float64) time.Duration { return percentile(r.Delays, p) }

type running struct {
	job     *Job
	started time.Time
	left    time.Duration // run left when it started
	back    time.Time     // when its give-back ends (zero: not asked)
}

// Replay runs the jobs through a week with borrowing on or off.
func Replay(jobs []Job, borrow bool, s Setting, seed uint64) Result {
	r := rand.New(rand.NewPCG(seed, 7))
	var inventory []allocation.Slot
	for i := range gpus {
		u := fmt.Sprintf("GPU-%d", i)
		inventory = append(inventory, allocation.Slot{GPUIndex: i, GPUUUID: u, UUID: u, Healthy: true})
	}
	q := allocation.Quota{GPUEquivalents: allocation.Limit[float64]{Set: true, Value: quota, From: "GPUQuota lab"}}
	if borrow {
		q.Borrow = allocation.Limit[float64]{Set: true, Value: gpus - quota, From: "GPUQuota lab"}
	}
	start := jobs[0].Arrive.Truncate(24 * time.Hour)
	end := start.Add(7 * 24 * time.Hour)
	book := allocation.Ledger{Bindings: map[string]allocation.Binding{}}
	run := map[string]*running{}
	left := map[string]time.Duration{} // run still owed to jobs given back
	arrived := map[string]time.Time{}
	var res Result
	var waits []time.Duration
	gaveBackFor := map[string]time.Time{} // the requests a give-back was started for, and when
	within := map[string]bool{}           // the requests within their user's quota on arrival
	var waiting []*Job
	next := 0
	for now := start; now.Before(end); now = now.Add(time.Second * 10) {
		for next < len(jobs) && !jobs[next].Arrive.After(now) {
			j := &jobs[next]
			waiting, arrived[j.Name], left[j.Name] = append(waiting, j), j.Arrive, j.Run
			within[j.Name] = own(book, j.User)+float64(j.GPUs) <= quota
			next++
		}
		// Ends and give-backs.
		for name, x := range run {
			done := !x.started.Add(x.left).After(now)
			gone := !x.back.IsZero() && !x.back.After(now)
			if !done && !gone {
				continue
			}
			book.Charge(book.Bindings[name], now, time.Hour)
			delete(book.Bindings, name)
			delete(run, name)
			if gone && !done { // resumes from its checkpoint
				left[name] = x.left - now.Sub(x.started)
				waiting = append(waiting, x.job)
			}
		}
		book.Settle(func(string) (float64, bool) { return quota, true })
		sort.SliceStable(waiting, func(i, j int) bool { return arrived[waiting[i].Name].Before(arrived[waiting[j].Name]) })
		// A pass: requests within their quota first, then borrowing while none waits.
		var still, borrowers, inQuota []*Job
		for _, j := range waiting {
			d := allocation.Decide(inventory, book.Holdings(), q, allocation.Request{User: j.User, GPUs: j.GPUs})
			switch {
			case d.Borrowed:
				// Beyond its user's quota now (their borrowed holds became their own as
				// their own ended): no longer a request within its quota. Likewise below.
				delete(gaveBackFor, j.Name)
				borrowers = append(borrowers, j)
			case d.Placed():
				bind(&book, run, j, d, now, left[j.Name])
				if at, ok := gaveBackFor[j.Name]; ok && left[j.Name] == j.Run {
					res.Delays = append(res.Delays, now.Sub(at))
				}
				waits = countWait(waits, j, now, arrived, left, within)
			case d.Reason == "NoCapacity":
				inQuota = append(inQuota, j)
				still = append(still, j)
			default: // beyond the quota (and what may be borrowed): it waits until within it
				delete(gaveBackFor, j.Name)
				still = append(still, j)
			}
		}
		if borrow && len(inQuota) > 0 {
			res.Reclaims += giveBack(now, inventory, &book, run, inQuota, q, s, r, gaveBackFor)
		}
		for _, j := range borrowers {
			if len(inQuota) == 0 {
				if d := allocation.Decide(inventory, book.Holdings(), q, allocation.Request{User: j.User, GPUs: j.GPUs}); d.Placed() {
					bind(&book, run, j, d, now, left[j.Name])
					waits = countWait(waits, j, now, arrived, left, within)
					continue
				}
			}
			still = append(still, j)
		}
		waiting = still
	}
	for name := range run {
		book.Charge(book.Bindings[name], end, time.Hour)
	}
	for _, u := range book.Usage {
		for _, h := range u.Days {
			res.GPUHours += h
		}
	}
	res.InQuotaP95 = percentile(waits, 0.95)
	return res
}

// countWait adds the wait of a request that was within its user's quota on arrival (not
// a resumed job's).
func countWait(waits []time.Duration, j *Job, now time.Time, arrived map[string]time.Time, left map[string]time.Duration, within map[string]bool) []time.Duration {
	if !within[j.Name] || left[j.Name] != j.Run {
		return waits
	}
	return append(waits, now.Sub(arrived[j.Name]))
}

// own is what user holds of their own quota (not borrowed).
func own(book allocation.Ledger, user string) float64 {
	total := 0.0
	for _, b := range book.Bindings {
		if b.User == user && !b.Borrowed {
			for _, s := range b.Slots {
				total += s.Weight
			}
		}
	}
	return total
}

func bind(book *allocation.Ledger, run map[string]*running, j *Job, d allocation.Decision, now time.Time, left time.Duration) {
	b := book.Bind(j.Name, j.User, "node", d.Slots, now)
	b.Borrowed = d.Borrowed
	book.Bindings[j.Name] = b
	run[j.Name] = &running{job: j, started: now, left: left}
}

// giveBack asks borrowed jobs back for the waiting requests within their quota, as the
// allocator does; it returns how many were asked.
func giveBack(now time.Time, inventory []allocation.Slot, book *allocation.Ledger, run map[string]*running, waiting []*Job, q allocation.Quota, s Setting, r *rand.Rand, gaveBackFor map[string]time.Time) int {
	var lenders []allocation.Lender
	asked := map[string]bool{}
	for name, b := range book.Bindings {
		switch {
		case !b.Borrowed:
		case !run[name].back.IsZero():
			asked[name] = true
		default:
			lenders = append(lenders, allocation.Lender{Name: name, BoundAt: b.BoundAt})
		}
	}
	allocation.SortLenders(lenders)
	held := slices.DeleteFunc(book.Holdings(), func(h allocation.Holding) bool { return asked[h.Name] })
	n := 0
	for _, j := range waiting {
		req := allocation.Request{User: j.User, GPUs: j.GPUs}
		d := allocation.Decide(inventory, held, q, req)
		var took []allocation.Lender
		if !d.Placed() {
			took, d = allocation.Fewest(inventory, held, lenders, q, req)
		}
		if !d.Placed() {
			continue
		}
		if _, ok := gaveBackFor[j.Name]; !ok && len(took) > 0 {
			gaveBackFor[j.Name] = now
		}
		held = append(allocation.Without(held, took), allocation.Holds("waiting/"+j.Name, j.User, d.Slots))
		for _, l := range took {
			stop := time.Second
			if r.IntN(2) == 0 {
				stop = s.Grace
			}
			run[l.Name].back = now.Add(time.Duration(r.Int64N(int64(s.Hook))) + stop + s.Pass)
			lenders = slices.DeleteFunc(lenders, func(x allocation.Lender) bool { return x.Name == l.Name })
			n++
		}
	}
	return n
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[min(len(d)-1, int(math.Ceil(p*float64(len(d))))-1)]
}

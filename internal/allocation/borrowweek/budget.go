package borrowweek

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/allocation"
)

// BudgetResult is what a month of budgets measured.
type BudgetResult struct {
	Requests, Granted, Refused int
	// GrantedBeyond counts requests granted while their user's use in the window was at or
	// past their budget (the promise: none).
	GrantedBeyond int
	// Over are the users whose use passed their budget; MaxOverrun the most a user's use
	// ended past it, in gpu-hours (holds granted before it go on to their end).
	Over       []string
	MaxOverrun float64
}

// BudgetMonth replays December 2026 on eight GPUs: six users with a budget of 300
// gpu-hours per calendar month, two of whom submit far more (trainings of one or two GPUs,
// four to twelve hours, one after another) than their budget; the others a job or two a
// day. Requests past a budget are refused as the allocator refuses them.
func BudgetMonth(seed uint64) BudgetResult {
	r := rand.New(rand.NewPCG(seed, 11))
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 1, 0)
	const budget = 300
	var jobs []Job
	for u := range 6 {
		user := fmt.Sprintf("user%d", u)
		for at := start.Add(time.Duration(r.IntN(600)) * time.Minute); at.Before(end); {
			if u < 2 {
				jobs = append(jobs, Job{Name: fmt.Sprintf("%s-%d", user, len(jobs)), User: user, GPUs: 1 + r.IntN(2), Arrive: at, Run: time.Duration(4*60+r.IntN(8*60)) * time.Minute})
				at = at.Add(time.Duration(3*60+r.IntN(6*60)) * time.Minute)
			} else {
				jobs = append(jobs, Job{Name: fmt.Sprintf("%s-%d", user, len(jobs)), User: user, GPUs: 1, Arrive: at, Run: time.Duration(60+r.IntN(3*60)) * time.Minute})
				at = at.Add(time.Duration(12*60+r.IntN(24*60)) * time.Minute)
			}
		}
	}
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].Arrive.Before(jobs[j].Arrive) })
	var inventory []allocation.Slot
	for i := range gpus {
		u := fmt.Sprintf("GPU-%d", i)
		inventory = append(inventory, allocation.Slot{GPUIndex: i, GPUUUID: u, UUID: u, Healthy: true})
	}
	window := allocation.Window{Month: true}
	book := allocation.Ledger{Bindings: map[string]allocation.Binding{}}
	ends := map[string]time.Time{}
	var res BudgetResult
	var waiting []*Job
	next := 0
	for now := start; now.Before(end); now = now.Add(time.Minute) {
		for next < len(jobs) && !jobs[next].Arrive.After(now) {
			waiting = append(waiting, &jobs[next])
			res.Requests++
			next++
		}
		for name, e := range ends {
			if !e.After(now) {
				book.Charge(book.Bindings[name], now, time.Hour)
				delete(book.Bindings, name)
				delete(ends, name)
			}
		}
		var still []*Job
		for _, j := range waiting {
			used := book.Spent([]string{j.User}, window, now)
			q := allocation.Quota{Budget: allocation.Limit[float64]{Set: true, Value: budget, From: "GPUQuota lab"}, BudgetWindow: window, BudgetUsed: used}
			d := allocation.Decide(inventory, book.Holdings(), q, allocation.Request{User: j.User, GPUs: j.GPUs})
			switch {
			case d.Placed():
				if used >= budget {
					res.GrantedBeyond++
				}
				res.Granted++
				book.Bind(j.Name, j.User, "node", d.Slots, now)
				ends[j.Name] = now.Add(j.Run)
			case d.Final():
				res.Refused++
			default:
				still = append(still, j)
			}
		}
		waiting = still
	}
	for u := range 6 {
		user := fmt.Sprintf("user%d", u)
		if used := book.Spent([]string{user}, window, end.Add(-time.Second)); used > budget {
			res.Over = append(res.Over, user)
			res.MaxOverrun = max(res.MaxOverrun, used-budget)
		}
	}
	slices.Sort(res.Over)
	return res
}

package allocation

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/notify"

	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// budgetUsers are the users whose use counts against q's budget: the user, or for a
// budget a Shared quota sets, everyone that quota matches who used or holds GPUs lately.
func (p *pass) budgetUsers(ctx context.Context, user string, q resolve.Quota) []string {
	if !q.Budget.Shared {
		return []string{user}
	}
	users := []string{user}
	seen := map[string]bool{user: true}
	candidates := make([]string, 0, len(p.ledger.Usage)+len(p.ledger.Bindings))
	for u := range p.ledger.Usage {
		candidates = append(candidates, u)
	}
	for _, b := range p.ledger.Bindings {
		candidates = append(candidates, b.User)
	}
	for _, sq := range q.SharedQuotas {
		if "GPUQuota "+sq.Name != q.Budget.From {
			continue
		}
		for _, u := range candidates {
			if !seen[u] && resolve.QuotaMatches(sq, u, p.groupsOf(ctx, u)) {
				seen[u] = true
				users = append(users, u)
			}
		}
	}
	slices.Sort(users)
	return users
}

// withBudget fills in what q's budget has used (and, when it is used up, when enough frees
// up) for a request of user.
func (p *pass) withBudget(ctx context.Context, user string, q resolve.Quota) resolve.Quota {
	if !q.Budget.Set || q.Budget.Unlimited {
		return q
	}
	users := p.budgetUsers(ctx, user, q)
	q.BudgetPool = users
	q.BudgetUsed = p.ledger.Spent(users, q.BudgetWindow, p.now)
	if q.BudgetUsed >= q.Budget.Value-allocation.Epsilon {
		q.BudgetFrees = p.ledger.BudgetFrees(users, q.BudgetWindow, p.now, q.Budget.Value, 0)
	}
	return q
}

// Notifier tells users what happens to their budgets.
type Notifier interface {
	Tell(ctx context.Context, n notify.Notice)
}

// budgetLevel is the share of a budget reached that users are told of: 0, 80 or 100.
func budgetLevel(b *gpuwardenv1alpha1.BudgetUsage) int32 {
	used, err1 := strconv.ParseFloat(b.UsedGPUHours, 64)
	limit, err2 := strconv.ParseFloat(b.GPUHours, 64)
	switch {
	case err1 != nil || err2 != nil:
		return 0
	case used >= limit:
		return 100
	case used >= 0.8*limit:
		return 80
	}
	return 0
}

// budgetNotices carries over what each user was told of their budget (status told) into
// users, and returns the notices of each level newly reached: each level is told once per
// time it is reached, both where one step passes both (a rolling window that frees up below
// a level resets it).
func budgetNotices(q *gpuwardenv1alpha1.GPUQuota, users []gpuwardenv1alpha1.UserUsage, now time.Time) ([]gpuwardenv1alpha1.UserUsage, []notify.Notice) {
	told := map[string]int32{}
	for _, u := range q.Status.Usage {
		if u.Budget != nil {
			told[u.User] = u.Budget.Told
		}
	}
	var out []notify.Notice
	users = slices.Clone(users)
	for i := range users {
		b := users[i].Budget
		if b == nil {
			continue
		}
		b = b.DeepCopy()
		users[i].Budget = b
		level := budgetLevel(b)
		b.Told = min(told[users[i].User], level)
		for _, l := range []int32{80, 100} { // each level passed is told, even at once
			if b.Told < l && l <= level {
				out = append(out, budgetNotice(users[i].User, b, l, now))
			}
		}
		b.Told = level
	}
	return users, out
}

// budgetNotice tells a user their budget's use reached level percent.
func budgetNotice(user string, b *gpuwardenv1alpha1.BudgetUsage, level int32, now time.Time) notify.Notice {
	n := notify.Notice{Type: notify.TypeBudgetWarning, Title: "BUDGET", User: user, Time: now.UTC(), Mode: string(gpuwardenv1alpha1.ModeEnforce)}
	window := "the last " + b.Window
	if w, err := allocation.ParseWindow(b.Window); err == nil {
		window = w.Phrase()
	}
	pct := ""
	if used, err1 := strconv.ParseFloat(b.UsedGPUHours, 64); err1 == nil {
		if limit, err2 := strconv.ParseFloat(b.GPUHours, 64); err2 == nil && limit > 0 {
			pct = fmt.Sprintf(", %.0f %%", 100*used/limit)
		}
	}
	n.Message = fmt.Sprintf("You used %s of your %s gpu-hour budget in %s (%s)%s: past %d %%. Past all of it, new GPU requests are refused (BudgetExceeded).",
		b.UsedGPUHours, b.GPUHours, window, b.From, pct, level)
	if level >= 100 {
		n.Type = notify.TypeBudgetExhausted
		n.Message = fmt.Sprintf("You used your whole %s gpu-hour budget in %s (%s): %s gpu-hours. New GPU requests are refused (BudgetExceeded) until enough of it frees up; running containers go on.",
			b.GPUHours, window, b.From, b.UsedGPUHours)
	}
	return n
}

// budgetEvery is how often budgets' use is counted again while GPUs are held.
const budgetEvery = time.Minute

// budgeted reports whether any quota sets a GPU-hour budget.
func budgeted(quotas []gpuwardenv1alpha1.GPUQuota) bool {
	for i := range quotas {
		if b := quotas[i].Spec.Budget; b != nil && b.GPUHours != nil {
			return true
		}
	}
	return false
}

package allocation

import (
	"context"
	"slices"

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

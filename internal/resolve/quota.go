package resolve

import (
	"slices"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
)

// Quota is a user's effective quota with where each value came from.
type Quota struct {
	allocation.Quota
	Priority allocation.Limit[int32]
	// BudgetWindowFrom names the quota that set the budget's window ("": the default).
	BudgetWindowFrom string
	// Matched are the quotas that apply, in merge order.
	Matched []string
	// SharedQuotas are the Shared quotas among them, for the pool of a budget.
	SharedQuotas []*gpuwardenv1alpha1.GPUQuota
	// ReservedGPUHours is how much the user may book ahead per budget window (unset: none).
	ReservedGPUHours allocation.Limit[float64]
}

// QuotaMatches reports whether q's subjects include the user.
func QuotaMatches(q *gpuwardenv1alpha1.GPUQuota, user string, groups []string) bool {
	return SubjectsInclude(q.Spec.Subjects, user, groups)
}

// SubjectsInclude reports whether subjects name the user: by name, by a group of theirs, or
// as everyone.
func SubjectsInclude(subjects []gpuwardenv1alpha1.Subject, user string, groups []string) bool {
	for _, s := range subjects {
		switch s.Kind {
		case gpuwardenv1alpha1.SubjectEveryone:
			return true
		case gpuwardenv1alpha1.SubjectUser:
			if s.Name == user {
				return true
			}
		case gpuwardenv1alpha1.SubjectGroup:
			if slices.Contains(groups, s.Name) {
				return true
			}
		}
	}
	return false
}

// EffectiveQuota merges the quotas that match user in ascending precedence. holders are
// the users who hold GPUs now, with their groups: those matched by a Shared quota that sets
// a limit form the pool whose holdings count against it.
func EffectiveQuota(quotas []gpuwardenv1alpha1.GPUQuota, user string, groups []string, holders map[string][]string) Quota {
	var matched []*gpuwardenv1alpha1.GPUQuota
	for i := range quotas {
		if QuotaMatches(&quotas[i], user, groups) {
			matched = append(matched, &quotas[i])
		}
	}
	byPrecedence(matched, func(q *gpuwardenv1alpha1.GPUQuota) int32 { return q.Spec.Precedence }, func(q *gpuwardenv1alpha1.GPUQuota) string { return q.Name })
	var out Quota
	var shared []*gpuwardenv1alpha1.GPUQuota
	for _, q := range matched {
		from := "GPUQuota " + q.Name
		out.Matched = append(out.Matched, q.Name)
		isShared := q.Spec.Scope == gpuwardenv1alpha1.ScopeShared
		unlimited := func(n gpuwardenv1alpha1.QuotaLimitName) bool { return slices.Contains(q.Spec.Unlimited, n) }
		l := q.Spec.Limits
		switch {
		case unlimited(gpuwardenv1alpha1.LimitGPUEquivalents):
			out.GPUEquivalents = allocation.Limit[float64]{Set: true, Unlimited: true, From: from}
		case l.GPUEquivalents != nil:
			out.GPUEquivalents = allocation.Limit[float64]{Set: true, Value: l.GPUEquivalents.AsApproximateFloat64(), From: from, Shared: isShared}
		}
		switch {
		case unlimited(gpuwardenv1alpha1.LimitMaxGPUsPerContainer):
			out.MaxGPUsPerContainer = allocation.Limit[int]{Set: true, Unlimited: true, From: from}
		case l.MaxGPUsPerContainer != nil:
			out.MaxGPUsPerContainer = allocation.Limit[int]{Set: true, Value: int(*l.MaxGPUsPerContainer), From: from}
		}
		switch {
		case unlimited(gpuwardenv1alpha1.LimitMaxContainers):
			out.MaxContainers = allocation.Limit[int]{Set: true, Unlimited: true, From: from}
		case l.MaxContainers != nil:
			out.MaxContainers = allocation.Limit[int]{Set: true, Value: int(*l.MaxContainers), From: from, Shared: isShared}
		}
		switch {
		case unlimited(gpuwardenv1alpha1.LimitReservedGPUHours):
			out.ReservedGPUHours = allocation.Limit[float64]{Set: true, Unlimited: true, From: from}
		case l.ReservedGPUHours != nil:
			out.ReservedGPUHours = allocation.Limit[float64]{Set: true, Value: l.ReservedGPUHours.AsApproximateFloat64(), From: from}
		}
		if l.AllowFullGPU != nil {
			out.AllowFullGPU = allocation.Limit[bool]{Set: true, Value: *l.AllowFullGPU, From: from}
		}
		if b := q.Spec.Borrowing; b != nil && b.GPUEquivalents != nil {
			out.Borrow = allocation.Limit[float64]{Set: true, Value: b.GPUEquivalents.AsApproximateFloat64(), From: from, Shared: isShared}
		}
		switch b := q.Spec.Budget; {
		case unlimited(gpuwardenv1alpha1.LimitBudget):
			out.Budget = allocation.Limit[float64]{Set: true, Unlimited: true, From: from}
		case b != nil && b.GPUHours != nil:
			out.Budget = allocation.Limit[float64]{Set: true, Value: b.GPUHours.AsApproximateFloat64(), From: from, Shared: isShared}
		}
		if b := q.Spec.Budget; b != nil && b.Window != "" {
			if w, err := allocation.ParseWindow(b.Window); err == nil {
				out.BudgetWindow, out.BudgetWindowFrom = w, from
			}
		}
		if q.Spec.Priority != nil {
			out.Priority = allocation.Limit[int32]{Set: true, Value: *q.Spec.Priority, From: from}
		}
		if isShared {
			shared = append(shared, q)
		}
	}
	out.SharedQuotas = shared
	if out.BudgetWindowFrom == "" && (out.Budget.Set || out.ReservedGPUHours.Set) {
		out.BudgetWindow, _ = allocation.ParseWindow(allocation.DefaultBudgetWindow)
	}
	if out.GPUEquivalents.Shared || out.MaxContainers.Shared || out.Borrow.Shared || out.Budget.Shared {
		out.Pool = []string{user}
		for holder, hg := range holders {
			for _, q := range shared {
				if holder != user && QuotaMatches(q, holder, hg) && !slices.Contains(out.Pool, holder) {
					out.Pool = append(out.Pool, holder)
				}
			}
		}
		slices.Sort(out.Pool)
	}
	return out
}

package resolve

import (
	"slices"
	"sort"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// ExemptionOverride is an exemption of a policy (a limit its spec.unlimited names) that
// another policy, merged after it, cancels for the containers both select by setting the
// limit: what an admin should know before a container counted on the exemption is stopped.
type ExemptionOverride struct {
	Limit gpuwardenv1alpha1.PolicyLimitName
	// By is the policy that sets the limit again, and Value the limit it sets (30m0s).
	By    *gpuwardenv1alpha1.ContainerPolicy
	Value string
}

// ExemptionOverrides are the exemptions of p that policies merged after it (of higher
// precedence, or of the same precedence and a later name) cancel for some container both
// may select, at now: every such policy, by limit, then by merge order. Expired and unusable
// policies cancel nothing. Whether a container is selected by both is decided from the
// selectors alone: users, container types and labels that exclude each other rule a pair
// out; groups never do (a user may be in both).
func ExemptionOverrides(policies []gpuwardenv1alpha1.ContainerPolicy, p *gpuwardenv1alpha1.ContainerPolicy, now time.Time) []ExemptionOverride {
	if len(p.Spec.Unlimited) == 0 || PolicyProblem(p) != nil {
		return nil
	}
	var out []ExemptionOverride
	for i := range policies {
		h := &policies[i]
		if h.Name == p.Name || !mergedAfter(h, p) || PolicyProblem(h) != nil ||
			(h.Spec.Expires != nil && !now.Before(h.Spec.Expires.Time)) || !mayOverlap(p, h) {
			continue
		}
		sets := map[string]string{}
		for _, f := range durationFields(&h.Spec) {
			d, _ := ParseDuration(*f.value)
			sets[f.path] = d.String()
		}
		for _, name := range p.Spec.Unlimited {
			if v, ok := sets[unlimitedPaths[name]]; ok && !slices.Contains(h.Spec.Unlimited, name) {
				out = append(out, ExemptionOverride{Limit: name, By: h, Value: v})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Limit != out[j].Limit {
			return out[i].Limit < out[j].Limit
		}
		return mergedAfter(out[j].By, out[i].By)
	})
	return out
}

// mergedAfter reports whether EffectivePolicy merges a after b: a higher precedence, or the
// same and a later name.
func mergedAfter(a, b *gpuwardenv1alpha1.ContainerPolicy) bool {
	if a.Spec.Precedence != b.Spec.Precedence {
		return a.Spec.Precedence > b.Spec.Precedence
	}
	return a.Name > b.Name
}

// mayOverlap reports whether some container may be selected by both a and b.
func mayOverlap(a, b *gpuwardenv1alpha1.ContainerPolicy) bool {
	sa, sb := a.Spec.Selector, b.Spec.Selector
	if len(sa.Users) > 0 && len(sb.Users) > 0 && !intersects(sa.Users, sb.Users) {
		return false
	}
	for k, v := range sa.Labels {
		if w, ok := sb.Labels[k]; ok && w != v {
			return false
		}
	}
	if len(sa.ContainerTypes) == 0 || len(sb.ContainerTypes) == 0 || intersects(sa.ContainerTypes, sb.ContainerTypes) {
		return true
	}
	// A container whose type its owner claimed is seen as ClaimedTypeSeenAs by a policy
	// that does not trust claims, and as the claimed type by one that does.
	switch ta, tb := TrustsClaimedType(a), TrustsClaimedType(b); {
	case ta && !tb:
		return slices.Contains(sb.ContainerTypes, ClaimedTypeSeenAs)
	case tb && !ta:
		return slices.Contains(sa.ContainerTypes, ClaimedTypeSeenAs)
	}
	return false
}

func intersects[T comparable](a, b []T) bool {
	return slices.ContainsFunc(a, func(x T) bool { return slices.Contains(b, x) })
}

package lifecycle

import (
	"strings"
	"testing"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// TestUnused: an allocation no container uses goes back releaseUnusedAfter after its
// binding: the policy's, 1h where none sets it, never where one lifts it; a policy of higher
// precedence that sets it again wins over a lower one that lifted it.
func TestUnused(t *testing.T) {
	for _, tc := range []struct {
		name       string
		policies   []gpuwardenv1alpha1.ContainerPolicySpec
		bound      time.Duration // ago
		wantDue    string
		wantComing time.Duration // from now; 0: none
	}{
		{name: "no policy: the default, not yet", bound: 30 * time.Minute, wantComing: 30 * time.Minute},
		{name: "no policy: the default, due", bound: 61 * time.Minute, wantDue: "releaseUnusedAfter is 1h0m0s (gpuwarden's default)"},
		{name: "the policy's", policies: []gpuwardenv1alpha1.ContainerPolicySpec{{ReleaseUnusedAfter: d(10 * time.Minute)}}, bound: 11 * time.Minute,
			wantDue: "no container used it in the 11m0s since it was bound; releaseUnusedAfter is 10m0s (ContainerPolicy base)"},
		{name: "lifted", policies: []gpuwardenv1alpha1.ContainerPolicySpec{{Unlimited: []gpuwardenv1alpha1.PolicyLimitName{gpuwardenv1alpha1.PolicyLimitReleaseUnusedAfter}}},
			bound: 1000 * time.Hour},
		{name: "lifted, then set again above", policies: []gpuwardenv1alpha1.ContainerPolicySpec{
			{Unlimited: []gpuwardenv1alpha1.PolicyLimitName{gpuwardenv1alpha1.PolicyLimitReleaseUnusedAfter}}, {ReleaseUnusedAfter: d(2 * time.Hour)}},
			bound: time.Hour, wantComing: time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			due, coming, next := Unused(now.Add(-tc.bound), policy(t, tc.policies...), now)
			switch {
			case tc.wantDue != "":
				if due == nil || due.Action != ReleaseGPUs || due.Reason != ReasonUnused || !strings.Contains(due.Message, tc.wantDue) || coming != nil {
					t.Errorf("due %+v, coming %+v; want due %q", due, coming, tc.wantDue)
				}
			case tc.wantComing != 0:
				if due != nil || coming == nil || !coming.At.Equal(now.Add(tc.wantComing)) || next != tc.wantComing || coming.Limit != "releaseUnusedAfter" {
					t.Errorf("due %+v, coming %+v, next %s; want it coming in %s", due, coming, next, tc.wantComing)
				}
			default:
				if due != nil || coming != nil || next != 0 {
					t.Errorf("due %+v, coming %+v, next %s; want nothing ever", due, coming, next)
				}
			}
		})
	}
}

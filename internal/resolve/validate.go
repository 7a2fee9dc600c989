package resolve

import (
	"errors"
	"fmt"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// PolicyProblem says why the controllers cannot use a stored ContainerPolicy (a value the
// CRD of an older release let through, or one written to storage directly); nil when it is
// usable. Such a policy is skipped, never fatal: the others stay in force.
func PolicyProblem(p *gpuwardenv1alpha1.ContainerPolicy) error {
	var errs []error
	for _, f := range durationFields(&p.Spec) {
		if _, err := ParseDuration(*f.value); err != nil {
			errs = append(errs, fmt.Errorf("spec.%s: %w", f.path, err))
		}
	}
	return errors.Join(errs...)
}

// durationField is one duration a policy sets, by its path in the effective policy.
type durationField struct {
	path  string
	value *gpuwardenv1alpha1.Duration
}

// durationFields returns the durations s sets.
func durationFields(s *gpuwardenv1alpha1.ContainerPolicySpec) []durationField {
	all := []durationField{
		{"maxRuntime", s.MaxRuntime},
		{"stopGracePeriod", s.StopGracePeriod},
		{"checkpointTimeout", s.CheckpointTimeout},
		{"gpuHoldAfterStop", s.GPUHoldAfterStop},
		{"removeAfterStop", s.RemoveAfterStop},
		{"createdNeverStartedTimeout", s.CreatedNeverStartedTimeout},
		{"releaseUnusedAfter", s.ReleaseUnusedAfter},
	}
	if s.Queue != nil {
		all = append(all, durationField{"queue.maxWait", s.Queue.MaxWait})
	}
	if s.Idle != nil {
		all = append(all, durationField{"idle.timeout", s.Idle.Timeout}, durationField{"idle.startupGrace", s.Idle.StartupGrace})
		if s.Idle.KeepAlive != nil {
			all = append(all, durationField{"idle.keepAlive.maxAge", s.Idle.KeepAlive.MaxAge})
		}
	}
	var out []durationField
	for _, f := range all {
		if f.value != nil {
			out = append(out, f)
		}
	}
	return out
}

// ParseDuration reads a policy duration; negative values are refused like unreadable ones.
func ParseDuration(d gpuwardenv1alpha1.Duration) (time.Duration, error) {
	v, err := time.ParseDuration(string(d))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 30m, 2h45m or 90s: %w", string(d), err)
	}
	if v < 0 {
		return 0, fmt.Errorf("%q is negative", string(d))
	}
	return v, nil
}

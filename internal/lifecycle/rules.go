package lifecycle

import (
	"sort"
	"strconv"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"

	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// Thresholds used where no policy sets one (DS01's global values; a rate here where DS01
// compared a cumulative counter), so that an unset threshold never makes a busy signal idle.
const (
	DefaultGPUPercent            = 5
	DefaultCPUPercent            = 2
	DefaultNetworkBytesPerSecond = 1 << 20
	DefaultConsecutiveSamples    = 3
)

// Threshold is one signal's threshold and where it came from.
type Threshold struct {
	Value float64
	// From names the policy that set it, empty for the default.
	From string
}

// IdleRules are the idle fields of a container's effective policy.
type IdleRules struct {
	// Timeout is the idle timeout; Timeout.Applies() false means none (unset or lifted).
	Timeout resolve.Limit
	// Lifted is the timeout an `unlimited: [idleTimeout]` replaced, for the informational
	// notice an exempt container gets.
	Lifted            resolve.Limit
	GPU, CPU, Network Threshold
	// Consecutive is how many idle samples in a row make a container idle.
	Consecutive int
	// StartupGrace: nothing is counted this long after the container starts.
	StartupGrace time.Duration
	// WarnAt are the fractions of the timeout at which the owner is warned, ascending.
	WarnAt []float64
	// KeepAlivePath is a file inside the container; touched within KeepAliveMaxAge it
	// postpones the stop.
	KeepAlivePath   string
	KeepAliveMaxAge time.Duration
	// HighDemandAt is the allocated fraction of GPU capacity at or above which the timeout
	// is multiplied by HighDemandFactor; 0 turns it off.
	HighDemandAt, HighDemandFactor float64
}

// RuntimeRules are the max-runtime fields of a container's effective policy.
type RuntimeRules struct {
	Max    resolve.Limit
	WarnAt []float64
}

// Rules are what the running-container rules read of a policy.
type Rules struct {
	Mode    gpuwardenv1alpha1.PolicyMode
	Idle    IdleRules
	Runtime RuntimeRules
}

// RulesFrom reads the running-container rules of an effective policy.
func RulesFrom(p resolve.Policy) Rules {
	r := Rules{Mode: p.Mode()}
	r.Idle.Timeout = p.Duration("idle.timeout")
	r.Idle.Lifted = p.LiftedDuration("idle.timeout")
	r.Idle.GPU = threshold(p, "idle.gpuUtilizationPercent", DefaultGPUPercent)
	r.Idle.CPU = threshold(p, "idle.cpuPercent", DefaultCPUPercent)
	r.Idle.Network = threshold(p, "idle.networkBytesPerSecond", DefaultNetworkBytesPerSecond)
	r.Idle.Consecutive = int(threshold(p, "idle.consecutiveSamples", DefaultConsecutiveSamples).Value)
	r.Idle.StartupGrace = p.Duration("idle.startupGrace").Duration
	r.Idle.WarnAt = fractions(p, "idle.warnAtFractions")
	r.Idle.KeepAlivePath = p.String("idle.keepAlive.path", "")
	r.Idle.KeepAliveMaxAge = p.Duration("idle.keepAlive.maxAge").Duration
	if r.Idle.KeepAlivePath != "" && r.Idle.KeepAliveMaxAge == 0 {
		r.Idle.KeepAliveMaxAge = 24 * time.Hour // DS01's keepalive_max_duration_h, which it never read
	}
	r.Idle.HighDemandAt = fraction(p, "idle.highDemand.allocatedFraction")
	r.Idle.HighDemandFactor = fraction(p, "idle.highDemand.timeoutFactor")
	r.Runtime.Max = p.Duration("maxRuntime")
	r.Runtime.WarnAt = fractions(p, "runtimeWarnAtFractions")
	return r
}

func threshold(p resolve.Policy, path string, def float64) Threshold {
	v, ok := p.Values[path]
	if f, isNum := v.Value.(float64); ok && isNum {
		return Threshold{Value: f, From: v.From}
	}
	return Threshold{Value: def}
}

func fraction(p resolve.Policy, path string) float64 {
	s, _ := p.Values[path].Value.(string)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return f
}

func fractions(p resolve.Policy, path string) []float64 {
	list, _ := p.Values[path].Value.([]any)
	var out []float64
	for _, v := range list {
		s, _ := v.(string)
		if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 {
			out = append(out, f)
		}
	}
	sort.Float64s(out)
	return out
}

package labweek

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// rules are the sample manifests' defaults (config/samples/containerpolicies.yaml).
func rules(t testing.TB) lifecycle.Rules {
	d := func(x time.Duration) *gpuwardenv1alpha1.Duration {
		v := gpuwardenv1alpha1.Duration(x.String())
		return &v
	}
	i32 := func(v int32) *int32 { return &v }
	i64 := func(v int64) *int64 { return &v }
	spec := gpuwardenv1alpha1.ContainerPolicySpec{Mode: gpuwardenv1alpha1.ModeEnforce, Idle: &gpuwardenv1alpha1.IdlePolicy{
		Timeout: d(30 * time.Minute), GPUUtilizationPercent: i32(5), CPUPercent: i32(2), NetworkBytesPerSecond: i64(1 << 20),
		ConsecutiveSamples: i32(3), StartupGrace: d(30 * time.Minute), WarnAtFractions: []gpuwardenv1alpha1.Fraction{"0.8", "0.95"},
		KeepAlive:  &gpuwardenv1alpha1.KeepAlive{Path: "/workspace/.keep-alive", MaxAge: d(24 * time.Hour)},
		HighDemand: &gpuwardenv1alpha1.HighDemand{AllocatedFraction: "0.8", TimeoutFactor: "0.5"},
	}}
	p, err := resolve.EffectivePolicy([]gpuwardenv1alpha1.ContainerPolicy{{ObjectMeta: metav1.ObjectMeta{Name: "defaults"}, Spec: spec}},
		resolve.Container{User: "u"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r := lifecycle.RulesFrom(p)
	// High demand off for the comparison: the thresholds are the same in all three ways.
	r.Idle.HighDemandAt = 0
	return r
}

func replayAll(t testing.TB) (none, hourly, samples Result) {
	tr := Generate(2026, 40, 8)
	r := rules(t)
	return Replay(tr, r, 0), Replay(tr, r, time.Hour), Replay(tr, r, time.Minute)
}

// TestOutcomeOfALabWeek holds gpuwarden to the targets on the seeded week: at
// least 10× less GPU time held idle beyond the timeout than DS01's hourly sweep, and no
// busy container stopped. The trace is deterministic; nothing here is timed.
func TestOutcomeOfALabWeek(t *testing.T) {
	none, hourly, samples := replayAll(t)
	for name, r := range map[string]Result{"no policy": none, "hourly sweep": hourly, "gpuwarden 60s": samples} {
		t.Logf("%-14s idle %7.1f GPU-h, beyond the timeout %7.1f GPU-h, stopped %3d, busy stopped %d, max delay %s",
			name, r.IdleGPUHours, r.BeyondTimeoutGPUHours, r.Stopped, r.BusyStopped, r.MaxDelay)
	}
	if none.BeyondTimeoutGPUHours < 100 {
		t.Fatalf("the week wastes only %.1f GPU-h with no policy: not a lab week", none.BeyondTimeoutGPUHours)
	}
	if samples.BeyondTimeoutGPUHours*10 > hourly.BeyondTimeoutGPUHours {
		t.Errorf("gpuwarden leaves %.1f GPU-h idle beyond the timeout, the hourly sweep %.1f: want at least 10× less",
			samples.BeyondTimeoutGPUHours, hourly.BeyondTimeoutGPUHours)
	}
	if samples.BusyStopped != 0 {
		t.Errorf("gpuwarden stopped %d busy containers", samples.BusyStopped)
	}
	if samples.MaxDelay > time.Minute {
		t.Errorf("a stop came %s after its deadline; want within one sample interval", samples.MaxDelay)
	}
}

// BenchmarkLabWeek reports the three ways' outcomes as metrics.
func BenchmarkLabWeek(b *testing.B) {
	var none, hourly, samples Result
	for b.Loop() {
		none, hourly, samples = replayAll(b)
	}
	b.ReportMetric(none.BeyondTimeoutGPUHours, "none-beyond-GPUh")
	b.ReportMetric(hourly.BeyondTimeoutGPUHours, "hourly-beyond-GPUh")
	b.ReportMetric(samples.BeyondTimeoutGPUHours, "gpuwarden-beyond-GPUh")
	b.ReportMetric(hourly.BeyondTimeoutGPUHours/max(samples.BeyondTimeoutGPUHours, 1e-9), "hourly/gpuwarden")
	b.ReportMetric(float64(samples.BusyStopped), "gpuwarden-busy-stopped")
	b.ReportMetric(float64(hourly.BusyStopped), "hourly-busy-stopped")
}

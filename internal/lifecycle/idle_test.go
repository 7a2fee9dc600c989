package lifecycle

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

func i32(v int32) *int32 { return &v }
func i64(v int64) *int64 { return &v }

// lab is the sample manifests' default policy, cut to what the idle rules read.
func lab() gpuwardenv1alpha1.ContainerPolicySpec {
	return gpuwardenv1alpha1.ContainerPolicySpec{
		Mode: gpuwardenv1alpha1.ModeEnforce,
		Idle: &gpuwardenv1alpha1.IdlePolicy{
			Timeout: d(30 * time.Minute), GPUUtilizationPercent: i32(5), CPUPercent: i32(2), NetworkBytesPerSecond: i64(10000),
			ConsecutiveSamples: i32(3), StartupGrace: d(10 * time.Minute), WarnAtFractions: []gpuwardenv1alpha1.Fraction{"0.8", "0.95"},
		},
		MaxRuntime: d(24 * time.Hour), RuntimeWarnAtFractions: []gpuwardenv1alpha1.Fraction{"0.75", "0.9"},
	}
}

var started = now.Add(-time.Hour)

func idleSample(at time.Time) Sample {
	return Sample{Time: at, GPUKnown: true, GPUPercent: 0, HasRates: true, CPUPercent: 0.5, NetworkBytesPerSecond: 100}
}

func busySample(at time.Time) Sample {
	s := idleSample(at)
	s.GPUPercent = 90
	return s
}

// simulate feeds a sample each minute from `from` for n minutes and returns every result.
func simulate(st IdleState, r Rules, c Running, from time.Time, n int, sample func(i int, at time.Time) Sample) []IdleResult {
	var out []IdleResult
	for i := range n {
		res := ObserveIdle(st, sample(i, from.Add(time.Duration(i)*time.Minute)), r, c)
		st = res.State
		out = append(out, res)
	}
	return out
}

func notices(results []IdleResult) (kinds []string, at []int) {
	for i, r := range results {
		for _, n := range r.Notices {
			kinds = append(kinds, n.Kind)
			at = append(at, i)
		}
	}
	return kinds, at
}

func TestThresholdBoundaries(t *testing.T) {
	r := RulesFrom(policy(t, lab())).Idle
	for _, tc := range []struct {
		name string
		s    Sample
		want Verdict
	}{
		{"all below", idleSample(now), Idle},
		{"gpu exactly at 5%", func() Sample { s := idleSample(now); s.GPUPercent = 5; return s }(), Active},
		{"gpu just below", func() Sample { s := idleSample(now); s.GPUPercent = 4.99; return s }(), Idle},
		{"cpu exactly at 2%", func() Sample { s := idleSample(now); s.CPUPercent = 2; return s }(), Active},
		{"cpu just below", func() Sample { s := idleSample(now); s.CPUPercent = 1.99; return s }(), Idle},
		{"network exactly at 10000 B/s", func() Sample { s := idleSample(now); s.NetworkBytesPerSecond = 10000; return s }(), Active},
		{"network just below", func() Sample { s := idleSample(now); s.NetworkBytesPerSecond = 9999; return s }(), Idle},
		{"2% GPU but 15% CPU", func() Sample { s := idleSample(now); s.GPUPercent = 2; s.CPUPercent = 15; return s }(), Active},
		{"only the network", func() Sample { s := idleSample(now); s.NetworkBytesPerSecond = 5e6; return s }(), Active},
		{"no window yet, nothing active", func() Sample { s := idleSample(now); s.HasRates = false; return s }(), NoVerdict},
		{"no window yet, GPU busy", func() Sample { s := busySample(now); s.HasRates = false; return s }(), Active},
		{"MIG: memory unchanged", Sample{Time: now, HasRates: true, GPUMemoryBytes: 5 << 30, PrevGPUMemoryBytes: 5 << 30, HasPrevGPUMemory: true}, Idle},
		{"MIG: memory changed", Sample{Time: now, HasRates: true, GPUMemoryBytes: 6 << 30, PrevGPUMemoryBytes: 5 << 30, HasPrevGPUMemory: true}, Active},
		{"MIG: no earlier memory", Sample{Time: now, HasRates: true, GPUMemoryBytes: 5 << 30}, NoVerdict},
	} {
		got, signals := Judge(tc.s, r)
		if got != tc.want {
			t.Errorf("%s: %s (%s), want %s", tc.name, got, Describe(signals), tc.want)
		}
	}
	_, signals := Judge(Sample{Time: now, HasRates: true, GPUMemoryBytes: 5 << 30, PrevGPUMemoryBytes: 5 << 30, HasPrevGPUMemory: true}, r)
	if !strings.Contains(Describe(signals), "NVML gives no utilisation for a MIG instance") {
		t.Errorf("an unknown GPU signal must say so: %s", Describe(signals))
	}
}

func TestIdleStreakWarningsAndStop(t *testing.T) {
	r := RulesFrom(policy(t, lab()))
	res := simulate(IdleState{}, r, Running{StartedAt: started}, now, 40, func(_ int, at time.Time) Sample { return idleSample(at) })
	if res[1].Counting(r.Idle) || !res[2].Counting(r.Idle) {
		t.Errorf("the idle time counts from the 3rd idle sample in a row: %v %v", res[1].State, res[2].State)
	}
	if res[2].IdleFor != 2*time.Minute || !res[2].State.Since.Equal(now) {
		t.Errorf("idle time is counted from the first idle sample: %s since %s", res[2].IdleFor, res[2].State.Since)
	}
	kinds, at := notices(res)
	// 0.8 × 30m = 24m, 0.95 × 30m = 28.5m → the sample at 29m, the stop at 30m.
	want := []string{IdleWarning, IdleWarning, IdleStop}
	if strings.Join(kinds, ",") != strings.Join(want, ",") || at[0] != 24 || at[1] != 29 || at[2] != 30 {
		t.Fatalf("notices %v at minutes %v; want %v at 24, 29, 30", kinds, at, want)
	}
	stop := res[30].Notices[0]
	if stop.Held || !stop.Deadline.Equal(now.Add(30*time.Minute)) || !strings.Contains(stop.Message, "ContainerPolicy base") {
		t.Errorf("stop = %+v", stop)
	}
	if w := res[24].Notices[0]; !w.StopAt.Equal(now.Add(30*time.Minute)) || !strings.Contains(w.Message, "80%") {
		t.Errorf("first warning = %+v", w)
	}
	if len(res[35].Notices) != 0 {
		t.Errorf("a stop is given once")
	}
}

func TestActivityResetsAndRearms(t *testing.T) {
	r := RulesFrom(policy(t, lab()))
	res := simulate(IdleState{}, r, Running{StartedAt: started}, now, 70, func(i int, at time.Time) Sample {
		if i == 26 {
			return busySample(at) // after the first warning
		}
		return idleSample(at)
	})
	kinds, at := notices(res)
	// Warned at 24; busy at 26 resets; a new run from 27: warnings at 51 and 56, stop at 57.
	if strings.Join(kinds, ",") != "idle_warning,idle_warning,idle_warning,idle_stop" || at[0] != 24 || at[1] != 51 || at[2] != 56 || at[3] != 57 {
		t.Errorf("notices %v at %v", kinds, at)
	}
	// It keeps what was said, for which stop time: the new run's stop time differs.
	if st := res[26].State; !st.Since.IsZero() || st.Samples != 0 || !slices.Equal(st.Sent, []string{"0.8"}) || !st.WarnedFor.Equal(now.Add(30*time.Minute)) {
		t.Errorf("an active sample resets the run: %+v", res[26].State)
	}
}

func TestStartupGrace(t *testing.T) {
	r := RulesFrom(policy(t, lab()))
	justStarted := Running{StartedAt: now}
	res := simulate(IdleState{}, r, justStarted, now, 45, func(_ int, at time.Time) Sample { return idleSample(at) })
	for i := range 10 {
		if res[i].Verdict != InGrace || !res[i].State.Since.IsZero() {
			t.Fatalf("minute %d in the 10-minute grace: %s %+v", i, res[i].Verdict, res[i].State)
		}
	}
	if !res[10].State.Since.Equal(now.Add(10 * time.Minute)) {
		t.Errorf("counting starts after the grace: %+v", res[10].State)
	}
	_, at := notices(res)
	if len(at) != 3 || at[2] != 40 {
		t.Errorf("stop at minute %v; want 40 (grace 10 + timeout 30)", at)
	}
}

func TestKeepAlive(t *testing.T) {
	spec := lab()
	spec.Idle.KeepAlive = &gpuwardenv1alpha1.KeepAlive{Path: "/workspace/.keep-alive", MaxAge: d(time.Hour)}
	r := RulesFrom(policy(t, spec))
	for _, tc := range []struct {
		name    string
		touched time.Time
		exists  bool
		stopAt  int
	}{
		{"fresh: the stop waits for it to age", now.Add(10 * time.Minute), true, 70},
		{"stale", now.Add(-2 * time.Hour), true, 30},
		{"missing", time.Time{}, false, 30},
	} {
		calls, minute := 0, 0
		c := Running{StartedAt: started, KeepAlive: func() (time.Time, bool, error) {
			calls++
			if minute < 24 {
				t.Errorf("%s: the keep-alive file was read at minute %d, before a warning could fall due (24)", tc.name, minute)
			}
			return tc.touched, tc.exists, nil
		}}
		res := simulate(IdleState{}, r, c, now, 90, func(i int, at time.Time) Sample { minute = i; return idleSample(at) })
		kinds, at := notices(res)
		if len(kinds) != 3 || kinds[2] != IdleStop || at[2] != tc.stopAt {
			t.Errorf("%s: notices %v at %v; want the stop at %d", tc.name, kinds, at, tc.stopAt)
		}
		if calls == 0 || calls > tc.stopAt-24+1 {
			t.Errorf("%s: the keep-alive file was read %d times; only while a warning or the stop may be due", tc.name, calls)
		}
		if tc.exists && tc.stopAt == 70 && !res[50].KeepAliveUntil.Equal(now.Add(70*time.Minute)) {
			t.Errorf("%s: keep-alive until %s", tc.name, res[50].KeepAliveUntil)
		}
	}
}

// TestAnUnreadableKeepAliveHoldsTheStop: a keep-alive file that cannot be read (the engine
// did not answer, the container was going away) is no answer: the stop that is due waits,
// nothing is marked sent, and the next sample that reads it decides.
func TestAnUnreadableKeepAliveHoldsTheStop(t *testing.T) {
	spec := lab()
	spec.Idle.KeepAlive = &gpuwardenv1alpha1.KeepAlive{Path: "/workspace/.keep-alive", MaxAge: d(time.Hour)}
	r := RulesFrom(policy(t, spec))
	unreadable := true
	c := Running{StartedAt: started, KeepAlive: func() (time.Time, bool, error) {
		if unreadable {
			return time.Time{}, false, errors.New("Cannot connect to the Docker daemon")
		}
		return time.Time{}, false, nil // no keep-alive file
	}}
	res := simulate(IdleState{}, r, c, now, 40, func(_ int, at time.Time) Sample { return idleSample(at) })
	if kinds, _ := notices(res); len(kinds) > 0 {
		t.Fatalf("notices %v: a warning or a stop was given while the keep-alive file could not be read", kinds)
	}
	last := res[len(res)-1]
	if last.Unread == nil || last.State.sent(SentStop) {
		t.Fatalf("the held stop: unread %v, state %+v; want the error said and no stop marked sent", last.Unread, last.State)
	}
	unreadable = false
	next := ObserveIdle(last.State, idleSample(now.Add(40*time.Minute)), r, c)
	if len(next.Notices) != 1 || next.Notices[0].Kind != IdleStop {
		t.Errorf("once the file reads as absent: notices %+v, want the stop", next.Notices)
	}
}

// TestAKeptAliveContainerIsNotWarnedOfAStopItsFilePostpones: while the keep-alive file is
// fresh, no warning names a stop it postpones; the warnings that come name the real stop,
// when the file lapses, as long before it as they would come before a plain stop.
func TestAKeptAliveContainerIsNotWarnedOfAStopItsFilePostpones(t *testing.T) {
	spec := lab()
	spec.Idle.KeepAlive = &gpuwardenv1alpha1.KeepAlive{Path: "/workspace/.keep-alive", MaxAge: d(time.Hour)}
	r := RulesFrom(policy(t, spec))
	touched := now.Add(10 * time.Minute) // lapses at minute 70
	c := Running{StartedAt: started, KeepAlive: func() (time.Time, bool, error) { return touched, true, nil }}
	res := simulate(IdleState{}, r, c, now, 90, func(_ int, at time.Time) Sample { return idleSample(at) })
	kinds, at := notices(res)
	// 30m timeout, warnings at 0.8 and 0.95: 6m and 1.5m before the stop at 70 → 64 and 69.
	if strings.Join(kinds, ",") != "idle_warning,idle_warning,idle_stop" || at[0] != 64 || at[1] != 69 || at[2] != 70 {
		t.Fatalf("notices %v at minutes %v; want warnings at 64 and 69, the stop at 70", kinds, at)
	}
	lapse := now.Add(70 * time.Minute)
	for _, i := range at[:2] {
		w := res[i].Notices[0]
		if !w.StopAt.Equal(lapse) || !strings.Contains(w.Message, "keep-alive file /workspace/.keep-alive") || !strings.Contains(w.Message, lapse.UTC().Format(time.RFC3339)) {
			t.Errorf("warning at minute %d: %+v; want the stop when the file lapses, said so", i, w)
		}
	}
	if stop := res[70].Notices[0]; !stop.Deadline.Equal(lapse) || !strings.Contains(stop.Message, "kept it running until") {
		t.Errorf("stop: %+v", stop)
	}

	// A file touched every 20 minutes keeps postponing the stop; runs broken by a busy
	// sample now and then are held by it too: no warning at all, no stop.
	var lastTouch time.Time
	c.KeepAlive = func() (time.Time, bool, error) { return lastTouch, true, nil }
	res = simulate(IdleState{}, r, c, now, 240, func(i int, at time.Time) Sample {
		lastTouch = now.Add(time.Duration(i/20*20) * time.Minute)
		if i%45 == 44 {
			return busySample(at)
		}
		return idleSample(at)
	})
	if kinds, at := notices(res); len(kinds) != 0 {
		t.Errorf("a container whose keep-alive file is touched every 20 minutes got %v at minutes %v", kinds, at)
	}

	// Touched after a warning: the stop moves, and the warnings are given again for it.
	lastTouch = now.Add(-50 * time.Minute) // lapses at minute 10: a plain stop at 30
	res = simulate(IdleState{}, r, c, now, 90, func(i int, at time.Time) Sample {
		if i == 26 {
			lastTouch = at // after the 0.8 warning at 24: now lapses at 86
		}
		return idleSample(at)
	})
	kinds, at = notices(res)
	if strings.Join(kinds, ",") != "idle_warning,idle_warning,idle_warning,idle_stop" || at[0] != 24 || at[1] != 80 || at[2] != 85 || at[3] != 86 {
		t.Errorf("touched after a warning: notices %v at minutes %v; want 24 (for 30), then 80 and 85 (for 86), the stop at 86", kinds, at)
	}
}

// TestANewRunIsNotWarnedAgainForTheSameStopTime: a warning is given once per stop time,
// across runs. A run that a busy sample broke after a warning, idle again and still held
// by the same keep-alive file, would be stopped at the same time (here the admin shortened
// the timeout meanwhile): what was said is not said again. What the busy sample keeps is
// the stop time and the fractions said for it, and nothing of the run.
func TestANewRunIsNotWarnedAgainForTheSameStopTime(t *testing.T) {
	spec := lab()
	spec.Idle.KeepAlive = &gpuwardenv1alpha1.KeepAlive{Path: "/workspace/.keep-alive", MaxAge: d(time.Hour)}
	spec.Idle.WarnAtFractions = []gpuwardenv1alpha1.Fraction{"0.5", "0.8"}
	r := RulesFrom(policy(t, spec))
	spec.Idle.Timeout, spec.Idle.ConsecutiveSamples = d(3*time.Minute), i32(1)
	short := RulesFrom(policy(t, spec))
	touched := now.Add(10 * time.Minute) // the stop at minute 70
	c := Running{StartedAt: started, KeepAlive: func() (time.Time, bool, error) { return touched, true, nil }}
	var res []IdleResult
	st := IdleState{}
	for i := range 75 {
		at := now.Add(time.Duration(i) * time.Minute)
		s, rules := idleSample(at), r
		switch {
		case i == 65:
			s = busySample(at) // just after the 0.8 warning at 64
		case i > 65:
			rules = short // a new run whose own stop (69) comes before the file lapses (70)
		}
		out := ObserveIdle(st, s, rules, c)
		st = out.State
		res = append(res, out)
	}
	kinds, at := notices(res)
	// 0.5 and 0.8 of 30m before the stop at 70: 55 and 64. The new run's 0.5 of 3m before 70
	// falls at 68.5 (the sample at 69): said already, for 70.
	if strings.Join(kinds, ",") != "idle_warning,idle_warning,idle_stop" || at[0] != 55 || at[1] != 64 || at[2] != 70 {
		t.Errorf("notices %v at minutes %v; want warnings at 55 and 64, once, and the stop at 70", kinds, at)
	}
	if busy := res[65].State; !busy.Since.IsZero() || busy.Samples != 0 || !SameStopTime(busy.WarnedFor, now.Add(70*time.Minute)) || !slices.Equal(busy.Sent, []string{"0.5", "0.8"}) {
		t.Errorf("after the busy sample: %+v; want the run ended, the warnings and their stop time kept", busy)
	}
	if r69 := res[69]; !r69.StopAt.Equal(now.Add(70*time.Minute)) || !r69.State.Warned(0.5, r69.StopAt) || r69.Notices != nil {
		t.Errorf("minute 69: %+v; want the stop at 70, its 0.5 warning known as said, nothing said again", r69)
	}

	// Kept across a restart of gpuwarden: the status keeps the stop time to the microsecond.
	kept := res[64].State
	kept.WarnedFor = kept.WarnedFor.Truncate(time.Microsecond).Add(-time.Microsecond)
	if again := ObserveIdle(kept, idleSample(now.Add(65*time.Minute)), r, c); len(again.Notices) != 0 {
		t.Errorf("the same warning again after a round trip through the status: %+v", again.Notices)
	}
}

// TestAnUnjudgedSampleHoldsTheWarningAndTheStop: a sample that cannot be judged (a signal
// could not be read: the engine's stats failed, NVML did not answer) decides nothing, even
// when a warning or the stop is due; the next sample that can be judged does.
func TestAnUnjudgedSampleHoldsTheWarningAndTheStop(t *testing.T) {
	r := RulesFrom(policy(t, lab()))
	res := simulate(IdleState{}, r, Running{StartedAt: started}, now, 45, func(i int, at time.Time) Sample {
		s := idleSample(at)
		s.HasRates = i < 20 || i >= 40 // CPU and network unread from minute 20 to 39
		return s
	})
	kinds, at := notices(res)
	if strings.Join(kinds, ",") != "idle_stop" || at[0] != 40 {
		t.Errorf("notices %v at minutes %v; want nothing while unjudged, the stop at the first judged sample (40)", kinds, at)
	}
	if !res[30].Unjudged || res[30].Verdict != NoVerdict || !res[30].State.Since.Equal(now) {
		t.Errorf("minute 30: %+v; want the run kept and the decision held", res[30])
	}
}

func TestHighDemandShortensTheTimeout(t *testing.T) {
	spec := lab()
	spec.Idle.HighDemand = &gpuwardenv1alpha1.HighDemand{AllocatedFraction: "0.8", TimeoutFactor: "0.5"}
	r := RulesFrom(policy(t, spec))
	for _, tc := range []struct {
		allocated float64
		stopAt    int
	}{{0.79, 30}, {0.8, 15}, {1, 15}} {
		res := simulate(IdleState{}, r, Running{StartedAt: started, AllocatedFraction: tc.allocated}, now, 40, func(_ int, at time.Time) Sample { return idleSample(at) })
		kinds, at := notices(res)
		if kinds[len(kinds)-1] != IdleStop || at[len(at)-1] != tc.stopAt {
			t.Errorf("allocated %g: notices %v at %v; want the stop at %d", tc.allocated, kinds, at, tc.stopAt)
		}
		if tc.stopAt == 15 && !strings.Contains(res[at[0]].Notices[0].Message, "shortened from 30m0s") {
			t.Errorf("a warning under high demand says so: %s", res[at[0]].Notices[0].Message)
		}
	}
}

func TestModesHoldTheStopBack(t *testing.T) {
	for _, mode := range []gpuwardenv1alpha1.PolicyMode{gpuwardenv1alpha1.ModeDryRun, gpuwardenv1alpha1.ModeNotifyOnly} {
		spec := lab()
		spec.Mode = mode
		r := RulesFrom(policy(t, spec))
		res := simulate(IdleState{}, r, Running{StartedAt: started}, now, 60, func(_ int, at time.Time) Sample { return idleSample(at) })
		kinds, at := notices(res)
		if strings.Join(kinds, ",") != "idle_warning,idle_warning,idle_stop" || at[2] != 30 || !res[30].Notices[0].Held {
			t.Errorf("%s: notices %v at %v (held %v): the same decisions, the stop held back, once", mode, kinds, at, res[30].Notices)
		}
	}
}

func TestExemptionWithExpiry(t *testing.T) {
	expires := metav1.NewTime(now.Add(45 * time.Minute))
	list := []gpuwardenv1alpha1.ContainerPolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "base"}, Spec: lab()},
		{ObjectMeta: metav1.ObjectMeta{Name: "thesis-deadline"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{Precedence: 50, Expires: &expires,
			Unlimited: []gpuwardenv1alpha1.PolicyLimitName{gpuwardenv1alpha1.PolicyLimitIdleTimeout}}},
	}
	st := IdleState{}
	var kinds []string
	var at []int
	for i := range 80 {
		tm := now.Add(time.Duration(i) * time.Minute)
		p, err := resolve.EffectivePolicy(list, resolve.Container{User: "alice"}, tm)
		if err != nil {
			t.Fatal(err)
		}
		res := ObserveIdle(st, idleSample(tm), RulesFrom(p), Running{StartedAt: started})
		st = res.State
		for _, n := range res.Notices {
			kinds, at = append(kinds, n.Kind), append(at, i)
		}
	}
	// Exempt: one notice at 24 minutes (0.8 × the lifted 30m), no stop; at 45 the exemption
	// expires, the container has been idle 45m > 30m: stopped then.
	if strings.Join(kinds, ",") != "idle_notice,idle_stop" || at[0] != 24 || at[1] != 45 {
		t.Errorf("notices %v at %v", kinds, at)
	}
}

func TestDevcontainerNeverIdleStoppedButRuntimeLimited(t *testing.T) {
	list := []gpuwardenv1alpha1.ContainerPolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "defaults"}, Spec: lab()},
		{ObjectMeta: metav1.ObjectMeta{Name: "devcontainers"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{Precedence: 20,
			Selector:   gpuwardenv1alpha1.PolicySelector{ContainerTypes: []gpuwardenv1alpha1.ContainerType{gpuwardenv1alpha1.ContainerTypeDevcontainer}},
			MaxRuntime: d(168 * time.Hour), Unlimited: []gpuwardenv1alpha1.PolicyLimitName{gpuwardenv1alpha1.PolicyLimitIdleTimeout}}},
	}
	p, err := resolve.EffectivePolicy(list, resolve.Container{User: "alice", Type: gpuwardenv1alpha1.ContainerTypeDevcontainer}, now)
	if err != nil {
		t.Fatal(err)
	}
	r := RulesFrom(p)
	res := simulate(IdleState{}, r, Running{StartedAt: started}, now, 300, func(_ int, at time.Time) Sample { return idleSample(at) })
	kinds, _ := notices(res)
	if strings.Join(kinds, ",") != IdleInfo {
		t.Errorf("a devcontainer idle for 5 hours gets %v; want one notice for information and no stop", kinds)
	}
	since := now.Add(-100 * time.Hour)
	var all []string
	st := RuntimeState{}
	for h := 100; h <= 170; h++ {
		var n []Notice
		st, n, _ = ObserveRuntime(st, since, since, r, since.Add(time.Duration(h)*time.Hour))
		for _, x := range n {
			all = append(all, x.Kind+"@"+num(float64(h)))
		}
	}
	// 0.75 × 168h = 126h, 0.9 × 168h = 151.2h → 152h, stop at 168h.
	if strings.Join(all, ",") != "runtime_warning@126,runtime_warning@152,runtime_stop@168" {
		t.Errorf("runtime notices %v", all)
	}
}

func TestRuntimeNext(t *testing.T) {
	r := RulesFrom(policy(t, lab()))
	since := now.Add(-10 * time.Hour)
	st, n, next := ObserveRuntime(RuntimeState{}, since, since, r, now)
	if len(n) != 0 || next != 8*time.Hour || len(st.Sent) != 0 {
		t.Errorf("at 10h of 24h: notices %v, next %s; want the 0.75 warning in 8h", n, next)
	}
	// A restart of gpuwarden mid-way: the warnings already given are not given again.
	st, n, _ = ObserveRuntime(RuntimeState{Sent: []string{"0.75"}}, since, since, r, now.Add(9*time.Hour))
	if len(n) != 0 || len(st.Sent) != 1 {
		t.Errorf("a warning given before a restart came again: %v", n)
	}
}

// TestRuntimeStopsEachStartPastTheLimit: a container started again after its runtime stop
// is stopped again, once for that start, however often it is sampled; Sent keeps only the
// latest start's stop.
func TestRuntimeStopsEachStartPastTheLimit(t *testing.T) {
	r := RulesFrom(policy(t, lab())) // maxRuntime 24h
	since := now.Add(-30 * time.Hour)
	st := RuntimeState{Sent: []string{"0.75", "0.9", SentStop}} // stopped at 24h
	kinds := func(n []Notice) string {
		var out []string
		for _, x := range n {
			out = append(out, x.Kind)
		}
		return strings.Join(out, ",")
	}
	if _, n, _ := ObserveRuntime(st, since, since, r, now); len(n) != 0 {
		t.Errorf("still running from before its stop (the stop under way): %v, want nothing", kinds(n))
	}
	for i, start := range []time.Time{now.Add(-time.Minute), now.Add(10 * time.Minute)} {
		var n []Notice
		st, n, _ = ObserveRuntime(st, since, start, r, start.Add(time.Minute))
		if kinds(n) != RuntimeStop {
			t.Fatalf("start %d past the limit: %v, want a stop", i, kinds(n))
		}
		if _, n, _ = ObserveRuntime(st, since, start, r, start.Add(2*time.Minute)); len(n) != 0 {
			t.Errorf("start %d sampled again: %v, want no second stop", i, kinds(n))
		}
	}
	if len(st.Sent) != 4 {
		t.Errorf("sent %v: want the warnings, the first stop and the latest start's stop", st.Sent)
	}
}

func TestRestartMidStreak(t *testing.T) {
	r := RulesFrom(policy(t, lab()))
	c := Running{StartedAt: started}
	first := simulate(IdleState{}, r, c, now, 26, func(_ int, at time.Time) Sample { return idleSample(at) })
	kinds, _ := notices(first)
	if len(kinds) != 1 {
		t.Fatalf("before the restart: %v", kinds)
	}
	// What the allocation's status keeps; the restarted process has no earlier sample, so
	// its first one has no window.
	kept := first[len(first)-1].State
	second := simulate(kept, r, c, now.Add(27*time.Minute), 10, func(i int, at time.Time) Sample {
		s := idleSample(at)
		s.HasRates = i > 0
		return s
	})
	kinds, at := notices(second)
	// The first warning is not repeated; the 0.95 one at 29m (index 2); the stop at 30m.
	if strings.Join(kinds, ",") != "idle_warning,idle_stop" || at[0] != 2 || at[1] != 3 {
		t.Errorf("after the restart: %v at %v", kinds, at)
	}
	if !second[0].State.Since.Equal(now) {
		t.Errorf("the restart reset the idle start: %s", second[0].State.Since)
	}
}

func TestAContainerRestartStartsAfresh(t *testing.T) {
	r := RulesFrom(policy(t, lab()))
	old := IdleState{Since: now.Add(-2 * time.Hour), Samples: 3, Sent: []string{"0.8", "stop"}}
	res := ObserveIdle(old, idleSample(now.Add(11*time.Minute)), r, Running{StartedAt: now})
	if !res.State.Since.Equal(now.Add(11*time.Minute)) || res.State.Samples != 1 || len(res.State.Sent) != 0 {
		t.Errorf("a container started again keeps its old run: %+v", res.State)
	}
}

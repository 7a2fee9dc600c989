package lifecycle

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// Sample is one look at a running container that holds GPUs.
type Sample struct {
	Time time.Time
	// GPUKnown is false where NVML gives no utilisation for what the container holds (MIG
	// instances): then its GPU memory use, unchanged since the last sample, is the signal.
	GPUKnown   bool
	GPUPercent float64
	// GPUMemoryBytes is the GPU memory the container's devices use; PrevGPUMemoryBytes the
	// previous sample's, when HasPrevGPUMemory.
	GPUMemoryBytes, PrevGPUMemoryBytes uint64
	HasPrevGPUMemory                   bool
	// HasRates is false on a container's first sample, which has no window to rate over.
	HasRates bool
	// CPUPercent (100 = one core) and NetworkBytesPerSecond (received and sent) are rates
	// over the sample window, never cumulative counters.
	CPUPercent, NetworkBytesPerSecond float64
}

// Verdict is what one sample says.
type Verdict string

// Verdicts.
const (
	// Active: some signal is at or above its threshold.
	Active Verdict = "active"
	// Idle: every signal is below its threshold.
	Idle Verdict = "idle"
	// NoVerdict: no signal is active but one cannot be judged yet (no window); the sample
	// is not counted either way.
	NoVerdict Verdict = "unknown"
	// InGrace: the container started less than startupGrace ago; nothing is counted.
	InGrace Verdict = "grace"
	// Exempt: no idle rule can stop the container (protected, or no idle timeout).
	Exempt Verdict = "exempt"
)

// Signal is one signal of a sample against its threshold.
type Signal struct {
	Name      string
	Value     float64
	Threshold float64
	Known     bool
	// Note explains an unknown signal or the GPU memory rule.
	Note string
}

// Active reports whether the signal is at or above its threshold.
func (s Signal) Active() bool { return s.Known && s.Value >= s.Threshold }

// String is e.g. "gpu 12% ≥ 5% (active)".
func (s Signal) String() string {
	if !s.Known {
		return fmt.Sprintf("%s unknown (%s)", s.Name, s.Note)
	}
	rel, state := "<", "idle"
	if s.Active() {
		rel, state = "≥", "active"
	}
	out := fmt.Sprintf("%s %s %s %s (%s)", s.Name, num(s.Value), rel, num(s.Threshold), state)
	if s.Note != "" {
		out += "; " + s.Note
	}
	return out
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// Judge compares a sample's signals with the rules' thresholds. A sample is idle only when
// every signal is below its threshold: exactly the threshold counts as active.
func Judge(s Sample, r IdleRules) (Verdict, []Signal) {
	gpu := Signal{Name: "gpu%", Value: s.GPUPercent, Threshold: r.GPU.Value, Known: s.GPUKnown}
	if !s.GPUKnown {
		// NVML gives no utilisation here: GPU memory that changes counts as activity.
		gpu = Signal{Name: "gpu-memory-change-MiB", Threshold: 1}
		switch {
		case !s.HasPrevGPUMemory:
			gpu.Note = "NVML gives no utilisation for a MIG instance; GPU memory has no earlier sample to compare"
		default:
			gpu.Known = true
			gpu.Value = float64(absDiff(s.GPUMemoryBytes, s.PrevGPUMemoryBytes)) / (1 << 20)
			gpu.Note = fmt.Sprintf("NVML gives no utilisation for a MIG instance: idle only while its GPU memory (%s MiB) does not change", num(float64(s.GPUMemoryBytes>>20)))
		}
	}
	signals := []Signal{gpu,
		{Name: "cpu%", Value: s.CPUPercent, Threshold: r.CPU.Value, Known: s.HasRates, Note: noWindow(s.HasRates)},
		{Name: "network-B/s", Value: s.NetworkBytesPerSecond, Threshold: r.Network.Value, Known: s.HasRates, Note: noWindow(s.HasRates)},
	}
	known := true
	for _, sig := range signals {
		if sig.Active() {
			return Active, signals
		}
		known = known && sig.Known
	}
	if !known {
		return NoVerdict, signals
	}
	return Idle, signals
}

func noWindow(has bool) string {
	if has {
		return ""
	}
	return "first sample: no window to rate over yet"
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// IdleState is what the idle rules remember of a container between samples. It lives in
// the allocation's status, so a restart of gpuwarden neither resets a streak nor repeats a
// warning.
type IdleState struct {
	// Since is the time of the first idle sample of the current run; zero while active.
	Since time.Time
	// Samples is how many idle samples in a row were seen, counted up to the rule's
	// consecutiveSamples.
	Samples int
	// Sent are the notices already given in this run: warning fractions ("0.8"), Info (an
	// exempt container's notice) and Stop (a stop done, or held back by the mode).
	Sent []string
}

// Markers in IdleState.Sent and RuntimeState.Sent besides warning fractions.
const (
	SentInfo = "info"
	SentStop = "stop"
)

func (s IdleState) sent(what string) bool { return slices.Contains(s.Sent, what) }

// Warned reports whether the warning at fraction f was given in this run.
func (s IdleState) Warned(f float64) bool { return s.sent(fracKey(f)) }

// Running is what the running-container rules read besides the sample.
type Running struct {
	// StartedAt is when the container last started.
	StartedAt time.Time
	// AllocatedFraction is the node's allocated fraction of GPU capacity.
	AllocatedFraction float64
	// KeepAlive returns the keep-alive file's modification time, false when it does not
	// exist or cannot be read; called only when a stop is due.
	KeepAlive func() (time.Time, bool)
}

// Notice kinds.
const (
	IdleWarning    = "idle_warning"
	IdleStop       = "idle_stop"
	IdleInfo       = "idle_notice"
	RuntimeWarning = "runtime_warning"
	RuntimeStop    = "runtime_stop"
)

// Notice is a warning, an informational notice or a stop that is due.
type Notice struct {
	// Kind is IdleWarning, IdleStop, IdleInfo, RuntimeWarning or RuntimeStop.
	Kind string
	// StopAt is when the container will be (or was due to be) stopped; zero: never.
	StopAt time.Time
	// Deadline is when the limit fell due, for a stop (its delay is measured from it).
	Deadline time.Time
	// Held is true when the mode holds the stop back (DryRun, NotifyOnly).
	Held bool
	// Message says why for people.
	Message string
	// Policy names the policy that set the limit.
	Policy string
}

// IdleResult is the outcome of one sample.
type IdleResult struct {
	State   IdleState
	Verdict Verdict
	Signals []Signal
	// IdleFor is how long the container has been idle (once the streak counts).
	IdleFor time.Duration
	// Timeout is the timeout in force (shortened under high demand); 0: none.
	Timeout time.Duration
	// HighDemand says the timeout was shortened.
	HighDemand bool
	// StopAt is when the container will be stopped if it stays idle; zero: never.
	StopAt time.Time
	// KeepAliveUntil is when a fresh keep-alive file stops postponing the stop.
	KeepAliveUntil time.Time
	Notices        []Notice
}

// Counting reports whether the streak is long enough for the idle time to count.
func (r IdleResult) Counting(rules IdleRules) bool {
	return !r.State.Since.IsZero() && r.State.Samples >= max(rules.Consecutive, 1)
}

// ObserveIdle feeds one sample to the idle rules: it returns the new state, what the
// sample says and the notices due now. Any active sample ends the run and re-arms the
// warnings; consecutiveSamples idle samples in a row start the idle time, counted from the
// first of them; nothing is counted during startupGrace; a keep-alive file touched within
// its maximum age postpones the stop; under high demand the timeout is multiplied by its
// factor. Warnings come once each, at each fraction of the timeout; an exempt container
// (idleTimeout lifted) gets one notice for information at the first fraction.
func ObserveIdle(st IdleState, s Sample, r Rules, c Running) IdleResult {
	rules := r.Idle
	res := IdleResult{State: st}
	if !c.StartedAt.IsZero() && st.Since.Before(c.StartedAt) {
		res.State = IdleState{} // a run from before the container's last start
	}
	if InStartupGrace(rules, c.StartedAt, s.Time) {
		res.Verdict, res.State = InGrace, IdleState{}
		_, res.Signals = Judge(s, rules)
		return res
	}
	res.Verdict, res.Signals = Judge(s, rules)
	switch res.Verdict {
	case Active:
		res.State = IdleState{}
		return res
	case NoVerdict:
		// Neither idle nor active: the run goes on uncounted.
	case Idle:
		if res.State.Since.IsZero() {
			res.State.Since = s.Time
		}
		if need := max(rules.Consecutive, 1); res.State.Samples < need {
			res.State.Samples++
		}
	}
	if res.State.Since.IsZero() || !res.Counting(rules) {
		return res
	}
	res.IdleFor = s.Time.Sub(res.State.Since)
	timeout, exempt := rules.Timeout, false
	if !timeout.Applies() {
		if !timeout.Unlimited || !rules.Lifted.Applies() {
			return res // no idle timeout at all
		}
		timeout, exempt = rules.Lifted, true
	}
	res.Timeout = timeout.Duration
	if rules.HighDemandAt > 0 && rules.HighDemandFactor > 0 && c.AllocatedFraction >= rules.HighDemandAt {
		res.Timeout = time.Duration(float64(res.Timeout) * rules.HighDemandFactor)
		res.HighDemand = true
	}
	demand := ""
	if res.HighDemand {
		demand = fmt.Sprintf(" (shortened from %s: %s of the node's GPU capacity is allocated, at or above %s)",
			timeout.Duration, pct(c.AllocatedFraction), pct(rules.HighDemandAt))
	}
	if exempt {
		res.Timeout = 0
		if len(rules.WarnAt) > 0 && !res.State.sent(SentInfo) && res.IdleFor >= frac(timeout.Duration, rules.WarnAt[0]) {
			res.State.Sent = append(res.State.Sent, SentInfo)
			res.Notices = append(res.Notices, Notice{Kind: IdleInfo, Policy: r.Idle.Timeout.From,
				Message: fmt.Sprintf("For information only: idle for %s; it would be stopped after %s of idling, but %s exempts it from the idle timeout", roundMin(res.IdleFor), timeout.Duration, policyOr(r.Idle.Timeout.From))})
		}
		return res
	}
	deadline := res.State.Since.Add(res.Timeout)
	res.StopAt = deadline
	if s.Time.Before(deadline) {
		// Warnings: the highest fraction passed, once; the lower ones are then spent too.
		var due []float64
		for _, f := range rules.WarnAt {
			if f < 1 && res.IdleFor >= frac(res.Timeout, f) && !res.State.sent(fracKey(f)) {
				due = append(due, f)
			}
		}
		if len(due) > 0 {
			for _, f := range due {
				res.State.Sent = append(res.State.Sent, fracKey(f))
			}
			res.Notices = append(res.Notices, Notice{Kind: IdleWarning, StopAt: deadline, Policy: timeout.From,
				Message: fmt.Sprintf("Idle for %s (%s of its idle timeout of %s%s, set by %s); it will be stopped at %s unless it becomes busy",
					roundMin(res.IdleFor), pct(due[len(due)-1]), res.Timeout, demand, policyOr(timeout.From), deadline.UTC().Format(time.RFC3339))})
		}
		return res
	}
	if res.State.sent(SentStop) {
		return res
	}
	if rules.KeepAlivePath != "" && c.KeepAlive != nil {
		if touched, ok := c.KeepAlive(); ok && s.Time.Sub(touched) < rules.KeepAliveMaxAge {
			res.KeepAliveUntil = touched.Add(rules.KeepAliveMaxAge)
			res.StopAt = res.KeepAliveUntil
			return res
		}
	}
	res.State.Sent = append(res.State.Sent, SentStop)
	res.Notices = append(res.Notices, Notice{Kind: IdleStop, StopAt: s.Time, Deadline: deadline, Policy: timeout.From, Held: r.Mode != gpuwardenv1alpha1.ModeEnforce,
		Message: fmt.Sprintf("Idle for %s, past its idle timeout of %s%s set by %s", roundMin(res.IdleFor), res.Timeout, demand, policyOr(timeout.From))})
	return res
}

// InStartupGrace reports whether at falls within startupGrace of the container's start.
func InStartupGrace(r IdleRules, startedAt, at time.Time) bool {
	return r.StartupGrace > 0 && at.Sub(startedAt) < r.StartupGrace
}

func frac(d time.Duration, f float64) time.Duration { return time.Duration(float64(d) * f) }

func fracKey(f float64) string { return num(f) }

func pct(f float64) string { return num(float64(int(f*1000+0.5))/10) + "%" }

func roundMin(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

func policyOr(from string) string {
	if from == "" {
		return "no policy"
	}
	return from
}

// RuntimeState is what the runtime rules remember: the warnings already given.
type RuntimeState struct {
	Sent []string
}

// ObserveRuntime returns the runtime notices due at now for a container that has run
// since since (the allocation's binding or the container's first start, whichever is
// earlier, so a restart does not reset it): warnings at each runtimeWarnAtFractions, once;
// at maxRuntime a stop (the container is stopped, not removed). next is how long until the
// next notice falls due (0: none will).
func ObserveRuntime(st RuntimeState, since time.Time, r Rules, now time.Time) (out RuntimeState, notices []Notice, next time.Duration) {
	out = RuntimeState{Sent: slices.Clone(st.Sent)}
	limit := r.Runtime.Max
	if !limit.Applies() || since.IsZero() {
		return out, nil, 0
	}
	ran := now.Sub(since)
	deadline := since.Add(limit.Duration)
	if ran >= limit.Duration {
		if !slices.Contains(out.Sent, SentStop) {
			out.Sent = append(out.Sent, SentStop)
			notices = append(notices, Notice{Kind: RuntimeStop, StopAt: now, Deadline: deadline, Policy: limit.From, Held: r.Mode != gpuwardenv1alpha1.ModeEnforce,
				Message: fmt.Sprintf("Running for %s, at its maximum runtime of %s set by %s", roundMin(ran), limit.Duration, policyOr(limit.From))})
		}
		return out, notices, 0
	}
	next = limit.Duration - ran
	var due []float64
	for _, f := range r.Runtime.WarnAt {
		at := frac(limit.Duration, f)
		switch {
		case f >= 1:
		case ran >= at && !slices.Contains(out.Sent, fracKey(f)):
			due = append(due, f)
		case ran < at && at-ran < next:
			next = at - ran
		}
	}
	if len(due) > 0 {
		for _, f := range due {
			out.Sent = append(out.Sent, fracKey(f))
		}
		notices = append(notices, Notice{Kind: RuntimeWarning, StopAt: deadline, Policy: limit.From,
			Message: fmt.Sprintf("Running for %s (%s of its maximum runtime of %s, set by %s); it will be stopped at %s",
				roundMin(ran), pct(due[len(due)-1]), limit.Duration, policyOr(limit.From), deadline.UTC().Format(time.RFC3339))})
	}
	return out, notices, next
}

// Describe is a sample's signals in one line, e.g. "gpu% 0 < 5 (idle), cpu% 12 ≥ 2 (active)".
func Describe(signals []Signal) string {
	parts := make([]string, len(signals))
	for i, s := range signals {
		parts[i] = s.String()
	}
	return strings.Join(parts, ", ")
}

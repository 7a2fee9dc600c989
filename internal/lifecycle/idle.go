package lifecycle

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
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
	// KeepAlive returns the keep-alive file's modification time, false when the container
	// has none, and an error when it could not be read (the engine did not answer, the
	// container is going away): a stop is then held, never taken for "no keep-alive".
	// Called only when a stop is due.
	KeepAlive func() (time.Time, bool, error)
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
	// Unread is why a stop that is due was held this sample: the keep-alive file could not
	// be read. The next sample decides again.
	Unread  error
	Notices []Notice
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
	res := countIdle(st, s, r.Idle, c)
	if res.State.Since.IsZero() || !res.Counting(r.Idle) {
		return res
	}
	res.IdleFor = s.Time.Sub(res.State.Since)
	timeout, exempt, ok := idleTimeout(r.Idle)
	if !ok {
		return res // no idle timeout at all
	}
	res.Timeout = timeout.Duration
	if rules := r.Idle; rules.HighDemandAt > 0 && rules.HighDemandFactor > 0 && c.AllocatedFraction >= rules.HighDemandAt {
		res.Timeout = time.Duration(float64(res.Timeout) * rules.HighDemandFactor)
		res.HighDemand = true
	}
	if exempt {
		return res.informExempt(r, timeout)
	}
	res.StopAt = res.State.Since.Add(res.Timeout)
	if s.Time.Before(res.StopAt) {
		return res.warn(r, timeout, c)
	}
	return res.stop(s, r, timeout, c)
}

// countIdle judges one sample and carries the idle run on: reset by activity, a start
// since the run began or the startup grace; counted by idle samples.
func countIdle(st IdleState, s Sample, rules IdleRules, c Running) IdleResult {
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
	return res
}

// idleTimeout is the timeout that applies, and whether it is one an exemption lifted (said,
// never enforced); ok is false when there is none.
func idleTimeout(rules IdleRules) (timeout resolve.Limit, exempt, ok bool) {
	if rules.Timeout.Applies() {
		return rules.Timeout, false, true
	}
	if rules.Timeout.Unlimited && rules.Lifted.Applies() {
		return rules.Lifted, true, true
	}
	return resolve.Limit{}, false, false
}

// demandNote says why a timeout was shortened under high demand; empty when it was not.
func (res IdleResult) demandNote(timeout resolve.Limit, c Running, rules IdleRules) string {
	if !res.HighDemand {
		return ""
	}
	return fmt.Sprintf(" (shortened from %s: %s of the node's GPU capacity is allocated, at or above %s)",
		timeout.Duration, pct(c.AllocatedFraction), pct(rules.HighDemandAt))
}

// informExempt tells, once, an exempt container's owner that it would have been stopped.
func (res IdleResult) informExempt(r Rules, lifted resolve.Limit) IdleResult {
	res.Timeout = 0
	if len(r.Idle.WarnAt) > 0 && !res.State.sent(SentInfo) && res.IdleFor >= frac(lifted.Duration, r.Idle.WarnAt[0]) {
		res.State.Sent = append(res.State.Sent, SentInfo)
		res.Notices = append(res.Notices, Notice{Kind: IdleInfo, Policy: r.Idle.Timeout.From,
			Message: fmt.Sprintf("For information only: idle for %s; it would be stopped after %s of idling, but %s exempts it from the idle timeout", roundMin(res.IdleFor), lifted.Duration, policyOr(r.Idle.Timeout.From))})
	}
	return res
}

// warn warns of the stop to come: the highest warning fraction passed, once.
func (res IdleResult) warn(r Rules, timeout resolve.Limit, c Running) IdleResult {
	due, _ := dueWarnings(r.Idle.WarnAt, res.IdleFor, res.Timeout, res.State.Sent)
	if len(due) == 0 {
		return res
	}
	res.State.Sent = appendWarned(res.State.Sent, due)
	res.Notices = append(res.Notices, Notice{Kind: IdleWarning, StopAt: res.StopAt, Policy: timeout.From,
		Message: fmt.Sprintf("Idle for %s (%s of its idle timeout of %s%s, set by %s); it will be stopped at %s unless it becomes busy",
			roundMin(res.IdleFor), pct(due[len(due)-1]), res.Timeout, res.demandNote(timeout, c, r.Idle), policyOr(timeout.From), res.StopAt.UTC().Format(time.RFC3339))})
	return res
}

// stop calls for the stop, once, unless the keep-alive file was touched recently enough.
func (res IdleResult) stop(s Sample, r Rules, timeout resolve.Limit, c Running) IdleResult {
	if res.State.sent(SentStop) {
		return res
	}
	deadline := res.StopAt
	if r.Idle.KeepAlivePath != "" && c.KeepAlive != nil {
		touched, ok, err := c.KeepAlive()
		if err != nil {
			res.Unread = err
			return res
		}
		if ok && s.Time.Sub(touched) < r.Idle.KeepAliveMaxAge {
			res.KeepAliveUntil = touched.Add(r.Idle.KeepAliveMaxAge)
			res.StopAt = res.KeepAliveUntil
			return res
		}
	}
	res.State.Sent = append(res.State.Sent, SentStop)
	res.Notices = append(res.Notices, Notice{Kind: IdleStop, StopAt: s.Time, Deadline: deadline, Policy: timeout.From, Held: r.Mode != gpuwardenv1alpha1.ModeEnforce,
		Message: fmt.Sprintf("Idle for %s, past its idle timeout of %s%s set by %s", roundMin(res.IdleFor), res.Timeout, res.demandNote(timeout, c, r.Idle), policyOr(timeout.From))})
	return res
}

// dueWarnings are the warning fractions (below 1) of limit that elapsed has passed and that
// were not sent yet, lowest first, and how long until the next one not passed yet (0 when
// none is left). Idle and runtime warnings both count this way: the highest fraction passed
// is said, and the lower ones are then spent too.
func dueWarnings(warnAt []float64, elapsed, limit time.Duration, sent []string) (due []float64, next time.Duration) {
	for _, f := range warnAt {
		at := frac(limit, f)
		switch {
		case f >= 1:
		case elapsed >= at && !slices.Contains(sent, fracKey(f)):
			due = append(due, f)
		case elapsed < at && (next == 0 || at-elapsed < next):
			next = at - elapsed
		}
	}
	return due, next
}

// appendWarned marks the due warning fractions sent.
func appendWarned(sent []string, due []float64) []string {
	for _, f := range due {
		sent = append(sent, fracKey(f))
	}
	return sent
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
	due, untilWarning := dueWarnings(r.Runtime.WarnAt, ran, limit.Duration, out.Sent)
	if untilWarning > 0 && untilWarning < next {
		next = untilWarning
	}
	if len(due) > 0 {
		out.Sent = appendWarned(out.Sent, due)
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

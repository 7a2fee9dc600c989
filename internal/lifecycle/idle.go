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
	// Sent are the notices already given: warning fractions ("0.8"), given for the stop
	// time WarnedFor, and, for the current run only, Info (an exempt container's notice) and
	// Stop (a stop done, or held back by the mode).
	Sent []string
	// WarnedFor is the stop time the warning fractions in Sent announced; zero when none was
	// given. It outlives the run: see ObserveIdle.
	WarnedFor time.Time
}

// Markers in IdleState.Sent and RuntimeState.Sent besides warning fractions.
const (
	SentInfo = "info"
	SentStop = "stop"
)

func (s IdleState) sent(what string) bool { return slices.Contains(s.Sent, what) }

// Warned reports whether the warning at fraction f was given for the stop time stopAt.
func (s IdleState) Warned(f float64, stopAt time.Time) bool {
	return SameStopTime(s.WarnedFor, stopAt) && s.sent(fracKey(f))
}

// SameStopTime reports whether two stop times are the same one as a warning names it: to the
// second (a stop time kept in the allocation's status has lost its nanoseconds).
func SameStopTime(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() && b.IsZero()
	}
	d := a.Sub(b)
	return d < time.Second && d > -time.Second
}

// newRun is the state a new run starts from: nothing counted, the run's own markers (Info,
// Stop) dropped, and the warnings given, with the stop time they named, kept.
func (s IdleState) newRun() IdleState {
	if s.WarnedFor.IsZero() {
		return IdleState{}
	}
	return IdleState{Sent: warningsOf(s.Sent), WarnedFor: s.WarnedFor}
}

// warningsOf are the warning fractions among sent markers.
func warningsOf(sent []string) []string {
	var out []string
	for _, m := range sent {
		if m != SentInfo && m != SentStop {
			out = append(out, m)
		}
	}
	return out
}

// Running is what the running-container rules read besides the sample.
type Running struct {
	// StartedAt is when the container last started.
	StartedAt time.Time
	// AllocatedFraction is the node's allocated fraction of GPU capacity.
	AllocatedFraction float64
	// KeepAlive returns the keep-alive file's modification time, false when the container
	// has none, and an error when it could not be read (the engine did not answer, the
	// container is going away): the warning or stop that is due is then held, never taken
	// for "no keep-alive". Called only once a warning or the stop may be due.
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
	// KeepAliveUntil is when a fresh keep-alive file stops postponing the stop (then StopAt);
	// KeepAliveTouched when the file was last touched.
	KeepAliveUntil, KeepAliveTouched time.Time
	// Unread is why a warning or stop that is due was held this sample: the keep-alive file
	// could not be read. The next sample decides again.
	Unread error
	// Unjudged says a warning or stop may be due but the sample could not be judged (a
	// signal unread: NoVerdict); the next sample that can be judged decides.
	Unjudged bool
	Notices  []Notice
}

// Counting reports whether the streak is long enough for the idle time to count.
func (r IdleResult) Counting(rules IdleRules) bool {
	return !r.State.Since.IsZero() && r.State.Samples >= max(rules.Consecutive, 1)
}

// ObserveIdle feeds one sample to the idle rules: it returns the new state, what the
// sample says and the notices due now. This is the idle rule, whole:
//
//   - A run of idle samples starts at the first of them; consecutiveSamples idle samples in a
//     row make the idle time count, from the first. Any active sample ends the run, and so do
//     a start of the container and its startupGrace (nothing is counted during it).
//   - The stop time is the run's start plus the timeout (multiplied by the high-demand
//     factor while demand is high), or, when later, the moment the keep-alive file stops
//     being fresh (its modification plus its maxAge): a fresh file postpones the stop.
//   - A warning at fraction f falls due (1-f) x timeout before the stop time: at f of the
//     timeout for a plain stop, and as long before the keep-alive file lapses when the file
//     holds the container. A warning names its stop time, and each fraction is said once per
//     stop time: a new run, after activity or a restart, is warned again only when it would be
//     stopped at a different time (a run held by the same keep-alive file is not); a touch of
//     the file moves the stop time and re-arms the warnings. A container whose keep-alive
//     file is fresh is therefore never told of a stop the file postpones.
//   - The stop is called for once per run, at the stop time.
//   - Nothing is said or done on a sample that cannot be judged (NoVerdict: a signal could
//     not be read), nor while the keep-alive file cannot be read (Unread): the warning or stop
//     waits for a sample that can decide. A failed read is never taken for an answer.
//   - A container an exemption lifts the idle timeout of gets one notice for information, at
//     the first fraction of the lifted timeout, per run.
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
	if res.Verdict != Idle {
		// Counting, but this sample says neither idle nor active: nothing is decided on it.
		if !exempt {
			res.StopAt = res.State.Since.Add(res.Timeout)
			res.Unjudged = !res.State.sent(SentStop) && res.mayBeDue(r.Idle, s.Time)
		}
		return res
	}
	if exempt {
		return res.informExempt(r, timeout)
	}
	res.StopAt = res.State.Since.Add(res.Timeout)
	if res.State.sent(SentStop) || !res.mayBeDue(r.Idle, s.Time) {
		return res // stopped in this run already, or nothing due yet
	}
	if r.Idle.KeepAlivePath != "" && c.KeepAlive != nil {
		touched, ok, err := c.KeepAlive()
		if err != nil {
			res.Unread = err
			return res
		}
		if ok {
			res.KeepAliveTouched = touched
			if until := touched.Add(r.Idle.KeepAliveMaxAge); s.Time.Before(until) && until.After(res.StopAt) {
				res.KeepAliveUntil, res.StopAt = until, until
			}
		}
	}
	if s.Time.Before(res.StopAt) {
		return res.warn(r, timeout, c, s.Time)
	}
	return res.stop(s, r, timeout, c)
}

// mayBeDue reports whether a warning or the stop may be due at now: the first warning
// point before the run's own stop time has passed (a keep-alive file only moves it later).
func (res IdleResult) mayBeDue(rules IdleRules, now time.Time) bool {
	first := res.StopAt
	for _, f := range rules.WarnAt {
		if f < 1 {
			first = res.StopAt.Add(-res.beforeStop(f))
			break // WarnAt is ascending: the lowest fraction comes first
		}
	}
	return !now.Before(first)
}

// beforeStop is how long before the stop time the warning at fraction f falls due.
func (res IdleResult) beforeStop(f float64) time.Duration { return res.Timeout - frac(res.Timeout, f) }

// WarningAt is when the warning at fraction f falls due for this result's stop time, and
// whether it was given for it.
func (res IdleResult) WarningAt(f float64) (at time.Time, sent bool) {
	return res.StopAt.Add(-res.beforeStop(f)), res.State.Warned(f, res.StopAt)
}

// countIdle judges one sample and carries the idle run on: reset by activity, a start
// since the run began or the startup grace; counted by idle samples.
func countIdle(st IdleState, s Sample, rules IdleRules, c Running) IdleResult {
	res := IdleResult{State: st}
	if !c.StartedAt.IsZero() && st.Since.Before(c.StartedAt) {
		res.State = st.newRun() // a run from before the container's last start
	}
	if InStartupGrace(rules, c.StartedAt, s.Time) {
		res.Verdict, res.State = InGrace, st.newRun()
		_, res.Signals = Judge(s, rules)
		return res
	}
	res.Verdict, res.Signals = Judge(s, rules)
	switch res.Verdict {
	case Active:
		res.State = st.newRun()
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
		res.State.Sent = append(slices.Clone(res.State.Sent), SentInfo)
		res.Notices = append(res.Notices, Notice{Kind: IdleInfo, Policy: r.Idle.Timeout.From,
			Message: fmt.Sprintf("For information only: idle for %s; it would be stopped after %s of idling, but %s exempts it from the idle timeout", roundMin(res.IdleFor), lifted.Duration, policyOr(r.Idle.Timeout.From))})
	}
	return res
}

// warn warns of the stop to come: the highest warning fraction passed, once per stop time.
func (res IdleResult) warn(r Rules, timeout resolve.Limit, c Running, now time.Time) IdleResult {
	sent := res.State.Sent
	// Warnings kept with no stop time (by a release that kept them per run) are this run's.
	if !res.State.WarnedFor.IsZero() && !SameStopTime(res.State.WarnedFor, res.StopAt) {
		sent = slices.DeleteFunc(slices.Clone(sent), func(m string) bool { return m != SentInfo && m != SentStop })
	}
	// Measured back from the stop time: for a plain stop this is the idle time.
	toward := res.Timeout - res.StopAt.Sub(now)
	due, _ := dueWarnings(r.Idle.WarnAt, toward, res.Timeout, sent)
	if len(due) == 0 {
		return res
	}
	res.State.Sent, res.State.WarnedFor = appendWarned(sent, due), res.StopAt
	stopAt := res.StopAt.UTC().Format(time.RFC3339)
	msg := fmt.Sprintf("Idle for %s (%s of its idle timeout of %s%s, set by %s); it will be stopped at %s unless it becomes busy",
		roundMin(res.IdleFor), pct(due[len(due)-1]), res.Timeout, res.demandNote(timeout, c, r.Idle), policyOr(timeout.From), stopAt)
	if !res.KeepAliveUntil.IsZero() {
		msg = fmt.Sprintf("Idle for %s (its idle timeout is %s%s, set by %s); its keep-alive file %s, last touched at %s, keeps it running until %s: it will be stopped at %s unless it becomes busy or the file is touched again",
			roundMin(res.IdleFor), res.Timeout, res.demandNote(timeout, c, r.Idle), policyOr(timeout.From), r.Idle.KeepAlivePath,
			res.KeepAliveTouched.UTC().Format(time.RFC3339), stopAt, stopAt)
	}
	res.Notices = append(res.Notices, Notice{Kind: IdleWarning, StopAt: res.StopAt, Policy: timeout.From, Message: msg})
	return res
}

// stop calls for the stop (once per run: ObserveIdle checks).
func (res IdleResult) stop(s Sample, r Rules, timeout resolve.Limit, c Running) IdleResult {
	deadline := res.StopAt
	msg := fmt.Sprintf("Idle for %s, past its idle timeout of %s%s set by %s", roundMin(res.IdleFor), res.Timeout, res.demandNote(timeout, c, r.Idle), policyOr(timeout.From))
	if lapsed := res.KeepAliveTouched.Add(r.Idle.KeepAliveMaxAge); !res.KeepAliveTouched.IsZero() && lapsed.After(deadline) {
		deadline = lapsed
		msg += fmt.Sprintf("; its keep-alive file %s, last touched at %s, kept it running until %s", r.Idle.KeepAlivePath,
			res.KeepAliveTouched.UTC().Format(time.RFC3339), lapsed.UTC().Format(time.RFC3339))
	}
	res.State.Sent = append(slices.Clone(res.State.Sent), SentStop)
	res.Notices = append(res.Notices, Notice{Kind: IdleStop, StopAt: s.Time, Deadline: deadline, Policy: timeout.From, Held: r.Mode != gpuwardenv1alpha1.ModeEnforce,
		Message: msg})
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
// earlier, so a restart does not reset it) and was last started at startedAt: warnings at
// each runtimeWarnAtFractions, once; at maxRuntime a stop (the container is stopped, not
// removed), and again for each start after that (a container started again past its
// maximum runtime is stopped again, or the limit would bound nothing). next is how long
// until the next notice falls due (0: none will).
func ObserveRuntime(st RuntimeState, since, startedAt time.Time, r Rules, now time.Time) (out RuntimeState, notices []Notice, next time.Duration) {
	out = RuntimeState{Sent: slices.Clone(st.Sent)}
	limit := r.Runtime.Max
	if !limit.Applies() || since.IsZero() {
		return out, nil, 0
	}
	ran := now.Sub(since)
	deadline := since.Add(limit.Duration)
	if ran >= limit.Duration {
		key := SentStop
		if startedAt.After(deadline) {
			key = restartStop(startedAt)
		}
		if !slices.Contains(out.Sent, key) {
			out.Sent = append(slices.DeleteFunc(out.Sent, isRestartStop), key) // the latest start's alone: Sent is bounded
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

// restartStop is the Sent entry of the runtime stop of a start at t past the maximum
// runtime ("s" and its Unix time: an entry is at most 16 characters).
func restartStop(t time.Time) string { return "s" + strconv.FormatInt(t.Unix(), 10) }

// IsRuntimeStop reports whether a Sent entry records a runtime stop (the first, or a
// start's past the limit).
func IsRuntimeStop(sent string) bool { return sent == SentStop || isRestartStop(sent) }

func isRestartStop(sent string) bool {
	_, err := strconv.ParseInt(strings.TrimPrefix(sent, "s"), 10, 64)
	return strings.HasPrefix(sent, "s") && err == nil
}

// Describe is a sample's signals in one line, e.g. "gpu% 0 < 5 (idle), cpu% 12 ≥ 2 (active)".
func Describe(signals []Signal) string {
	parts := make([]string, len(signals))
	for i, s := range signals {
		parts[i] = s.String()
	}
	return strings.Join(parts, ", ")
}

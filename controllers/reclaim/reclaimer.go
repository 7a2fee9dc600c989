package reclaim

// Idle and runtime reclaim: each sample of a running GPU container goes through the pure
// rules of internal/lifecycle; their state is kept in the allocation's status (written only
// when it changes, before anything is said or done, so a restart repeats nothing), and what
// is due is said and done as the policy's mode allows.

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// samplesKept is how many samples of each container explain shows.
const samplesKept = 5

// Reclaimer applies the idle and runtime rules to sampled containers.
type Reclaimer struct {
	Client   client.Client
	Engine   docker.Engine
	Owners   *containerstore.Owners
	NodeName string
	Clock    clock.PassiveClock
	Recorder recorder.EventRecorder
	Audit    audit.Logger
	// Actions stops containers and tells their owners (shared with the container controller).
	Actions *actions.Actions

	mu   sync.Mutex
	seen map[string]*observation // by container ID, for explain
	// exhausted are the users whose budget is used up (SetExhausted, once a round).
	exhausted map[string]string
	// saved is the state last written to each allocation (by name) and the version the
	// write made: a cache that has not seen the write yet is not taken for the truth (it
	// would repeat a warning).
	saved map[string]savedState
}

type savedState struct {
	version         int64
	idle            *gpuwardenv1alpha1.IdleStatus
	runtime         *gpuwardenv1alpha1.RuntimeStatus
	containerStatus string
}

// observation is what explain shows of a container.
type observation struct {
	Container docker.Container
	Policy    resolve.Policy
	Rules     lifecycle.Rules
	Samples   []lifecycle.Sample
	Last      lifecycle.IdleResult
	Runtime   time.Time // runtime counted since
	Demand    float64
}

// Observe applies the rules to one sample of c, held through a, and returns the verdict;
// policies are the ContainerPolicies, listed once for the round.
func (r *Reclaimer) Observe(ctx context.Context, c docker.Container, a *gpuwardenv1alpha1.GPUAllocation, s lifecycle.Sample, demand float64, policies []gpuwardenv1alpha1.ContainerPolicy) lifecycle.Verdict {
	log := ctrl.LoggerFrom(ctx).WithValues("container", c.Name, "allocation", a.Name)
	owner := r.Owners.Of(c)
	policy, err := r.Actions.PolicyAmong(ctx, policies, c, owner)
	if err != nil {
		log.Error(err, "Reading the container's policy; not judged this round")
		return lifecycle.NoVerdict
	}
	rules := lifecycle.RulesFrom(policy)
	obs := &observation{Container: c, Policy: policy, Rules: rules, Demand: demand}
	defer r.remember(obs, s)
	if labels.IsProtected(c.Labels) {
		return lifecycle.Exempt
	}
	a = r.fresh(a)
	state := idleStateOf(a.Status.Idle)
	res := lifecycle.ObserveIdle(state, s, rules, lifecycle.Running{StartedAt: c.StartedAt, AllocatedFraction: demand,
		KeepAlive: func() (time.Time, bool, error) {
			t, err := r.Engine.ModTime(ctx, c.ID, rules.Idle.KeepAlivePath)
			if errors.Is(err, docker.ErrNoFile) {
				return time.Time{}, false, nil
			}
			return t, err == nil, err
		}})
	if res.Unread != nil {
		log.Info("Reading the keep-alive file; the warning or stop that is due waits for the next sample", "error", res.Unread.Error())
	}
	obs.Last = res
	since := runtimeSince(a, c)
	obs.Runtime = since
	rstate, rnotices, _ := lifecycle.ObserveRuntime(runtimeStateOf(a.Status.Runtime), since, c.StartedAt, rules, s.Time)
	if err := r.saveState(ctx, a, res.State, since, rstate); err != nil {
		log.Error(err, "Keeping the idle state in the allocation's status; nothing is said or done this round")
		return res.Verdict
	}
	for _, n := range append(res.Notices, rnotices...) {
		r.carryOut(ctx, c, owner, a, policy, n)
	}
	if why, ok := r.exhaustedFor(owner); ok {
		r.budgetStop(ctx, c, owner, a.DeepCopy(), policy, why)
	}
	if !rules.Idle.Timeout.Applies() {
		return lifecycle.Exempt
	}
	return res.Verdict
}

func (r *Reclaimer) remember(obs *observation, s lifecycle.Sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]*observation{}
	}
	if old := r.seen[obs.Container.ID]; old != nil {
		obs.Samples = old.Samples
	}
	obs.Samples = append(obs.Samples, s)
	if len(obs.Samples) > samplesKept {
		obs.Samples = obs.Samples[len(obs.Samples)-samplesKept:]
	}
	r.seen[obs.Container.ID] = obs
}

// Forget drops what is remembered of containers not in keep (by ID).
func (r *Reclaimer) Forget(keep map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.seen {
		if !keep[id] {
			delete(r.seen, id)
		}
	}
	for name, st := range r.saved {
		if !keep[st.containerStatus] {
			delete(r.saved, name)
		}
	}
}

func (r *Reclaimer) observed(id string) (observation, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.seen[id]
	if !ok {
		return observation{}, false
	}
	return *o, true
}

// Latest is a container's last sample, its idle state (lifecycle.Exempt when no idle rule
// can stop it) and how long it has been idle, for the metrics.
func (r *Reclaimer) Latest(id string) (last lifecycle.Sample, state lifecycle.Verdict, idleFor time.Duration, ok bool) {
	obs, ok := r.observed(id)
	if !ok || len(obs.Samples) == 0 {
		return lifecycle.Sample{}, "", 0, false
	}
	state = obs.Last.Verdict
	if !obs.Rules.Idle.Timeout.Applies() {
		state = lifecycle.Exempt
	}
	return obs.Samples[len(obs.Samples)-1], state, obs.Last.IdleFor, true
}

// fresh returns a with the state this process last wrote when the cache is older.
func (r *Reclaimer) fresh(a *gpuwardenv1alpha1.GPUAllocation) *gpuwardenv1alpha1.GPUAllocation {
	r.mu.Lock()
	saved, ok := r.saved[a.Name]
	r.mu.Unlock()
	v, err := strconv.ParseInt(a.ResourceVersion, 10, 64)
	if !ok || err != nil || v >= saved.version || saved.containerStatus != a.Status.ContainerID {
		return a
	}
	a = a.DeepCopy()
	a.Status.Idle, a.Status.Runtime = saved.idle.DeepCopy(), saved.runtime.DeepCopy()
	return a
}

func (r *Reclaimer) rememberSaved(a *gpuwardenv1alpha1.GPUAllocation) {
	v, err := strconv.ParseInt(a.ResourceVersion, 10, 64)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.saved == nil {
		r.saved = map[string]savedState{}
	}
	r.saved[a.Name] = savedState{version: v, idle: a.Status.Idle.DeepCopy(), runtime: a.Status.Runtime.DeepCopy(), containerStatus: a.Status.ContainerID}
}

// runtimeSince is when c's runtime counts from: the allocation's binding or the container's
// first start, whichever is earlier; kept in the status so a restart does not reset it.
func runtimeSince(a *gpuwardenv1alpha1.GPUAllocation, c docker.Container) time.Time {
	var out time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (out.IsZero() || t.Before(out)) {
			out = t
		}
	}
	if a.Status.Runtime != nil && a.Status.Runtime.Since != nil {
		earlier(a.Status.Runtime.Since.Time)
	}
	if a.Status.BoundTime != nil {
		earlier(a.Status.BoundTime.Time)
	}
	earlier(c.StartedAt)
	return out.Truncate(time.Second)
}

func idleStateOf(s *gpuwardenv1alpha1.IdleStatus) lifecycle.IdleState {
	if s == nil {
		return lifecycle.IdleState{}
	}
	out := lifecycle.IdleState{Samples: int(s.Samples), Sent: slices.Clone(s.Sent)}
	if s.Since != nil {
		out.Since = s.Since.Time
	}
	if s.WarnedFor != nil {
		out.WarnedFor = s.WarnedFor.Time
	}
	return out
}

func runtimeStateOf(s *gpuwardenv1alpha1.RuntimeStatus) lifecycle.RuntimeState {
	if s == nil {
		return lifecycle.RuntimeState{}
	}
	return lifecycle.RuntimeState{Sent: slices.Clone(s.Sent)}
}

// saveState writes the idle and runtime state into a's status when it changed.
func (r *Reclaimer) saveState(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, idle lifecycle.IdleState, since time.Time, rt lifecycle.RuntimeState) error {
	var wantIdle *gpuwardenv1alpha1.IdleStatus
	if !idle.Since.IsZero() || idle.Samples > 0 || len(idle.Sent) > 0 || !idle.WarnedFor.IsZero() {
		wantIdle = &gpuwardenv1alpha1.IdleStatus{Samples: int32(idle.Samples), Sent: idle.Sent}
		if !idle.Since.IsZero() {
			t := metav1.NewMicroTime(idle.Since.Truncate(time.Microsecond))
			wantIdle.Since = &t
		}
		if !idle.WarnedFor.IsZero() {
			t := metav1.NewMicroTime(idle.WarnedFor.Truncate(time.Microsecond))
			wantIdle.WarnedFor = &t
		}
	}
	var wantRuntime *gpuwardenv1alpha1.RuntimeStatus
	if !since.IsZero() {
		t := metav1.NewTime(since).Rfc3339Copy()
		wantRuntime = &gpuwardenv1alpha1.RuntimeStatus{Since: &t, Sent: rt.Sent}
	}
	if sameIdle(a.Status.Idle, wantIdle) && sameRuntime(a.Status.Runtime, wantRuntime) {
		return nil
	}
	orig := a.DeepCopy()
	a.Status.Idle, a.Status.Runtime = wantIdle, wantRuntime
	if err := r.Client.Status().Patch(ctx, a, client.MergeFrom(orig)); err != nil {
		return err
	}
	r.rememberSaved(a)
	return nil
}

func sameIdle(a, b *gpuwardenv1alpha1.IdleStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Samples == b.Samples && slices.Equal(a.Sent, b.Sent) && sameMicroTime(a.Since, b.Since) && sameMicroTime(a.WarnedFor, b.WarnedFor)
}

func sameRuntime(a, b *gpuwardenv1alpha1.RuntimeStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.Sent, b.Sent) && sameTime(a.Since, b.Since)
}

func sameMicroTime(a, b *metav1.MicroTime) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}

func sameTime(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Unix() == b.Unix()
}

// noticeRecords are the audit records and Event reasons of each notice kind.
var noticeRecords = map[string]struct {
	record audit.LifecycleAction
	event  string
	reason string // the audit record's reason code
}{
	lifecycle.IdleWarning:    {audit.IdleWarning, reasons.EventIdleWarning, "idle"},
	lifecycle.IdleInfo:       {audit.IdleWarning, reasons.EventIdleNotice, "idle_exempt"},
	lifecycle.IdleStop:       {audit.IdleStop, reasons.EventIdleStopped, "idle"},
	lifecycle.RuntimeWarning: {audit.RuntimeWarning, reasons.EventRuntimeWarning, "max_runtime"},
	lifecycle.RuntimeStop:    {audit.RuntimeStop, reasons.EventRuntimeStopped, "max_runtime"},
}

// carryOut says and does what one notice calls for, as the mode allows: DryRun records it
// and touches nothing; NotifyOnly tells the owner and never stops; Enforce does both.
func (r *Reclaimer) carryOut(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, policy resolve.Policy, n lifecycle.Notice) {
	mode := policy.Mode()
	user := containerstore.OwnerOrUnknown(owner)
	rec := noticeRecords[n.Kind]
	metrics.LifecycleNotices.WithLabelValues(n.Kind, string(mode)).Inc()
	if n.Kind == lifecycle.IdleStop || n.Kind == lifecycle.RuntimeStop {
		if mode == gpuwardenv1alpha1.ModeEnforce && actions.HasCheckpoint(c) {
			// The hook may run for minutes: the other containers' samples do not wait.
			go r.stop(ctx, c, owner, a.DeepCopy(), policy, n)
			return
		}
		r.stop(ctx, c, owner, a, policy, n)
		return
	}
	text := n.Message
	if !n.StopAt.IsZero() {
		text += " (stop at " + n.StopAt.UTC().Format(time.RFC3339) + ")"
	}
	eventType := corev1.EventTypeWarning
	if n.Kind == lifecycle.IdleInfo {
		eventType = corev1.EventTypeNormal
	}
	r.Audit.Log(audit.Lifecycle(rec.record, user, containerstore.AuditRef(c), resolve.PolicyName(n.Policy), string(mode), rec.reason+": "+text))
	r.Recorder.Eventf(a, nil, eventType, rec.event, "Notify", "Container %s of %s: %s", message.ContainerName(c), user, message.Truncate(text, message.Max))
	if mode != gpuwardenv1alpha1.ModeDryRun {
		r.Actions.Tell(ctx, noticeFor(c, user, a, policy, n, r.NodeName, r.Clock.Now()))
	}
}

// unmarkStop forgets a stop that failed, so the next sample tries again.
func (r *Reclaimer) unmarkStop(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, kind string) {
	orig := a.DeepCopy()
	drop := func(sent []string) []string {
		return slices.DeleteFunc(slices.Clone(sent), func(s string) bool { return s == lifecycle.SentStop })
	}
	switch {
	case kind == lifecycle.IdleStop && a.Status.Idle != nil:
		a.Status.Idle.Sent = drop(a.Status.Idle.Sent)
	case kind == lifecycle.RuntimeStop && a.Status.Runtime != nil:
		a.Status.Runtime.Sent = slices.DeleteFunc(slices.Clone(a.Status.Runtime.Sent), lifecycle.IsRuntimeStop)
	default:
		return
	}
	if r.Client.Status().Patch(ctx, a, client.MergeFrom(orig)) == nil {
		r.rememberSaved(a)
	}
}

// stop carries out an idle or runtime stop: the stop (its checkpoint hook first), its
// record and the owner's notice, as the mode allows.
func (r *Reclaimer) stop(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, policy resolve.Policy, n lifecycle.Notice) {
	mode := policy.Mode()
	user := containerstore.OwnerOrUnknown(owner)
	rec := noticeRecords[n.Kind]
	// Held back by DryRun and NotifyOnly: stop records "would stop" for those, once per
	// idle run (the rules' state says when), not once per container.
	r.Actions.Unsay(c.ID, actions.WouldKey(lifecycle.Stop, rec.reason))
	began := r.Clock.Now()
	if err := r.Actions.Stop(ctx, c, owner, a, policy, mode, rec.event, rec.reason+": "+n.Message); err != nil {
		if errors.Is(err, docker.ErrNotFound) {
			// Removed since it was sampled: nothing was stopped, and nothing says so.
			ctrl.LoggerFrom(ctx).Info("The container went away before its stop; nothing stopped")
			return
		}
		ctrl.LoggerFrom(ctx).Error(err, "Stopping an idle or over-time container; tried again at the next sample")
		r.unmarkStop(ctx, a, n.Kind)
		return
	}
	if mode == gpuwardenv1alpha1.ModeEnforce {
		metrics.StopDelaySeconds.WithLabelValues(rec.reason).Observe(max(0, r.Clock.Since(n.Deadline).Seconds()))
		r.Audit.Log(audit.Lifecycle(rec.record, user, containerstore.AuditRef(c), resolve.PolicyName(n.Policy), string(mode), rec.reason+": stopped: "+n.Message))
	}
	if mode != gpuwardenv1alpha1.ModeDryRun {
		notice := noticeFor(c, user, a, policy, n, r.NodeName, r.Clock.Now())
		if s, ok := r.Actions.LastStop(c.ID); ok && !s.At.Before(began) && s.Checkpoint != nil {
			notice.Message += " " + actions.CheckpointSentence(s.Checkpoint)
		}
		r.Actions.Tell(ctx, notice)
	}
}

// SetExhausted records the users whose GPU-hour budget is used up (Exhausted), for the
// round's observations.
func (r *Reclaimer) SetExhausted(users map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exhausted = users
}

func (r *Reclaimer) exhaustedFor(owner string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	why, ok := r.exhausted[owner]
	return why, ok && owner != ""
}

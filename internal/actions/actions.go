// Package actions owns what gpuwarden does to a container and its allocation: stopping,
// removing, releasing the GPUs, reporting GPUs used without an allocation and telling the
// owner, each with its Event, audit record and metric, as the policy's mode allows. The
// container reconciler, the reclaimer and the gateway's sweep share one Actions value, so
// that no controller reaches into another for them.
package actions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// DefaultStopGracePeriod is the SIGTERM → SIGKILL wait when no policy sets one.
const DefaultStopGracePeriod = 60 * time.Second

// Actions carries out what the controllers decide about containers. Safe for concurrent use.
type Actions struct {
	Client client.Client
	Engine docker.Engine
	// Store is told why gpuwarden acts on a container, for the record of the engine's event
	// that follows.
	Store *containerstore.Store
	// Groups resolve owners' groups for the policies that select them.
	Groups   resolve.Groups
	Clock    clock.PassiveClock
	Recorder recorder.EventRecorder
	Audit    audit.Logger
	// Notices delivers what the owner is told; nothing is delivered when nil.
	Notices *notify.Notifier

	mu sync.Mutex
	// said remembers what was said once and should not be said on every pass (dry-run
	// actions, unallocated-GPU reports, detections), by container and what.
	said map[string]bool
	// stops are the stops this process made, by container ID, for explain.
	stops map[string]StopRecord
	// stopping are the containers being stopped now: a stop asked for again meanwhile (a
	// checkpoint hook can take minutes) is the same stop.
	stopping map[string]*inflight
}

// StopRecord is a stop gpuwarden made: when, and why ("code: message"), and the
// checkpoint hook run before it, if any.
type StopRecord struct {
	At         time.Time
	Reason     string
	Checkpoint *audit.Checkpoint
}

// LastStop is the last stop of a container this process made, if any.
func (x *Actions) LastStop(id string) (StopRecord, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	s, ok := x.stops[id]
	return s, ok
}

// Validate reports a missing dependency.
func (x *Actions) Validate() error {
	if x == nil || x.Client == nil || x.Engine == nil || x.Store == nil || x.Groups == nil || x.Clock == nil || x.Recorder == nil || x.Audit == nil {
		return errors.New("actions need a Client, Engine, Store, Groups, Clock, Recorder and Audit")
	}
	return nil
}

// Policy is the container's effective ContainerPolicy.
func (x *Actions) Policy(ctx context.Context, c docker.Container, owner string) (resolve.Policy, error) {
	return x.policies().Effective(ctx, owner, c.Labels)
}

// PolicyAmong is the container's effective policy among policies, listed once by the caller.
func (x *Actions) PolicyAmong(ctx context.Context, policies []gpuwardenv1alpha1.ContainerPolicy, c docker.Container, owner string) (resolve.Policy, error) {
	return x.policies().Among(ctx, policies, owner, c.Labels)
}

func (x *Actions) policies() Policies {
	return Policies{Client: x.Client, Groups: x.Groups, Clock: x.Clock}
}

// Once reports whether what (about container id) is said for the first time, and
// remembers that it is.
func (x *Actions) Once(id, what string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.said == nil {
		x.said = map[string]bool{}
	}
	k := id + "/" + what
	if x.said[k] {
		return false
	}
	x.said[k] = true
	return true
}

// Unsay lets one thing be said again (it was said, not done).
func (x *Actions) Unsay(id, what string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.said, id+"/"+what)
}

// Forget drops what was said of a container that is gone.
func (x *Actions) Forget(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for k := range x.said {
		if strings.HasPrefix(k, id+"/") {
			delete(x.said, k)
		}
	}
	delete(x.stops, id)
}

// Stop stops a container for its policy's limits (idle, runtime), SIGKILL after the
// policy's stopGracePeriod, with an Event of eventReason; a mode other than Enforce records
// what would have been done instead. A protected container is never stopped. reason is
// "code: message". A running container that gpuwarden's gateway made for its owner and that
// declares a checkpoint hook (label gpuwarden.io/checkpoint) has it run first, for at most
// its checkpointTimeout. A container the engine no longer has was not stopped: the error
// says so (docker.ErrNotFound), and nothing claims it was. A stop of a container already
// being stopped waits for that stop and returns its result.
func (x *Actions) Stop(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, mode gpuwardenv1alpha1.PolicyMode, eventReason, reason string) error {
	if labels.IsProtected(c.Labels) {
		return nil
	}
	return x.stop(ctx, c, owner, a, p, mode, eventReason, reason, true)
}

// StopNow is Stop without the checkpoint hook: for a stop that must not wait on what the
// container's owner runs (GPUs used without an allocation, a bind mount moved).
func (x *Actions) StopNow(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, mode gpuwardenv1alpha1.PolicyMode, eventReason, reason string) error {
	if labels.IsProtected(c.Labels) {
		return nil
	}
	return x.stop(ctx, c, owner, a, p, mode, eventReason, reason, false)
}

// StopGracePeriod is the time a stop under p waits for the container to end before it kills
// it: the policy's stopGracePeriod, else DefaultStopGracePeriod.
func StopGracePeriod(p resolve.Policy) time.Duration {
	if l := p.Duration("stopGracePeriod"); l.Applies() {
		return l.Duration
	}
	return DefaultStopGracePeriod
}

// StopTakes is how long a stop of c under p takes at most: its checkpoint hook (when it has
// one), then the grace period.
func StopTakes(c docker.Container, p resolve.Policy) time.Duration {
	d := StopGracePeriod(p)
	if HasCheckpoint(c) {
		d += CheckpointTimeout(c, p)
	}
	return d
}

// StopLoan stops a container that holds borrowed GPUs asked back, as Stop does (checkpoint
// hook, stop signal, grace period) but whatever its policy's mode, and protected or not:
// borrowed GPUs are a loan, and the request they go back to is within its quota.
func (x *Actions) StopLoan(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, eventReason, reason string) error {
	return x.stop(ctx, c, owner, a, p, gpuwardenv1alpha1.ModeEnforce, eventReason, reason, true)
}

func (x *Actions) stop(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, mode gpuwardenv1alpha1.PolicyMode, eventReason, reason string, hook bool) (err error) {
	if mode != gpuwardenv1alpha1.ModeEnforce {
		code, msg, _ := strings.Cut(reason, ": ") // "unallocated_gpu: …"
		x.WouldAct(ctx, c, owner, a, p, mode, "stop it", lifecycle.Due{Action: lifecycle.Stop, Reason: code, Message: msg})
		return nil
	}
	grace := StopGracePeriod(p)
	run, wait := x.beginStop(c.ID)
	if run == nil {
		return wait()
	}
	defer func() { run(err) }()
	x.Store.Note(c.ID, reason)
	var k *audit.Checkpoint
	if hook {
		k = x.checkpoint(ctx, c, owner, p, reason)
	}
	if err := x.Engine.Stop(ctx, c.ID, grace); err != nil {
		return fmt.Errorf("stopping container %s: %w", docker.ShortID(c.ID), err)
	}
	metrics.ContainerActions.WithLabelValues(string(lifecycle.Stop), string(mode)).Inc()
	x.mu.Lock()
	if x.stops == nil {
		x.stops = map[string]StopRecord{}
	}
	x.stops[c.ID] = StopRecord{At: x.Clock.Now(), Reason: reason, Checkpoint: k}
	x.mu.Unlock()
	if k != nil {
		reason += " " + CheckpointSentence(k)
	}
	x.eventOn(ctx, a, "", corev1.EventTypeWarning, eventReason, "Stop", "Stopped container %s of %s at %s: %s",
		message.ContainerName(c), containerstore.OwnerOrUnknown(owner), x.Clock.Now().UTC().Format(time.RFC3339), message.Truncate(reason, message.Max))
	return nil
}

// inflight is a stop under way, and its result once done.
type inflight struct {
	done chan struct{}
	err  error
}

// beginStop starts the stop of a container: done, to call with its result, when no stop
// of it is under way; else wait, which waits for the one under way and returns its result.
func (x *Actions) beginStop(id string) (done func(error), wait func() error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if f := x.stopping[id]; f != nil {
		return nil, func() error { <-f.done; return f.err }
	}
	if x.stopping == nil {
		x.stopping = map[string]*inflight{}
	}
	f := &inflight{done: make(chan struct{})}
	x.stopping[id] = f
	return func(err error) {
		x.mu.Lock()
		delete(x.stopping, id)
		x.mu.Unlock()
		f.err = err
		close(f.done)
	}, nil
}

// Remove removes a container the lifecycle rules say is due for removal, as the policy's
// mode allows.
func (x *Actions) Remove(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, d lifecycle.Due) error {
	mode := p.Mode()
	if mode != gpuwardenv1alpha1.ModeEnforce {
		x.WouldAct(ctx, c, owner, a, p, mode, "remove it", d)
		return nil
	}
	x.Store.Note(c.ID, d.Reason)
	err := x.Engine.Remove(ctx, c.ID, false)
	if errors.Is(err, docker.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	metrics.ContainerActions.WithLabelValues(string(d.Action), string(mode)).Inc()
	x.Audit.Log(audit.Lifecycle(audit.Remove, containerstore.OwnerOrUnknown(owner), containerstore.AuditRef(c), resolve.PolicyName(d.Policy), string(mode), d.Reason+": "+d.Message))
	x.eventOn(ctx, a, d.Policy, corev1.EventTypeNormal, reasons.EventRemoved, "Remove", "Removed container %s of %s: %s",
		message.ContainerName(c), containerstore.OwnerOrUnknown(owner), d.Message)
	return nil
}

// ReleaseDue gives back the GPUs of a container the lifecycle rules say holds them too long,
// as the policy's mode allows.
func (x *Actions) ReleaseDue(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, d lifecycle.Due) error {
	mode := p.Mode()
	if mode == gpuwardenv1alpha1.ModeDryRun {
		x.WouldAct(ctx, c, owner, a, p, mode, "release its GPUs", d)
		return nil
	}
	metrics.ContainerActions.WithLabelValues(string(d.Action), string(mode)).Inc()
	x.Recorder.Eventf(a, nil, corev1.EventTypeNormal, reasons.EventReleaseAsked, "Release", "Releasing the GPUs of container %s: %s", message.ContainerName(c), d.Message)
	return x.Release(ctx, a, d.Reason+": "+d.Message)
}

// Release asks the allocation controller for a's devices back, for reason (a sentence the
// allocation's status shows).
func (x *Actions) Release(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, reason string) error {
	orig := a.DeepCopy()
	if a.Annotations == nil {
		a.Annotations = map[string]string{}
	}
	a.Annotations[gpuwardenv1alpha1.AnnotationRelease] = reason
	return client.IgnoreNotFound(x.Client.Patch(ctx, a, client.MergeFrom(orig)))
}

// WouldAct records, once, what a DryRun or NotifyOnly policy kept gpuwarden from doing.
func (x *Actions) WouldAct(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, mode gpuwardenv1alpha1.PolicyMode, what string, d lifecycle.Due) {
	if !x.Once(c.ID, WouldKey(d.Action, d.Reason)) {
		return
	}
	metrics.ContainerActions.WithLabelValues(string(d.Action), string(mode)).Inc()
	from := d.Policy
	if from == "" {
		from = p.Values["mode"].From
	}
	x.Audit.Log(audit.Lifecycle(wouldRecord[d.Action], containerstore.OwnerOrUnknown(owner), containerstore.AuditRef(c), resolve.PolicyName(from), string(mode), d.Reason+": would "+what+": "+d.Message))
	x.eventOn(ctx, a, from, corev1.EventTypeNormal, reasons.EventWouldAct, "DryRun", "Would %s container %s of %s (mode %s): %s",
		what, message.ContainerName(c), containerstore.OwnerOrUnknown(owner), mode, d.Message)
}

// WouldKey is what WouldAct remembers having said of one held-back action and reason.
func WouldKey(a lifecycle.Action, reason string) string { return "would/" + string(a) + "/" + reason }

// wouldRecord is the audit record of an action a DryRun or NotifyOnly policy held back.
var wouldRecord = map[lifecycle.Action]audit.LifecycleAction{
	lifecycle.Remove: audit.WouldRemove, lifecycle.ReleaseGPUs: audit.WouldRelease, lifecycle.Stop: audit.WouldStop,
}

// Unallocated is a running container found using GPUs that no allocation gives it.
type Unallocated struct {
	Container docker.Container
	// Owner is the container's owner as records name it.
	Owner string
	// On is the allocation the Event goes on.
	On *gpuwardenv1alpha1.GPUAllocation
	// Devices are the devices it uses without an allocation.
	Devices []string
	// Reason is the metric's reason label: an allocation rejection reason or one of
	// reasons.OwnerUnknown, OverAllocation, DeviceHeld.
	Reason string
	// Note is the Event's text.
	Note string
	// Stop, when set, is the stop's reason ("code: message"), under Policy's mode.
	Stop   string
	Policy resolve.Policy
}

// ReportUnallocated reports GPU use without an allocation: the metric, an Event, one
// detection.unmanaged_container record per start of the container (however many ways it
// is found), and the stop when one is asked for.
func (x *Actions) ReportUnallocated(ctx context.Context, u Unallocated) error {
	c := u.Container
	metrics.UnallocatedGPUContainers.WithLabelValues(u.Reason).Inc()
	x.Recorder.Eventf(u.On, nil, corev1.EventTypeWarning, reasons.EventUnallocatedGPU, "Detect", "%s", u.Note)
	if x.Once(c.ID, DetectedKey(c)) {
		x.Audit.Log(audit.Detection(audit.UnmanagedContainer, u.Owner, audit.Unmanaged{PID: c.PID, GPU: strings.Join(u.Devices, ","), Container: containerstore.AuditRef(c)}))
	}
	if u.Stop == "" || c.State != docker.StateRunning {
		return nil
	}
	return IgnoreGone(x.StopNow(ctx, c, u.Owner, u.On, u.Policy, u.Policy.Mode(), reasons.EventStopped, u.Stop))
}

// DetectedKey is what is remembered of the one detection record of a container's start.
func DetectedKey(c docker.Container) string { return "detected/" + c.StartStamp() }

// Tell delivers a notice to the container's owner.
func (x *Actions) Tell(ctx context.Context, n notify.Notice) {
	if x.Notices != nil {
		x.Notices.Tell(ctx, n)
	}
}

// eventOn records an Event on the allocation when there is one, else on the policy that
// called for the action (named "ContainerPolicy <name>").
func (x *Actions) eventOn(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, policy, eventType, reason, action, format string, args ...any) {
	var obj runtime.Object
	if a != nil {
		obj = a
	} else if name := resolve.PolicyName(policy); name != "" {
		p := &gpuwardenv1alpha1.ContainerPolicy{}
		if err := x.Client.Get(ctx, client.ObjectKey{Name: name}, p); err == nil {
			obj = p
		}
	}
	if obj != nil {
		x.Recorder.Eventf(obj, nil, eventType, reason, action, format, args...)
	}
}

// IgnoreGone is err, or nil when it only says the container is gone (its removal is
// handled as such).
func IgnoreGone(err error) error {
	if errors.Is(err, docker.ErrNotFound) {
		return nil
	}
	return err
}

package allocation

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
)

// statusPlan is what a pass writes: the statuses that change, the released allocations
// past their retention, and when the next retention deadline falls.
type statusPlan struct {
	updates []statusUpdate
	expired []*gpuwardenv1alpha1.GPUAllocation
	next    time.Duration
}

// statusUpdate is one allocation to write: its status (want; nil when only its labels are
// out of step) and then its user label, when it differs.
type statusUpdate struct {
	a    *gpuwardenv1alpha1.GPUAllocation
	want *gpuwardenv1alpha1.GPUAllocationStatus
}

// writeStatuses derives each allocation's status from the ledger and this pass's decisions,
// records every transition as an Event (and a rejection as an audit record), and deletes
// released allocations past their retention. One write that fails (a conflict, a message
// the API refuses) does not stop the others; the pass reports the failures together and is
// retried. It returns when the next retention deadline falls.
func (p *pass) writeStatuses(ctx context.Context, allocs []gpuwardenv1alpha1.GPUAllocation) (time.Duration, error) {
	plan := p.planStatuses(allocs)
	return plan.next, p.applyStatuses(ctx, plan)
}

// planStatuses decides, without writing anything, what writeStatuses writes.
func (p *pass) planStatuses(allocs []gpuwardenv1alpha1.GPUAllocation) statusPlan {
	var plan statusPlan
	for i := range allocs {
		a := &allocs[i]
		if a.DeletionTimestamp != nil {
			continue
		}
		want, ok := p.desiredStatus(a)
		if !ok {
			continue
		}
		want.DevicesSummary = allocation.DevicesSummary(want.Devices) // what kubectl get shows of them
		if want.Phase == gpuwardenv1alpha1.PhaseReleased && want.ReleasedTime != nil {
			left := want.ReleasedTime.Add(p.r.Retention).Sub(p.now)
			if left <= 0 {
				plan.expired = append(plan.expired, a)
				continue
			}
			if plan.next == 0 || left < plan.next {
				plan.next = left
			}
		}
		if equality.Semantic.DeepEqual(want, &a.Status) || p.r.alreadyWritten(a, want) {
			if !allocation.LabelsInStep(a) {
				plan.updates = append(plan.updates, statusUpdate{a: a, want: nil})
			}
			continue
		}
		plan.updates = append(plan.updates, statusUpdate{a: a, want: want})
	}
	return plan
}

// applyStatuses writes a plan. Statuses are independent objects: they are written side by
// side, so that a pass that binds fifty allocations does not wait for fifty round trips in
// a row.
func (p *pass) applyStatuses(ctx context.Context, plan statusPlan) error {
	var (
		mu       sync.Mutex
		errs     []error
		conflict atomic.Bool
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	var g errgroup.Group
	g.SetLimit(statusWriters)
	for _, a := range plan.expired {
		g.Go(func() error {
			if err := p.r.Client.Delete(ctx, a); client.IgnoreNotFound(err) != nil {
				fail(fmt.Errorf("deleting released allocation %s: %w", a.Name, err))
				return nil
			}
			p.r.written.Delete(a.Name)
			return nil
		})
	}
	for _, u := range plan.updates {
		g.Go(func() error {
			if u.want != nil {
				if err := p.updateStatus(ctx, u.a, u.want); err != nil {
					if apierrors.IsConflict(err) {
						// Someone else wrote it since (the container controller attaching a
						// container): a quick retry on the fresh copy, not an error.
						conflict.Store(true)
					} else {
						fail(err)
					}
					return nil
				}
			}
			if err := p.updateLabels(ctx, u.a); err != nil {
				fail(err)
			}
			return nil
		})
	}
	_ = g.Wait()
	p.retry = p.retry || conflict.Load()
	return errors.Join(errs...)
}

// updateStatus writes one allocation's status and records the transition.
func (p *pass) updateStatus(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, want *gpuwardenv1alpha1.GPUAllocationStatus) error {
	before := a.Status.DeepCopy()
	a.Status = *want
	// Known before the write returns: its watch event may come first.
	w := &writtenStatus{from: a.ResourceVersion, status: want.DeepCopy()}
	p.r.written.Store(a.Name, w)
	if err := p.r.Client.Status().Update(ctx, a); err != nil {
		p.r.written.CompareAndDelete(a.Name, w)
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return client.IgnoreNotFound(err)
		}
		return fmt.Errorf("updating status of allocation %s: %w", a.Name, err)
	}
	p.record(a, before)
	return nil
}

// updateLabels puts a's user label in step with its spec, so that `kubectl get ga -l`
// selects by it (its creator usually set it: then nothing is written). A patch of the
// labels alone: it neither conflicts with nor undoes another writer's change, and a label
// someone else set is corrected.
func (p *pass) updateLabels(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) error {
	orig := a.DeepCopy()
	if !allocation.SyncLabels(a) {
		return nil
	}
	if err := p.r.Client.Patch(ctx, a, client.MergeFrom(orig)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("updating the labels of allocation %s: %w", a.Name, err)
	}
	return nil
}

// auditLedgerChange records the bindings and releases this pass wrote to the ledger: each
// decision once, from the ledger change itself.
func (p *pass) auditLedgerChange(allocs []gpuwardenv1alpha1.GPUAllocation) {
	byName := map[string]*gpuwardenv1alpha1.GPUAllocation{}
	for i := range allocs {
		byName[allocs[i].Name] = &allocs[i]
	}
	refOf := func(name string, b allocation.Binding) audit.Allocation {
		ref := allocationRef(name, b)
		if a := byName[name]; a != nil {
			ref.Container = containerOf(a)
		}
		return ref
	}
	for _, name := range slices.Sorted(maps.Keys(p.released)) {
		rel := p.released[name]
		e := audit.GPURelease(rel.binding.User, refOf(name, rel.binding), rel.reason)
		e.ID, e.Time = audit.DecisionID("release", name, rel.binding.BoundAt), p.now
		p.r.Audit.Log(e)
	}
	for _, name := range slices.Sorted(maps.Keys(p.bound)) {
		b := p.bound[name]
		ref := refOf(name, b)
		if a := byName[name]; a != nil && !a.CreationTimestamp.IsZero() {
			ref.Wait = p.r.Clock.Now().Sub(a.CreationTimestamp.Time)
		}
		e := audit.GPUAllocate(b.User, ref)
		e.ID, e.Time = audit.DecisionID("allocate", name, b.BoundAt), b.BoundAt
		p.r.Audit.Log(e)
	}
}

// auditAgain records once more, under the same event IDs and times, every decision of the
// pass's nodes that the ledger and the retained statuses still show: the bindings and the
// releases. A process killed before its audit writer flushed lost those records; readers
// keep each decision once. It runs on a process's first pass (and again after the
// process, as the cluster's allocator, begins to lead).
func (p *pass) auditAgain(allocs []gpuwardenv1alpha1.GPUAllocation) {
	recovered := func(e audit.Event) audit.Event {
		e.Details["recovered"] = true
		return e
	}
	for _, name := range slices.Sorted(maps.Keys(p.ledger.Bindings)) {
		b := p.ledger.Bindings[name]
		if !p.ours(b.Node) {
			continue
		}
		e := recovered(audit.GPUAllocate(b.User, allocationRef(name, b)))
		e.ID, e.Time = audit.DecisionID("allocate", name, b.BoundAt), b.BoundAt
		p.r.Audit.Log(e)
	}
	for i := range allocs {
		a := &allocs[i]
		if !p.ours(a.Spec.NodeName) || a.Status.Phase != gpuwardenv1alpha1.PhaseReleased || a.Status.ReleasedTime == nil {
			continue
		}
		bound := a.CreationTimestamp.Time // released while it waited
		if a.Status.BoundTime != nil {
			bound = a.Status.BoundTime.Time
		}
		e := recovered(audit.GPURelease(a.Spec.User, audit.AllocationOf(a, containerOf(a)), releaseReason(a)))
		e.ID, e.Time = audit.DecisionID("release", a.Name, bound), a.Status.ReleasedTime.Time
		p.r.Audit.Log(e)
	}
}

// statusWriters bounds the status writes of one pass in flight at once.
const statusWriters = 64

// desiredStatus is what a's status should be; false when this node has nothing to say.
func (p *pass) desiredStatus(a *gpuwardenv1alpha1.GPUAllocation) (*gpuwardenv1alpha1.GPUAllocationStatus, bool) {
	want := a.Status.DeepCopy()
	want.ObservedGeneration = a.Generation
	if want.ContainerID == "" {
		// kubectl get shows the container the spec names until one is attached.
		want.ContainerName = a.Spec.ContainerName
	}
	if b, bound := p.ledger.Bindings[a.Name]; bound {
		if !p.ours(b.Node) {
			return nil, false
		}
		at := metav1.NewTime(b.BoundAt).Rfc3339Copy() // as stored: a finer time would differ on every pass
		want.Phase, want.Reason, want.Message, want.BoundTime, want.ReleasedTime = gpuwardenv1alpha1.PhaseBound, "", "", &at, nil
		want.Queue = nil
		want.Devices, want.GPUEquivalents = nil, quantity(0)
		total := 0.0
		for _, s := range b.Slots {
			want.Devices = append(want.Devices, gpuwardenv1alpha1.BoundDevice{Index: int32(s.GPUIndex), UUID: s.UUID, MIGProfile: s.Profile, Weight: *quantity(s.Weight)})
			total += s.Weight
		}
		want.GPUEquivalents, want.GPUEquivalentsRounded = quantity(total), allocation.FormatEquivalents(total)
		want.Borrowed = b.Borrowed
		want.Displacement = p.displaced[a.Name]
		return want, true
	}
	if a.Spec.NodeName == "" || !p.ours(a.Spec.NodeName) {
		if d, ok := p.outcome[a.Name]; ok && a.Spec.NodeName == "" {
			return decided(want, d), true
		}
		return nil, false
	}
	// A waiting allocation asked to release (its container is gone) stops waiting.
	asked := a.Annotations[gpuwardenv1alpha1.AnnotationRelease] != "" && a.Status.Phase != gpuwardenv1alpha1.PhaseReleased && a.Status.Phase != gpuwardenv1alpha1.PhaseRejected
	if rel, released := p.released[a.Name]; released || asked {
		reason := rel.reason
		if reason == "" {
			reason = releaseReason(a)
		}
		at := metav1.NewTime(p.now).Rfc3339Copy()
		want.Phase, want.Reason, want.Message, want.ReleasedTime = gpuwardenv1alpha1.PhaseReleased, "Released", "Devices given back: "+reason, &at
		want.Idle, want.Runtime, want.Queue, want.Displacement = nil, nil, nil, nil // nothing runs on them any more
		return want, true
	}
	if d, ok := p.outcome[a.Name]; ok {
		want = decided(want, d)
		want.Queue = p.places[a.Name]
		return want, true
	}
	if a.Status.Phase == "" || a.Status.Phase == gpuwardenv1alpha1.PhaseBound {
		// Not in the ledger, so not bound, whatever was written here.
		want.Phase, want.Reason, want.Message = gpuwardenv1alpha1.PhasePending, "", ""
		unbound(want)
		return want, true
	}
	return want, true
}

// unbound clears what only a bound allocation shows.
func unbound(s *gpuwardenv1alpha1.GPUAllocationStatus) {
	s.Devices, s.DevicesSummary, s.GPUEquivalents, s.GPUEquivalentsRounded, s.BoundTime, s.ReleasedTime = nil, "", nil, "", nil, nil
	s.Displacement = nil
	s.Idle, s.Runtime, s.Queue = nil, nil, nil
	s.Borrowed = false
}

// decided is the status of a request that was not placed: Rejected for a final reason,
// else Pending with the reason it waits.
func decided(want *gpuwardenv1alpha1.GPUAllocationStatus, d allocation.Decision) *gpuwardenv1alpha1.GPUAllocationStatus {
	want.Phase, want.Reason, want.Message = gpuwardenv1alpha1.PhasePending, d.Reason, message.Truncate(d.Message, message.Max)
	unbound(want)
	if d.Final() {
		want.Phase = gpuwardenv1alpha1.PhaseRejected
	}
	return want
}

// record emits the Event and the audit record of a status transition.
func (p *pass) record(a *gpuwardenv1alpha1.GPUAllocation, before *gpuwardenv1alpha1.GPUAllocationStatus) {
	s := a.Status
	if d := s.Displacement; d != nil && (before.Displacement == nil || before.Displacement.Reservation != d.Reservation || !before.Displacement.At.Equal(&d.At)) {
		p.r.Recorder.Eventf(a, nil, corev1.EventTypeWarning, reasons.EventDisplaced, "Displace", "%s: stopped then (its checkpoint hook first) and released", d.Message)
	}
	if s.Phase == before.Phase && s.Reason == before.Reason {
		return
	}
	ref := audit.AllocationOf(a, containerOf(a))
	switch s.Phase {
	case gpuwardenv1alpha1.PhaseBound:
		var idx []string
		for _, d := range s.Devices {
			idx = append(idx, fmt.Sprintf("%d%s", d.Index, profileSuffix(d.MIGProfile)))
		}
		p.r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, reasons.EventBound, "Bind", "Bound GPU %s (%s gpu-equivalents) for %s",
			strings.Join(idx, ", "), ref.GPUEquivalents, a.Spec.User)
	case gpuwardenv1alpha1.PhaseRejected:
		p.r.Recorder.Eventf(a, nil, corev1.EventTypeWarning, s.Reason, "Reject", "%s", s.Message)
		p.r.Audit.Log(audit.GPUReject(a.Spec.User, ref, s.Reason, s.Message))
		metrics.AllocationRejections.WithLabelValues(s.Reason).Inc()
	case gpuwardenv1alpha1.PhasePending:
		if s.Reason != "" {
			p.r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, reasons.EventWaiting, "Wait", "%s: %s", s.Reason, s.Message)
		}
	case gpuwardenv1alpha1.PhaseReleased:
		p.r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, reasons.EventReleased, "Release", "%s", s.Message)
		if _, fromLedger := p.released[a.Name]; !fromLedger {
			// A request released while it waited: no ledger change records it. Or one whose
			// ledger release was recorded by an earlier pass whose status write did not
			// land: the same decision, so the same ID (bound time as stored, as auditAgain).
			e := audit.GPURelease(a.Spec.User, ref, releaseReason(a))
			bound := a.CreationTimestamp.Time
			if s.BoundTime != nil {
				bound = s.BoundTime.Time
			}
			e.ID = audit.DecisionID("release", a.Name, bound)
			if s.ReleasedTime != nil {
				e.Time = s.ReleasedTime.Time
			}
			p.r.Audit.Log(e)
		}
	}
}

func profileSuffix(profile string) string {
	if profile == "" {
		return ""
	}
	return " (" + profile + ")"
}

// containerOf is the container of an allocation, for the audit log: the one its spec names,
// else the one attached to it (a Gateway allocation is made before its container).
func containerOf(a *gpuwardenv1alpha1.GPUAllocation) audit.Container {
	c := audit.Container{Name: a.Spec.ContainerName, ID: a.Spec.ContainerID, Type: string(a.Spec.ContainerType)}
	if c.ID == "" {
		c.ID = a.Status.ContainerID
	}
	if c.Name == "" && (c.ID == "" || c.ID == a.Status.ContainerID) {
		c.Name = a.Status.ContainerName
	}
	return c
}

func allocationRef(name string, b allocation.Binding) audit.Allocation {
	ref := audit.Allocation{Name: name}
	total := 0.0
	for _, s := range b.Slots {
		ref.Devices = append(ref.Devices, s.UUID)
		total += s.Weight
	}
	ref.GPUEquivalents = quantity(total).AsDec().String()
	return ref
}

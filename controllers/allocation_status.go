package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
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
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// Event reasons of GPUAllocations besides the rejection reasons.
const (
	EventBound    = "Bound"
	EventWaiting  = "Waiting"
	EventReleased = "Released"
)

// writeStatuses derives each allocation's status from the ledger and this pass's decisions,
// records every transition as an Event and an audit record, and deletes released
// allocations past their retention. It returns when the next retention deadline falls.
func (p *pass) writeStatuses(ctx context.Context, allocs []gpuwardenv1alpha1.GPUAllocation) (time.Duration, error) {
	var (
		mu   sync.Mutex
		next time.Duration
	)
	present := map[string]bool{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(statusWriters)
	for i := range allocs {
		a := &allocs[i]
		present[a.Name] = true
		if a.DeletionTimestamp != nil {
			continue
		}
		want, ok := p.desiredStatus(a)
		if !ok {
			continue
		}
		if want.Phase == gpuwardenv1alpha1.PhaseReleased && want.ReleasedTime != nil {
			left := want.ReleasedTime.Add(p.r.Retention).Sub(p.now)
			if left <= 0 {
				g.Go(func() error {
					if err := p.r.Client.Delete(gctx, a); client.IgnoreNotFound(err) != nil {
						return fmt.Errorf("deleting released allocation %s: %w", a.Name, err)
					}
					return nil
				})
				continue
			}
			mu.Lock()
			if next == 0 || left < next {
				next = left
			}
			mu.Unlock()
		}
		if equality.Semantic.DeepEqual(want, &a.Status) {
			continue
		}
		// Statuses are independent objects: write them side by side, so that a pass that
		// binds fifty allocations does not wait for fifty round trips in a row.
		g.Go(func() error {
			before := a.Status.DeepCopy()
			a.Status = *want
			if err := p.r.Client.Status().Update(gctx, a); err != nil {
				if apierrors.IsNotFound(err) {
					return nil
				}
				return fmt.Errorf("updating status of allocation %s: %w", a.Name, err)
			}
			p.record(a, before)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	// Allocations deleted while bound: nothing left to show, but the audit log keeps them.
	for name, rel := range p.released {
		if !present[name] {
			p.r.Audit.Log(audit.GPURelease(rel.binding.User, allocationRef(name, rel.binding), rel.reason))
		}
	}
	return next, nil
}

// statusWriters bounds the status writes of one pass in flight at once.
const statusWriters = 16

// desiredStatus is what a's status should be; false when this node has nothing to say.
func (p *pass) desiredStatus(a *gpuwardenv1alpha1.GPUAllocation) (*gpuwardenv1alpha1.GPUAllocationStatus, bool) {
	want := a.Status.DeepCopy()
	want.ObservedGeneration = a.Generation
	if b, bound := p.ledger.Bindings[a.Name]; bound {
		if b.Node != p.r.NodeName {
			return nil, false
		}
		at := metav1.NewTime(b.BoundAt)
		want.Phase, want.Reason, want.Message, want.BoundTime, want.ReleasedTime = gpuwardenv1alpha1.PhaseBound, "", "", &at, nil
		want.Devices, want.GPUEquivalents = nil, quantity(0)
		total := 0.0
		for _, s := range b.Slots {
			want.Devices = append(want.Devices, gpuwardenv1alpha1.BoundDevice{Index: int32(s.GPUIndex), UUID: s.UUID, MIGProfile: s.Profile, Weight: *quantity(s.Weight)})
			total += s.Weight
		}
		want.GPUEquivalents = quantity(total)
		return want, true
	}
	if a.Spec.NodeName != p.r.NodeName {
		if d, ok := p.outcome[a.Name]; ok && a.Spec.NodeName == "" {
			return decided(want, d), true
		}
		return nil, false
	}
	// A waiting allocation asked to release (its container is gone) stops waiting.
	asked := a.Annotations[AnnotationRelease] != "" && a.Status.Phase != gpuwardenv1alpha1.PhaseReleased && a.Status.Phase != gpuwardenv1alpha1.PhaseRejected
	if rel, released := p.released[a.Name]; released || asked {
		reason := rel.reason
		if reason == "" {
			reason = a.Annotations[AnnotationRelease]
		}
		at := metav1.NewTime(p.now)
		want.Phase, want.Reason, want.Message, want.ReleasedTime = gpuwardenv1alpha1.PhaseReleased, "Released", "Devices given back: "+reason, &at
		return want, true
	}
	if d, ok := p.outcome[a.Name]; ok {
		return decided(want, d), true
	}
	if a.Status.Phase == "" {
		want.Phase = gpuwardenv1alpha1.PhasePending
		return want, true
	}
	return want, true
}

// decided is the status of a request that was not placed: Rejected for a final reason,
// else Pending with the reason it waits.
func decided(want *gpuwardenv1alpha1.GPUAllocationStatus, d allocation.Decision) *gpuwardenv1alpha1.GPUAllocationStatus {
	want.Phase, want.Reason, want.Message = gpuwardenv1alpha1.PhasePending, d.Reason, d.Message
	if d.Final() {
		want.Phase = gpuwardenv1alpha1.PhaseRejected
	}
	return want
}

// record emits the Event and the audit record of a status transition.
func (p *pass) record(a *gpuwardenv1alpha1.GPUAllocation, before *gpuwardenv1alpha1.GPUAllocationStatus) {
	s := a.Status
	if s.Phase == before.Phase && s.Reason == before.Reason {
		return
	}
	ref := audit.Allocation{Name: a.Name, Container: audit.Container{Name: a.Spec.ContainerName, ID: a.Spec.ContainerID, Type: string(a.Spec.ContainerType)}}
	for _, d := range s.Devices {
		ref.Devices = append(ref.Devices, d.UUID)
	}
	if s.GPUEquivalents != nil {
		ref.GPUEquivalents = s.GPUEquivalents.AsDec().String()
	}
	switch s.Phase {
	case gpuwardenv1alpha1.PhaseBound:
		var idx []string
		for _, d := range s.Devices {
			idx = append(idx, fmt.Sprintf("%d%s", d.Index, profileSuffix(d.MIGProfile)))
		}
		p.r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, EventBound, "Bind", "Bound GPU %s (%s gpu-equivalents) for %s",
			strings.Join(idx, ", "), ref.GPUEquivalents, a.Spec.User)
		p.r.Audit.Log(audit.GPUAllocate(a.Spec.User, ref))
	case gpuwardenv1alpha1.PhaseRejected:
		p.r.Recorder.Eventf(a, nil, corev1.EventTypeWarning, s.Reason, "Reject", "%s", s.Message)
		p.r.Audit.Log(audit.GPUReject(a.Spec.User, ref, s.Reason, s.Message))
	case gpuwardenv1alpha1.PhasePending:
		if s.Reason != "" {
			p.r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, EventWaiting, "Wait", "%s: %s", s.Reason, s.Message)
		}
	case gpuwardenv1alpha1.PhaseReleased:
		if rel, ok := p.released[a.Name]; ok {
			ref = allocationRef(a.Name, rel.binding)
			ref.Container = audit.Container{Name: a.Spec.ContainerName, ID: a.Spec.ContainerID, Type: string(a.Spec.ContainerType)}
		}
		p.r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, EventReleased, "Release", "%s", s.Message)
		p.r.Audit.Log(audit.GPURelease(a.Spec.User, ref, strings.TrimPrefix(s.Message, "Devices given back: ")))
	}
}

func profileSuffix(profile string) string {
	if profile == "" {
		return ""
	}
	return " (" + profile + ")"
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

// writeHolders names on each of this node's GPUs (and MIG instances) the allocation holding it.
func (p *pass) writeHolders(ctx context.Context, gpus []gpuwardenv1alpha1.GPU) error {
	holder := map[string]string{}
	for name, b := range p.ledger.Bindings {
		for _, s := range b.Slots {
			holder[s.UUID] = name
		}
	}
	eg, gctx := errgroup.WithContext(ctx)
	eg.SetLimit(statusWriters)
	for i := range gpus {
		g := &gpus[i]
		want := g.Status.DeepCopy()
		want.Holder = holder[g.Status.UUID]
		var names []string
		for j := range want.MIGInstances {
			in := &want.MIGInstances[j]
			in.Holder = holder[in.UUID]
			if in.Holder != "" {
				names = append(names, in.Holder)
			}
		}
		if len(want.MIGInstances) > 0 {
			sort.Strings(names)
			want.Holder = strings.Join(names, ",")
		}
		if equality.Semantic.DeepEqual(want, &g.Status) {
			continue
		}
		// A patch: the inventory controller writes the same status, and neither should
		// have to retry for the other.
		eg.Go(func() error {
			orig := g.DeepCopy()
			g.Status = *want
			if err := p.r.Client.Status().Patch(gctx, g, client.MergeFrom(orig)); err != nil {
				return fmt.Errorf("updating the holder of GPU %s: %w", g.Name, err)
			}
			return nil
		})
	}
	return eg.Wait()
}

// writeUsage shows on each quota what each matched user holds now.
func (p *pass) writeUsage(ctx context.Context, quotas []gpuwardenv1alpha1.GPUQuota) error {
	type use struct {
		eq         float64
		containers int32
	}
	byUser := map[string]*use{}
	for _, b := range p.ledger.Bindings {
		u := byUser[b.User]
		if u == nil {
			u = &use{}
			byUser[b.User] = u
		}
		u.containers++
		for _, s := range b.Slots {
			u.eq += s.Weight
		}
	}
	for i := range quotas {
		q := &quotas[i]
		var usage []gpuwardenv1alpha1.UserUsage
		for user, u := range byUser {
			if resolve.QuotaMatches(q, user, p.groups[user]) {
				usage = append(usage, gpuwardenv1alpha1.UserUsage{User: user, GPUEquivalents: *quantity(u.eq), Containers: u.containers})
			}
		}
		sort.Slice(usage, func(i, j int) bool { return usage[i].User < usage[j].User })
		if equality.Semantic.DeepEqual(usage, q.Status.Usage) || len(usage) == 0 && len(q.Status.Usage) == 0 {
			continue
		}
		orig := q.DeepCopy()
		q.Status.Usage = usage
		if err := p.r.Client.Status().Patch(ctx, q, client.MergeFrom(orig)); err != nil {
			return fmt.Errorf("updating the usage of GPUQuota %s: %w", q.Name, err)
		}
	}
	return nil
}

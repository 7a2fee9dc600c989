package testutil

import (
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// The builders below make the API objects tests create, one field a call, in the manner of
// kueue's test wrappers:
//
//	a := testutil.MakeAllocation("alice-train-1").User("alice").Node("gpu01").GPUs(1).Obj()
//
// Each returns the wrapper so that calls chain; Obj returns the object built.

// with is m, or a new map when m is nil, with k set to v.
func with(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

// Duration is d as the API's duration, for the fields of a policy.
func Duration(d time.Duration) *gpuwardenv1alpha1.Duration {
	v := gpuwardenv1alpha1.Duration(d.String())
	return &v
}

// AllocationWrapper builds a GPUAllocation.
type AllocationWrapper struct {
	gpuwardenv1alpha1.GPUAllocation
}

// MakeAllocation starts a GPUAllocation named name, with an empty spec and status.
func MakeAllocation(name string) *AllocationWrapper {
	return &AllocationWrapper{gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: name}}}
}

// Obj returns the allocation built (a copy: the wrapper may go on building).
func (w *AllocationWrapper) Obj() *gpuwardenv1alpha1.GPUAllocation { return w.DeepCopy() }

// Created sets the creation time.
func (w *AllocationWrapper) Created(t time.Time) *AllocationWrapper {
	w.CreationTimestamp = metav1.NewTime(t)
	return w
}

// Generation sets metadata.generation.
func (w *AllocationWrapper) Generation(g int64) *AllocationWrapper {
	w.ObjectMeta.Generation = g
	return w
}

// Label sets one label.
func (w *AllocationWrapper) Label(k, v string) *AllocationWrapper {
	w.Labels = with(w.Labels, k, v)
	return w
}

// Annotation sets one annotation.
func (w *AllocationWrapper) Annotation(k, v string) *AllocationWrapper {
	w.Annotations = with(w.Annotations, k, v)
	return w
}

// User sets spec.user.
func (w *AllocationWrapper) User(u string) *AllocationWrapper { w.Spec.User = u; return w }

// Node sets spec.nodeName.
func (w *AllocationWrapper) Node(n string) *AllocationWrapper { w.Spec.NodeName = n; return w }

// GPUs asks for n whole GPUs (spec.request.gpus).
func (w *AllocationWrapper) GPUs(n int32) *AllocationWrapper {
	w.Spec.Request.GPUs = ptr.To(n)
	return w
}

// Devices asks for these devices, by UUID or index (spec.request.devices).
func (w *AllocationWrapper) Devices(devices ...string) *AllocationWrapper {
	w.Spec.Request.Devices = devices
	return w
}

// MIGProfile asks for a MIG slice of this profile (spec.request.migProfile).
func (w *AllocationWrapper) MIGProfile(p string) *AllocationWrapper {
	w.Spec.Request.MIGProfile = p
	return w
}

// Request sets the whole of spec.request.
func (w *AllocationWrapper) Request(r gpuwardenv1alpha1.AllocationRequest) *AllocationWrapper {
	w.Spec.Request = r
	return w
}

// Source sets spec.source.
func (w *AllocationWrapper) Source(s gpuwardenv1alpha1.AllocationSource) *AllocationWrapper {
	w.Spec.Source = s
	return w
}

// Type sets spec.containerType.
func (w *AllocationWrapper) Type(t gpuwardenv1alpha1.ContainerType) *AllocationWrapper {
	w.Spec.ContainerType = t
	return w
}

// Container names the container the allocation is for (spec.containerName).
func (w *AllocationWrapper) Container(name string) *AllocationWrapper {
	w.Spec.ContainerName = name
	return w
}

// ContainerID names the container the allocation is for by ID (spec.containerID).
func (w *AllocationWrapper) ContainerID(id string) *AllocationWrapper {
	w.Spec.ContainerID = id
	return w
}

// Phase sets status.phase.
func (w *AllocationWrapper) Phase(p gpuwardenv1alpha1.AllocationPhase) *AllocationWrapper {
	w.Status.Phase = p
	return w
}

// Reason sets status.reason.
func (w *AllocationWrapper) Reason(r string) *AllocationWrapper { w.Status.Reason = r; return w }

// Message sets status.message.
func (w *AllocationWrapper) Message(m string) *AllocationWrapper { w.Status.Message = m; return w }

// Bound makes the allocation Bound to whole GPUs with these UUIDs, at indexes 0, 1, … in
// order, each of weight 1.
func (w *AllocationWrapper) Bound(uuids ...string) *AllocationWrapper {
	w.Status.Phase = gpuwardenv1alpha1.PhaseBound
	for i, u := range uuids {
		w.Status.Devices = append(w.Status.Devices, gpuwardenv1alpha1.BoundDevice{Index: int32(i), UUID: u, Weight: resource.MustParse("1")})
	}
	return w
}

// BoundDevices adds these devices to status.devices (the phase is left as it is).
func (w *AllocationWrapper) BoundDevices(devices ...gpuwardenv1alpha1.BoundDevice) *AllocationWrapper {
	w.Status.Devices = append(w.Status.Devices, devices...)
	return w
}

// GPUEquivalents sets status.gpuEquivalents, e.g. "1" or "0.142857".
func (w *AllocationWrapper) GPUEquivalents(q string) *AllocationWrapper {
	w.Status.GPUEquivalents = ptr.To(resource.MustParse(q))
	return w
}

// Attached sets status.containerID: the container the allocation is attached to.
func (w *AllocationWrapper) Attached(id string) *AllocationWrapper {
	w.Status.ContainerID = id
	return w
}

// BoundAt sets status.boundTime.
func (w *AllocationWrapper) BoundAt(t time.Time) *AllocationWrapper {
	w.Status.BoundTime = ptr.To(metav1.NewTime(t))
	return w
}

// ReleasedAt sets status.releasedTime.
func (w *AllocationWrapper) ReleasedAt(t time.Time) *AllocationWrapper {
	w.Status.ReleasedTime = ptr.To(metav1.NewTime(t))
	return w
}

// WithStatus sets the whole status; calls after it change that status.
func (w *AllocationWrapper) WithStatus(s gpuwardenv1alpha1.GPUAllocationStatus) *AllocationWrapper {
	w.Status = s
	return w
}

// QuotaWrapper builds a GPUQuota.
type QuotaWrapper struct{ gpuwardenv1alpha1.GPUQuota }

// MakeQuota starts a GPUQuota named name, with no subjects and no limits.
func MakeQuota(name string) *QuotaWrapper {
	return &QuotaWrapper{gpuwardenv1alpha1.GPUQuota{ObjectMeta: metav1.ObjectMeta{Name: name}}}
}

// Obj returns the quota built (a copy).
func (w *QuotaWrapper) Obj() *gpuwardenv1alpha1.GPUQuota { return w.DeepCopy() }

// Generation sets metadata.generation.
func (w *QuotaWrapper) Generation(g int64) *QuotaWrapper {
	w.ObjectMeta.Generation = g
	return w
}

// Users adds a subject of kind User for each name.
func (w *QuotaWrapper) Users(names ...string) *QuotaWrapper {
	return w.subjects(gpuwardenv1alpha1.SubjectUser, names)
}

// Groups adds a subject of kind Group for each name.
func (w *QuotaWrapper) Groups(names ...string) *QuotaWrapper {
	return w.subjects(gpuwardenv1alpha1.SubjectGroup, names)
}

// Everyone adds the subject of kind Everyone.
func (w *QuotaWrapper) Everyone() *QuotaWrapper {
	w.Spec.Subjects = append(w.Spec.Subjects, gpuwardenv1alpha1.Subject{Kind: gpuwardenv1alpha1.SubjectEveryone})
	return w
}

func (w *QuotaWrapper) subjects(kind gpuwardenv1alpha1.SubjectKind, names []string) *QuotaWrapper {
	for _, n := range names {
		w.Spec.Subjects = append(w.Spec.Subjects, gpuwardenv1alpha1.Subject{Kind: kind, Name: n})
	}
	return w
}

// Precedence sets spec.precedence.
func (w *QuotaWrapper) Precedence(p int32) *QuotaWrapper { w.Spec.Precedence = p; return w }

// Priority sets spec.priority.
func (w *QuotaWrapper) Priority(p int32) *QuotaWrapper { w.Spec.Priority = ptr.To(p); return w }

// Scope sets spec.scope.
func (w *QuotaWrapper) Scope(s gpuwardenv1alpha1.QuotaScope) *QuotaWrapper {
	w.Spec.Scope = s
	return w
}

// GPUEquivalents sets spec.limits.gpuEquivalents, e.g. "2" or "1n".
func (w *QuotaWrapper) GPUEquivalents(q string) *QuotaWrapper {
	w.Spec.Limits.GPUEquivalents = ptr.To(resource.MustParse(q))
	return w
}

// MaxGPUsPerContainer sets spec.limits.maxGPUsPerContainer.
func (w *QuotaWrapper) MaxGPUsPerContainer(n int32) *QuotaWrapper {
	w.Spec.Limits.MaxGPUsPerContainer = ptr.To(n)
	return w
}

// MaxContainers sets spec.limits.maxContainers.
func (w *QuotaWrapper) MaxContainers(n int32) *QuotaWrapper {
	w.Spec.Limits.MaxContainers = ptr.To(n)
	return w
}

// AllowFullGPU sets spec.limits.allowFullGPU.
func (w *QuotaWrapper) AllowFullGPU(allow bool) *QuotaWrapper {
	w.Spec.Limits.AllowFullGPU = ptr.To(allow)
	return w
}

// Unlimited adds limits the quota lifts.
func (w *QuotaWrapper) Unlimited(limits ...gpuwardenv1alpha1.QuotaLimitName) *QuotaWrapper {
	w.Spec.Unlimited = append(w.Spec.Unlimited, limits...)
	return w
}

// PolicyWrapper builds a ContainerPolicy.
type PolicyWrapper struct {
	gpuwardenv1alpha1.ContainerPolicy
}

// MakePolicy starts a ContainerPolicy named name that selects every container and sets
// nothing.
func MakePolicy(name string) *PolicyWrapper {
	return &PolicyWrapper{gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}}
}

// Obj returns the policy built (a copy).
func (w *PolicyWrapper) Obj() *gpuwardenv1alpha1.ContainerPolicy { return w.DeepCopy() }

// Generation sets metadata.generation.
func (w *PolicyWrapper) Generation(g int64) *PolicyWrapper {
	w.ObjectMeta.Generation = g
	return w
}

// WithSpec sets the whole spec; calls after it change that spec.
func (w *PolicyWrapper) WithSpec(s gpuwardenv1alpha1.ContainerPolicySpec) *PolicyWrapper {
	w.Spec = s
	return w
}

// Users selects these users' containers (spec.selector.users).
func (w *PolicyWrapper) Users(names ...string) *PolicyWrapper {
	w.Spec.Selector.Users = append(w.Spec.Selector.Users, names...)
	return w
}

// Groups selects these groups' containers (spec.selector.groups).
func (w *PolicyWrapper) Groups(names ...string) *PolicyWrapper {
	w.Spec.Selector.Groups = append(w.Spec.Selector.Groups, names...)
	return w
}

// ContainerTypes selects containers of these types (spec.selector.containerTypes).
func (w *PolicyWrapper) ContainerTypes(types ...gpuwardenv1alpha1.ContainerType) *PolicyWrapper {
	w.Spec.Selector.ContainerTypes = append(w.Spec.Selector.ContainerTypes, types...)
	return w
}

// Precedence sets spec.precedence.
func (w *PolicyWrapper) Precedence(p int32) *PolicyWrapper {
	w.Spec.Precedence = p
	return w
}

// Mode sets spec.mode.
func (w *PolicyWrapper) Mode(m gpuwardenv1alpha1.PolicyMode) *PolicyWrapper {
	w.Spec.Mode = m
	return w
}

// Expires sets spec.expires.
func (w *PolicyWrapper) Expires(t time.Time) *PolicyWrapper {
	w.Spec.Expires = ptr.To(metav1.NewTime(t))
	return w
}

// Idle sets spec.idle.
func (w *PolicyWrapper) Idle(p gpuwardenv1alpha1.IdlePolicy) *PolicyWrapper {
	w.Spec.Idle = &p
	return w
}

// duration sets the policy's field to d.
func (w *PolicyWrapper) duration(field **gpuwardenv1alpha1.Duration, d time.Duration) *PolicyWrapper {
	*field = Duration(d)
	return w
}

// IdleTimeout sets spec.idle.timeout, keeping the rest of spec.idle.
func (w *PolicyWrapper) IdleTimeout(d time.Duration) *PolicyWrapper {
	if w.Spec.Idle == nil {
		w.Spec.Idle = &gpuwardenv1alpha1.IdlePolicy{}
	}
	return w.duration(&w.Spec.Idle.Timeout, d)
}

// MaxRuntime sets spec.maxRuntime.
func (w *PolicyWrapper) MaxRuntime(d time.Duration) *PolicyWrapper {
	return w.duration(&w.Spec.MaxRuntime, d)
}

// RuntimeWarnAt sets spec.runtimeWarnAtFractions.
func (w *PolicyWrapper) RuntimeWarnAt(fractions ...gpuwardenv1alpha1.Fraction) *PolicyWrapper {
	w.Spec.RuntimeWarnAtFractions = fractions
	return w
}

// StopGracePeriod sets spec.stopGracePeriod.
func (w *PolicyWrapper) StopGracePeriod(d time.Duration) *PolicyWrapper {
	return w.duration(&w.Spec.StopGracePeriod, d)
}

// GPUHoldAfterStop sets spec.gpuHoldAfterStop.
func (w *PolicyWrapper) GPUHoldAfterStop(d time.Duration) *PolicyWrapper {
	return w.duration(&w.Spec.GPUHoldAfterStop, d)
}

// RemoveAfterStop sets spec.removeAfterStop.
func (w *PolicyWrapper) RemoveAfterStop(d time.Duration) *PolicyWrapper {
	return w.duration(&w.Spec.RemoveAfterStop, d)
}

// CreatedNeverStartedTimeout sets spec.createdNeverStartedTimeout.
func (w *PolicyWrapper) CreatedNeverStartedTimeout(d time.Duration) *PolicyWrapper {
	return w.duration(&w.Spec.CreatedNeverStartedTimeout, d)
}

// ReleaseUnusedAfter sets spec.releaseUnusedAfter.
func (w *PolicyWrapper) ReleaseUnusedAfter(d time.Duration) *PolicyWrapper {
	return w.duration(&w.Spec.ReleaseUnusedAfter, d)
}

// OnUnallocatedGPU sets spec.onUnallocatedGPU.
func (w *PolicyWrapper) OnUnallocatedGPU(a gpuwardenv1alpha1.UnallocatedGPUAction) *PolicyWrapper {
	w.Spec.OnUnallocatedGPU = a
	return w
}

// Notify sets spec.notify: a file in the container and a webhook (either may be "").
func (w *PolicyWrapper) Notify(file, webhookURL string) *PolicyWrapper {
	w.Spec.Notify = &gpuwardenv1alpha1.Notify{File: file, WebhookURL: webhookURL}
	return w
}

// Unlimited adds limits the policy lifts.
func (w *PolicyWrapper) Unlimited(limits ...gpuwardenv1alpha1.PolicyLimitName) *PolicyWrapper {
	w.Spec.Unlimited = append(w.Spec.Unlimited, limits...)
	return w
}

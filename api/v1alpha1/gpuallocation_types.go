package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AllocationPhase is where a GPUAllocation is in its life.
// +kubebuilder:validation:Enum=Pending;Bound;Released;Rejected
type AllocationPhase string

// Allocation phases.
const (
	// PhasePending: not yet decided, or waiting for capacity.
	PhasePending AllocationPhase = "Pending"
	// PhaseBound: devices are held for the user.
	PhaseBound AllocationPhase = "Bound"
	// PhaseReleased: the devices were given back; kept visible for a retention period.
	PhaseReleased AllocationPhase = "Released"
	// PhaseRejected: refused for a final reason.
	PhaseRejected AllocationPhase = "Rejected"
)

// AllocationSource says who created a GPUAllocation.
// +kubebuilder:validation:Enum=Gateway;Adopted;Manual
type AllocationSource string

// Allocation sources.
const (
	// SourceGateway: created by the Docker gateway for a container create.
	SourceGateway AllocationSource = "Gateway"
	// SourceAdopted: created for a GPU container found running outside the gateway.
	SourceAdopted AllocationSource = "Adopted"
	// SourceManual: created by a person with kubectl.
	SourceManual AllocationSource = "Manual"
)

// Reasons of a GPUAllocation that is not Bound. All but NoCapacity are final; NoCapacity is retried.
const (
	// ReasonUnsatisfiable: no GPU node could ever meet the request as asked (more GPUs than
	// any node has, a MIG profile no GPU offers, a device that does not exist or one named twice).
	ReasonUnsatisfiable = "Unsatisfiable"
	// ReasonSourceNotAllowed: source Adopted or Gateway on an allocation gpuwarden did not make.
	ReasonSourceNotAllowed       = "SourceNotAllowed"
	ReasonQuotaExceeded          = "QuotaExceeded"
	ReasonContainerLimitExceeded = "ContainerLimitExceeded"
	ReasonMaxContainersExceeded  = "MaxContainersExceeded"
	ReasonFullGPUNotAllowed      = "FullGPUNotAllowed"
	ReasonNoCapacity             = "NoCapacity"
	// ReasonBudgetExceeded: the user (or their Shared pool) used their GPU-hour budget
	// (GPUQuota spec.budget) in its window; the message says when enough frees up.
	ReasonBudgetExceeded = "BudgetExceeded"
)

// AllocationRequest is what is asked for: exactly one of gpus, migProfile or devices.
// +kubebuilder:validation:XValidation:rule="[has(self.gpus), has(self.migProfile), has(self.devices)].filter(x, x).size() == 1",message="exactly one of gpus, migProfile or devices must be set"
type AllocationRequest struct {
	// gpus is a number of whole GPUs (or slots) wanted.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	GPUs *int32 `json:"gpus,omitempty"`

	// migProfile asks for one MIG instance of this profile, e.g. 3g.40gb.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[1-9][0-9]*g\.[1-9][0-9]*gb(\+[a-z0-9]+)?$`
	MIGProfile string `json:"migProfile,omitempty"`

	// devices asks for specific devices by UUID (GPU-… or MIG-…) or index ("0", "1:2").
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^(GPU-[0-9a-fA-F-]+|MIG-[0-9a-fA-F/-]+|[0-9]+(:[0-9]+)?)$`
	// +listType=set
	Devices []string `json:"devices,omitempty"`
}

// GPUAllocationSpec is one claim of GPU units by one user for one container.
// +kubebuilder:validation:XValidation:rule="self.user == oldSelf.user",message="user is immutable",fieldPath=".user"
// +kubebuilder:validation:XValidation:rule="self.request == oldSelf.request",message="request is immutable",fieldPath=".request"
// +kubebuilder:validation:XValidation:rule="self.source == oldSelf.source",message="source is immutable",fieldPath=".source"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.nodeName) || (has(self.nodeName) && self.nodeName == oldSelf.nodeName)",message="nodeName is immutable once set",fieldPath=".nodeName"
type GPUAllocationSpec struct {
	// user is the login name of the user the GPUs are for.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_][A-Za-z0-9_.@$-]*$`
	User string `json:"user"`

	// nodeName is the GPU node the allocation is for. Empty: the node whose controller takes it first.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	NodeName string `json:"nodeName,omitempty"`

	// request is what is asked for.
	// +required
	Request AllocationRequest `json:"request"`

	// containerType is the kind of container the GPUs are for; it selects ContainerPolicies.
	// +optional
	// +kubebuilder:default=docker
	ContainerType ContainerType `json:"containerType,omitempty"`

	// source is who created the allocation: Gateway, Adopted or Manual.
	// +optional
	// +kubebuilder:default=Manual
	Source AllocationSource `json:"source,omitempty"`

	// containerName is the name of the container the GPUs are for, when known.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	ContainerName string `json:"containerName,omitempty"`

	// containerID is the ID of the container the GPUs are for, when known.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{12,64}$`
	ContainerID string `json:"containerID,omitempty"`
}

// BoundDevice is one device held by an allocation.
type BoundDevice struct {
	// index is the index of the physical GPU (the parent's index for a MIG slice).
	// +required
	// +kubebuilder:validation:Minimum=0
	Index int32 `json:"index"`

	// uuid is the device's UUID (GPU-… or MIG-…), as given to NVIDIA_VISIBLE_DEVICES.
	// +required
	// +kubebuilder:validation:MaxLength=128
	UUID string `json:"uuid"`

	// migProfile is the MIG profile, for a MIG slice.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	MIGProfile string `json:"migProfile,omitempty"`

	// weight is what the device costs in GPU-equivalents.
	// +required
	Weight resource.Quantity `json:"weight"`
}

// GPUAllocationStatus is what the allocation controller decided.
type GPUAllocationStatus struct {
	// phase is Pending, Bound, Released or Rejected.
	// +optional
	Phase AllocationPhase `json:"phase,omitempty"`

	// devices are the devices held while Bound.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Devices []BoundDevice `json:"devices,omitempty"`

	// devicesSummary lists the devices held for people, as kubectl get shows them: GPU
	// indexes ("0,1"), a MIG slice as index:profile ("4:1g.10gb").
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	DevicesSummary string `json:"devicesSummary,omitempty"`

	// gpuEquivalents is the sum of the devices' weights.
	// +optional
	GPUEquivalents *resource.Quantity `json:"gpuEquivalents,omitempty"`

	// gpuEquivalentsRounded is gpuEquivalents for people, to two decimals ("0.43" for a
	// 3g slice), as kubectl get shows it; gpuEquivalents stays exact for machines.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	GPUEquivalentsRounded string `json:"gpuEquivalentsRounded,omitempty"`

	// containerID is the container the devices were attached to.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ContainerID string `json:"containerID,omitempty"`

	// containerName is the name of the container the devices were attached to (kept up to
	// date across renames), or spec.containerName while none is: what kubectl get shows (a
	// Gateway allocation is made before its container, so its spec may name none).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	ContainerName string `json:"containerName,omitempty"`

	// boundTime is when the devices were bound.
	// +optional
	BoundTime *metav1.Time `json:"boundTime,omitempty"`

	// releasedTime is when the devices were released.
	// +optional
	ReleasedTime *metav1.Time `json:"releasedTime,omitempty"`

	// reason is a CamelCase reason from a fixed taxonomy when not Bound (QuotaExceeded,
	// ContainerLimitExceeded, MaxContainersExceeded, FullGPUNotAllowed, Unsatisfiable,
	// SourceNotAllowed, NoCapacity) or why it was released.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Reason string `json:"reason,omitempty"`

	// message explains the reason for people, naming the limit and the object that set it.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Message string `json:"message,omitempty"`

	// observedGeneration is the spec generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions of the allocation.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// idle is the idle state of the allocation's running container, kept here so that a
	// restart of gpuwarden neither resets a streak nor repeats a warning.
	// +optional
	Idle *IdleStatus `json:"idle,omitempty"`

	// runtime is the max-runtime state of the allocation's container.
	// +optional
	Runtime *RuntimeStatus `json:"runtime,omitempty"`

	// queue is the allocation's place in its node's queue while it waits for capacity
	// (Pending, reason NoCapacity).
	// +optional
	Queue *QueueStatus `json:"queue,omitempty"`

	// borrowed says the allocation holds more than its user's quota, borrowed while the
	// GPUs were free (GPUQuota spec.borrowing): it is taken back (checkpoint hook, stop,
	// release) when a request within its user's quota waits for its GPUs.
	// +optional
	Borrowed bool `json:"borrowed,omitempty"`

	// displacement says a reservation takes the allocation's devices at its start, before
	// the allocation's time is up, and stops it then (GPUReservation displace: Stop): its
	// owner is told ahead, and at the start its checkpoint hook runs, it is stopped and
	// released.
	// +optional
	Displacement *Displacement `json:"displacement,omitempty"`
}

// Displacement is a reservation that stops an allocation at its start.
type Displacement struct {
	// reservation is the GPUReservation's name.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Reservation string `json:"reservation"`
	// at is the reservation's start, when the allocation is stopped.
	// +required
	At metav1.Time `json:"at"`
	// message says who the reservation is for and until when.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// QueueStatus is a waiting allocation's place in its node's queue and when it can start.
type QueueStatus struct {
	// position is the allocation's place among the node's requests waiting for capacity,
	// 1 first (order: quota priority, then fair share, then age).
	// +required
	// +kubebuilder:validation:Minimum=1
	Position int32 `json:"position"`

	// waiting is how many requests wait for capacity on the node.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Waiting int32 `json:"waiting,omitempty"`

	// ahead are the allocations ahead of it in the queue, first first (at most ten).
	// +optional
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=atomic
	Ahead []string `json:"ahead,omitempty"`

	// latestStart is the latest the allocation starts, from what holders cannot exceed
	// (their runtime limits and holds after stop, each stop's grace period): valid while no
	// request of higher order arrives. Unset when some holder it waits for has no such limit.
	// +optional
	LatestStart *metav1.Time `json:"latestStart,omitempty"`

	// estimatedStart is the best estimate of when it starts, from the holders' own history
	// and idle state.
	// +optional
	EstimatedStart *metav1.Time `json:"estimatedStart,omitempty"`

	// blockedBy is the allocation whose end lets it start (latestStart comes from it), or
	// the holder without a limit that makes latestStart unknown.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	BlockedBy string `json:"blockedBy,omitempty"`

	// priority is the quota priority the request waits with.
	// +optional
	Priority int32 `json:"priority,omitempty"`

	// fairShare is the request's rank among those of its priority, and how it was counted:
	// its user's recent gpu-equivalent-hours (decayed with a half-life) over their quota,
	// less the credit of the time waited. The lower goes first; ranks within 0.05 are equal
	// and then the older goes first.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	FairShare string `json:"fairShare,omitempty"`

	// message says why it waits, for people.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// IdleStatus is a container's current run of idle samples.
type IdleStatus struct {
	// since is the time of the first idle sample of the current run.
	// +optional
	Since *metav1.MicroTime `json:"since,omitempty"`

	// samples is how many idle samples in a row were seen, counted up to the policy's
	// consecutiveSamples; the idle time counts once it is reached.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Samples int32 `json:"samples,omitempty"`

	// sent are the notices already given: fractions of the timeout warned at ("0.8"), for
	// the stop time warnedFor; and, in this run only, "info" (an exempt container's notice)
	// and "stop".
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=16
	// +listType=atomic
	Sent []string `json:"sent,omitempty"`

	// warnedFor is the stop time the warnings in sent announced. A warning is given once per
	// stop time: a new run that would be stopped at the same time (held by the same
	// keep-alive file) is not warned again, one stopped at another time is.
	// +optional
	WarnedFor *metav1.MicroTime `json:"warnedFor,omitempty"`
}

// RuntimeStatus is a container's run against its maximum runtime.
type RuntimeStatus struct {
	// since is when the runtime started: the binding or the container's first start,
	// whichever was earlier (a restart does not reset it).
	// +optional
	Since *metav1.Time `json:"since,omitempty"`

	// sent are the fractions of the maximum runtime warned at, and "stop".
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=16
	// +listType=atomic
	Sent []string `json:"sent,omitempty"`
}

// GPUAllocation is one claim of GPU units by one user, for one container.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ga,categories=gpuwarden
// +kubebuilder:selectablefield:JSONPath=`.spec.user`
// +kubebuilder:selectablefield:JSONPath=`.spec.nodeName`
// +kubebuilder:selectablefield:JSONPath=`.status.phase`
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || self.spec == oldSelf.spec",message="spec is immutable once the allocation is Bound, Released or Rejected",fieldPath=".spec"
// +kubebuilder:printcolumn:name="User",type=string,JSONPath=`.spec.user`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Devices",type=string,JSONPath=`.status.devicesSummary`
// +kubebuilder:printcolumn:name="GPU-Eq",type=string,JSONPath=`.status.gpuEquivalentsRounded`
// +kubebuilder:printcolumn:name="Container",type=string,JSONPath=`.status.containerName`
// +kubebuilder:printcolumn:name="Idle",type=date,JSONPath=`.status.idle.since`
// +kubebuilder:printcolumn:name="Borrowed",type=boolean,JSONPath=`.status.borrowed`
// +kubebuilder:printcolumn:name="Place",type=integer,JSONPath=`.status.queue.position`
// +kubebuilder:printcolumn:name="Estimate",type=string,JSONPath=`.status.queue.estimatedStart`
// +kubebuilder:printcolumn:name="Latest",type=string,JSONPath=`.status.queue.latestStart`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.nodeName`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`,priority=1
// +kubebuilder:printcolumn:name="Container-ID",type=string,JSONPath=`.status.containerID`,priority=1
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.source`,priority=1
// +kubebuilder:printcolumn:name="Released",type=date,JSONPath=`.status.releasedTime`,priority=1
type GPUAllocation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the claim.
	// +required
	Spec GPUAllocationSpec `json:"spec"`

	// status is the decision.
	// +optional
	Status GPUAllocationStatus `json:"status,omitempty"`
}

// GPUAllocationList is a list of GPUAllocations.
// +kubebuilder:object:root=true
type GPUAllocationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GPUAllocation `json:"items"`
}

func init() {
	SchemeBuilder.Register(&GPUAllocation{}, &GPUAllocationList{})
}

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReservationRepeat says whether a reservation's window comes back.
// +kubebuilder:validation:Enum=None;Weekly
type ReservationRepeat string

// Repeats.
const (
	// RepeatNone: the window happens once.
	RepeatNone ReservationRepeat = "None"
	// RepeatWeekly: the window comes back every week at the same time (UTC).
	RepeatWeekly ReservationRepeat = "Weekly"
)

// Displace says what happens at a reservation's start to other work on its devices.
// +kubebuilder:validation:Enum=Stop;Wait
type Displace string

// Displacements.
const (
	// DisplaceStop warns the holders whose time crosses the start, runs their checkpoint
	// hooks and stops them at the start.
	DisplaceStop Displace = "Stop"
	// DisplaceWait lets such holders finish: the reservation's users wait for them.
	DisplaceWait Displace = "Wait"
)

// ReservationPhase is where a reservation is in its life.
// +kubebuilder:validation:Enum=Pending;Accepted;Active;Ended;Rejected
type ReservationPhase string

// Reservation phases.
const (
	ReservationPending  ReservationPhase = "Pending"
	ReservationAccepted ReservationPhase = "Accepted"
	ReservationActive   ReservationPhase = "Active"
	ReservationEnded    ReservationPhase = "Ended"
	ReservationRejected ReservationPhase = "Rejected"
)

// Reasons a reservation is rejected.
const (
	// ReasonNoRoom: the window cannot be met against the reservations already accepted
	// (or the node has too few devices of the kind asked for).
	ReasonNoRoom = "NoRoom"
	// ReasonDevicesConflict: devices named by the request are reserved by another
	// reservation in an overlapping window.
	ReasonDevicesConflict = "DevicesConflict"
	// ReasonAllowanceExceeded: a user's own booking is beyond what their GPUQuota lets them
	// book (limits.reservedGPUHours per budget window; none by default).
	ReasonAllowanceExceeded = "AllowanceExceeded"
	// ReasonWindowPassed: the window ended before the reservation was decided.
	ReasonWindowPassed = "WindowPassed"
)

// Annotations the API server's admission sets on every GPUReservation it lets in.
const (
	// AnnotationBookedBy names who created the reservation (the API server's word).
	AnnotationBookedBy = "gpuwarden.io/booked-by"
	// AnnotationBookedByAdmin is "true" when its creator may create GPUQuotas (an admin,
	// whose bookings no allowance limits), "false" otherwise.
	AnnotationBookedByAdmin = "gpuwarden.io/booked-by-admin"
)

// GPUReservationSpec books GPUs ahead: for whom, what, when, and what happens to other
// work on them at the start.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a reservation cannot be changed once made; delete it and book again"
// +kubebuilder:validation:XValidation:rule="self.end > self.start",message="end must be after start",fieldPath=".end"
// +kubebuilder:validation:XValidation:rule="self.start >= timestamp('2020-01-01T00:00:00Z') && self.start < timestamp('2200-01-01T00:00:00Z')",message="start must be between 2020 and 2200",fieldPath=".start"
// +kubebuilder:validation:XValidation:rule="self.repeat != 'Weekly' || self.end - self.start <= duration('168h')",message="a weekly window lasts at most a week",fieldPath=".end"
// +kubebuilder:validation:XValidation:rule="self.end - self.start <= duration('2160h')",message="a window lasts at most 90 days",fieldPath=".end"
type GPUReservationSpec struct {
	// subjects may use the reserved GPUs during the window: users and host groups. None
	// (or an empty list) reserves them for no one: the devices are drained, for
	// maintenance.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Subjects []Subject `json:"subjects,omitempty"`

	// nodeName is the GPU node to reserve on; empty: any node with room.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	NodeName string `json:"nodeName,omitempty"`

	// request is what is reserved: a number of whole GPUs, one MIG slice of a profile, or
	// named devices.
	// +required
	Request AllocationRequest `json:"request"`

	// start of the (first) window, RFC 3339.
	// +required
	Start metav1.Time `json:"start"`

	// end of the (first) window, RFC 3339; after start.
	// +required
	End metav1.Time `json:"end"`

	// repeat is None or Weekly (the window comes back every 7 days).
	// +optional
	// +kubebuilder:default=None
	Repeat ReservationRepeat `json:"repeat,omitempty"`

	// chargeQuota says whether its users' use of the reserved GPUs counts against their
	// GPUQuota (limits, budget) as any other use does. A user's own booking always counts.
	// +optional
	ChargeQuota bool `json:"chargeQuota,omitempty"`

	// displace says what happens at the start to other users' work on the reserved
	// devices whose time crosses it: Stop (warned ahead, checkpoint hook, stopped at the
	// start) or Wait (the reservation's users wait for it to end).
	// +optional
	// +kubebuilder:default=Wait
	Displace Displace `json:"displace,omitempty"`

	// releaseUnusedAfter gives the reserved devices back to everyone, for the rest of the
	// window, when none of its users has held them this long after the start.
	// +optional
	ReleaseUnusedAfter *Duration `json:"releaseUnusedAfter,omitempty"`
}

// GPUReservationStatus is what the allocator decided and what happened since.
type GPUReservationStatus struct {
	// phase is Pending, Accepted (devices chosen, the window ahead), Active (within the
	// window), Ended or Rejected.
	// +optional
	Phase ReservationPhase `json:"phase,omitempty"`

	// nodeName is the node whose devices are reserved.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	NodeName string `json:"nodeName,omitempty"`

	// devices are the devices reserved.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Devices []BoundDevice `json:"devices,omitempty"`

	// devicesSummary lists the devices for people ("0,1", "4:1g.10gb").
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	DevicesSummary string `json:"devicesSummary,omitempty"`

	// windowStart and windowEnd are the current window, or the next one.
	// +optional
	WindowStart *metav1.Time `json:"windowStart,omitempty"`
	// +optional
	WindowEnd *metav1.Time `json:"windowEnd,omitempty"`

	// releasedUnused is when the current window's devices were given back to everyone,
	// unused by its users for releaseUnusedAfter.
	// +optional
	ReleasedUnused *metav1.Time `json:"releasedUnused,omitempty"`

	// usedGPUHours is how much of the reserved devices its users held in its window begun
	// last (the current one, or the last one between two weekly windows), in
	// gpu-equivalent-hours, to two decimals.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	UsedGPUHours string `json:"usedGPUHours,omitempty"`

	// reservedGPUHours is what one window reserves, in gpu-equivalent-hours: what a
	// user's booking counts against their allowance per occurrence.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	ReservedGPUHours string `json:"reservedGPUHours,omitempty"`

	// reason is a CamelCase reason when Rejected (NoRoom, DevicesConflict,
	// AllowanceExceeded, Unsatisfiable, WindowPassed).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Reason string `json:"reason,omitempty"`

	// message explains the phase for people, naming the limit or the reservation in the
	// way.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Message string `json:"message,omitempty"`

	// observedGeneration is the spec generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,path=gpureservations,singular=gpureservation,shortName=rsv,categories=gpuwarden
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.nodeName`
// +kubebuilder:printcolumn:name="Devices",type=string,JSONPath=`.status.devicesSummary`
// +kubebuilder:printcolumn:name="Start",type=string,JSONPath=`.status.windowStart`
// +kubebuilder:printcolumn:name="End",type=string,JSONPath=`.status.windowEnd`
// +kubebuilder:printcolumn:name="Repeat",type=string,JSONPath=`.spec.repeat`
// +kubebuilder:printcolumn:name="Displace",type=string,JSONPath=`.spec.displace`
// +kubebuilder:printcolumn:name="Subjects",type=string,JSONPath=`.spec.subjects[*].name`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`,priority=1
// +kubebuilder:printcolumn:name="Used-GPU-h",type=string,JSONPath=`.status.usedGPUHours`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// GPUReservation books GPUs for some users (or for no one: maintenance) over a window.
type GPUReservation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec GPUReservationSpec `json:"spec"`
	// +optional
	Status GPUReservationStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// GPUReservationList is a list of GPUReservations.
type GPUReservationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GPUReservation `json:"items"`
}

func init() {
	SchemeBuilder.Register(&GPUReservation{}, &GPUReservationList{})
}

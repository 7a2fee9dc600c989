package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SubjectKind says what a quota subject names.
// +kubebuilder:validation:Enum=User;Group;Everyone
type SubjectKind string

// Subject kinds.
const (
	// SubjectUser matches one host user by login name.
	SubjectUser SubjectKind = "User"
	// SubjectGroup matches every member of a host group (the host's group database, so LDAP via NSS works).
	SubjectGroup SubjectKind = "Group"
	// SubjectEveryone matches every user.
	SubjectEveryone SubjectKind = "Everyone"
)

// QuotaScope says whether limits apply to each subject or to all subjects together.
// +kubebuilder:validation:Enum=PerUser;Shared
type QuotaScope string

// Quota scopes.
const (
	// ScopePerUser gives each matched user the limits.
	ScopePerUser QuotaScope = "PerUser"
	// ScopeShared makes the limits one pool for all matched users together.
	ScopeShared QuotaScope = "Shared"
)

// QuotaLimitName names a limit of a GPUQuota; used in spec.unlimited.
// +kubebuilder:validation:Enum=gpuEquivalents;maxGPUsPerContainer;maxContainers;budget;reservedGPUHours
type QuotaLimitName string

// Quota limit names.
const (
	LimitGPUEquivalents      QuotaLimitName = "gpuEquivalents"
	LimitMaxGPUsPerContainer QuotaLimitName = "maxGPUsPerContainer"
	LimitMaxContainers       QuotaLimitName = "maxContainers"
	// LimitBudget lifts a GPU-hour budget (spec.budget.gpuHours) set at lower precedence.
	LimitBudget QuotaLimitName = "budget"
	// LimitReservedGPUHours lifts an allowance of bookings (limits.reservedGPUHours) set at
	// lower precedence.
	LimitReservedGPUHours QuotaLimitName = "reservedGPUHours"
)

// BudgetWindowMonth is the calendar month (UTC) as a budget's window.
const BudgetWindowMonth = "Month"

// QuotaBorrowing lets the subjects hold more than limits.gpuEquivalents while GPUs would
// otherwise stay free; what they hold beyond it is borrowed and is taken back (checkpoint
// hook, stop, release) when a request within its user's quota waits for it.
type QuotaBorrowing struct {
	// gpuEquivalents is how much beyond limits.gpuEquivalents may be borrowed ("0": none).
	// +optional
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('0'))",message="borrowing.gpuEquivalents must not be negative"
	GPUEquivalents *resource.Quantity `json:"gpuEquivalents,omitempty"`
}

// QuotaBudget is a budget of gpu-equivalent-hours over a window: what the subjects held
// (a 3g slice of a 7-slice GPU for an hour is 3/7 of an hour), as gpuwarden report counts
// it. Past it, new requests are refused with BudgetExceeded; running containers go on.
type QuotaBudget struct {
	// gpuHours is the budget in gpu-equivalent-hours.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('0'))",message="budget.gpuHours must not be negative"
	GPUHours *resource.Quantity `json:"gpuHours,omitempty"`

	// window is the period the budget covers: a rolling number of days or hours ("30d",
	// "168h", at most 90 days) or "Month", the calendar month in UTC. Unset: 30d.
	// +optional
	// +kubebuilder:validation:MaxLength=8
	// +kubebuilder:validation:Pattern=`^(Month|[1-9][0-9]?d|90d|[1-9][0-9]{0,3}h)$`
	Window string `json:"window,omitempty"`
}

// Subject names the users a GPUQuota applies to.
// +kubebuilder:validation:XValidation:rule="self.kind == 'Everyone' ? !has(self.name) : has(self.name)",message="name is required for kind User or Group and must be empty for kind Everyone"
type Subject struct {
	// kind is User, Group or Everyone.
	// +required
	Kind SubjectKind `json:"kind"`

	// name is the user's login name or the group's name. Empty for Everyone.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_][A-Za-z0-9_.@$-]*$`
	Name string `json:"name,omitempty"`
}

// QuotaLimits are the limits a GPUQuota sets. A field left unset inherits from
// quotas of lower precedence; to lift a limit, name it in spec.unlimited.
// +kubebuilder:validation:XValidation:rule="!has(self.gpuEquivalents) || !quantity(string(self.gpuEquivalents)).isLessThan(quantity('0'))",message="gpuEquivalents must not be negative",fieldPath=".gpuEquivalents"
// +kubebuilder:validation:XValidation:rule="!has(self.reservedGPUHours) || !quantity(string(self.reservedGPUHours)).isLessThan(quantity('0'))",message="reservedGPUHours must not be negative",fieldPath=".reservedGPUHours"
type QuotaLimits struct {
	// gpuEquivalents is how many GPU-equivalents the subject may hold at once: a full GPU
	// costs 1, a MIG slice its share of the GPU's compute slices (3g on a 7-slice GPU: 3/7).
	// +optional
	GPUEquivalents *resource.Quantity `json:"gpuEquivalents,omitempty"`

	// maxGPUsPerContainer caps the GPUs or MIG slices one container may hold.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1024
	MaxGPUsPerContainer *int32 `json:"maxGPUsPerContainer,omitempty"`

	// maxContainers caps how many GPU containers the subject may have at once.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	MaxContainers *int32 `json:"maxContainers,omitempty"`

	// allowFullGPU says whether whole (non-MIG) GPUs may be given to the subject.
	// +optional
	AllowFullGPU *bool `json:"allowFullGPU,omitempty"`

	// reservedGPUHours is how much a user may book ahead (GPUReservations of their own) per
	// budget window (spec.budget.window, 30d by default), in gpu-equivalent-hours: each
	// window of their bookings that falls in it counts. Unset: none (only admins book).
	// +optional
	ReservedGPUHours *resource.Quantity `json:"reservedGPUHours,omitempty"`
}

// GPUQuotaSpec is what an admin declares about how much GPU a set of users may hold.
// +kubebuilder:validation:XValidation:rule="!has(self.unlimited) || !('gpuEquivalents' in self.unlimited) || !has(self.limits) || !has(self.limits.gpuEquivalents)",message="gpuEquivalents cannot be both set in limits and named in unlimited",fieldPath=".unlimited"
// +kubebuilder:validation:XValidation:rule="!has(self.unlimited) || !('maxGPUsPerContainer' in self.unlimited) || !has(self.limits) || !has(self.limits.maxGPUsPerContainer)",message="maxGPUsPerContainer cannot be both set in limits and named in unlimited",fieldPath=".unlimited"
// +kubebuilder:validation:XValidation:rule="!has(self.unlimited) || !('maxContainers' in self.unlimited) || !has(self.limits) || !has(self.limits.maxContainers)",message="maxContainers cannot be both set in limits and named in unlimited",fieldPath=".unlimited"
// +kubebuilder:validation:XValidation:rule="!has(self.unlimited) || !('reservedGPUHours' in self.unlimited) || !has(self.limits) || !has(self.limits.reservedGPUHours)",message="reservedGPUHours cannot be both set in limits and named in unlimited",fieldPath=".unlimited"
// +kubebuilder:validation:XValidation:rule="!has(self.unlimited) || !('budget' in self.unlimited) || !has(self.budget) || !has(self.budget.gpuHours)",message="budget cannot be both set in budget.gpuHours and named in unlimited",fieldPath=".unlimited"
// +kubebuilder:validation:XValidation:rule="self.subjects.filter(s, s.kind == 'Everyone').size() == 0 || self.subjects.size() == 1",message="a subject of kind Everyone must be the only subject",fieldPath=".subjects"
type GPUQuotaSpec struct {
	// subjects are the users this quota applies to: users, host groups or everyone.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Subjects []Subject `json:"subjects"`

	// precedence orders merging: every quota that matches a user is merged field by field
	// in ascending precedence, so a higher precedence wins for the fields it sets.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	Precedence int32 `json:"precedence"`

	// scope is PerUser (each matched user gets the limits) or Shared (one pool for all
	// matched users together).
	// +optional
	// +kubebuilder:default=PerUser
	Scope QuotaScope `json:"scope,omitempty"`

	// priority orders waiting requests when capacity is short; higher goes first.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Priority *int32 `json:"priority,omitempty"`

	// limits are the limits this quota sets; unset fields inherit.
	// +optional
	Limits QuotaLimits `json:"limits,omitempty"`

	// borrowing lets the subjects hold more than limits.gpuEquivalents while GPUs would
	// otherwise stay free, and be asked to give it back; merged field by field, off unless set.
	// +optional
	Borrowing *QuotaBorrowing `json:"borrowing,omitempty"`

	// budget is a budget of gpu-equivalent-hours over a window; merged field by field.
	// +optional
	Budget *QuotaBudget `json:"budget,omitempty"`

	// unlimited names limits that are explicitly lifted (distinct from unset, which inherits).
	// +optional
	// +kubebuilder:validation:MaxItems=4
	// +listType=set
	Unlimited []QuotaLimitName `json:"unlimited,omitempty"`
}

// UserUsage is what one user holds under a quota.
type UserUsage struct {
	// user is the login name.
	// +required
	// +kubebuilder:validation:MaxLength=256
	User string `json:"user"`

	// gpuEquivalents is the sum of the weights of the user's bound devices.
	// +optional
	GPUEquivalents resource.Quantity `json:"gpuEquivalents,omitempty"`

	// gpuEquivalentsRounded is gpuEquivalents for people, to two decimals ("0.43").
	// +optional
	// +kubebuilder:validation:MaxLength=32
	GPUEquivalentsRounded string `json:"gpuEquivalentsRounded,omitempty"`

	// containers is how many GPU containers the user holds.
	// +optional
	Containers int32 `json:"containers,omitempty"`

	// borrowedGPUEquivalents is what the user holds beyond their quota, borrowed, to two
	// decimals.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	BorrowedGPUEquivalents string `json:"borrowedGPUEquivalents,omitempty"`

	// budget is the user's GPU-hour budget and its use, where a budget applies to them.
	// +optional
	Budget *BudgetUsage `json:"budget,omitempty"`
}

// BudgetUsage is a GPU-hour budget's use.
type BudgetUsage struct {
	// usedGPUHours is what was held in the window so far, running holds included, to two
	// decimals.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	UsedGPUHours string `json:"usedGPUHours,omitempty"`

	// gpuHours is the budget, and from the object that set it.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	GPUHours string `json:"gpuHours,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=300
	From string `json:"from,omitempty"`

	// window is the budget's window ("30d", "Month").
	// +optional
	// +kubebuilder:validation:MaxLength=8
	Window string `json:"window,omitempty"`

	// told is the share of the budget (80 or 100, in percent) the user was last told they
	// reached in this window; each is told once.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Told int32 `json:"told,omitempty"`
}

// GPUQuotaStatus is what the controllers observed about a GPUQuota.
type GPUQuotaStatus struct {
	// observedGeneration is the spec generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// usage lists what each matched user holds now.
	// +optional
	// +listType=map
	// +listMapKey=user
	// +kubebuilder:validation:MaxItems=10000
	Usage []UserUsage `json:"usage,omitempty"`

	// usedGPUEquivalents is what the matched users hold together, in GPU-equivalents to two
	// decimals: the sum of usage, as kubectl get shows it (for a PerUser quota each user's
	// own use is in usage).
	// +optional
	// +kubebuilder:validation:MaxLength=32
	UsedGPUEquivalents string `json:"usedGPUEquivalents,omitempty"`

	// conditions: Accepted.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// GPUQuota declares how much GPU a set of users may hold.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,path=gpuquotas,singular=gpuquota,shortName=gq,categories=gpuwarden
// +kubebuilder:printcolumn:name="Precedence",type=integer,JSONPath=`.spec.precedence`
// +kubebuilder:printcolumn:name="Scope",type=string,JSONPath=`.spec.scope`
// +kubebuilder:printcolumn:name="GPU-Eq",type=string,JSONPath=`.spec.limits.gpuEquivalents`
// +kubebuilder:printcolumn:name="Used",type=string,JSONPath=`.status.usedGPUEquivalents`
// +kubebuilder:printcolumn:name="Borrow",type=string,JSONPath=`.spec.borrowing.gpuEquivalents`
// +kubebuilder:printcolumn:name="Budget",type=string,JSONPath=`.spec.budget.gpuHours`
// +kubebuilder:printcolumn:name="Per-Container",type=integer,JSONPath=`.spec.limits.maxGPUsPerContainer`
// +kubebuilder:printcolumn:name="Max-Containers",type=integer,JSONPath=`.spec.limits.maxContainers`
// +kubebuilder:printcolumn:name="Unlimited",type=string,JSONPath=`.spec.unlimited`,priority=1
// +kubebuilder:printcolumn:name="Subjects",type=string,JSONPath=`.spec.subjects[*].name`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GPUQuota struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired quota.
	// +required
	Spec GPUQuotaSpec `json:"spec"`

	// status is observed by the controllers.
	// +optional
	Status GPUQuotaStatus `json:"status,omitempty"`
}

// GPUQuotaList is a list of GPUQuotas.
// +kubebuilder:object:root=true
type GPUQuotaList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GPUQuota `json:"items"`
}

func init() {
	SchemeBuilder.Register(&GPUQuota{}, &GPUQuotaList{})
}

package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types and reasons of a ContainerPolicy.
const (
	// ConditionActive is True while the policy is in force, False once spec.expires has passed.
	ConditionActive = "Active"

	// ReasonInForce says the policy has no expiry or has not reached it.
	ReasonInForce = "InForce"
	// ReasonExpired says spec.expires has passed; the policy no longer applies.
	ReasonExpired = "Expired"

	// ConditionWebhookAllowed is False when spec.notify.webhookURL targets an address
	// notices are not sent to (loopback or link-local, without --allow-local-webhooks).
	ConditionWebhookAllowed = "WebhookAllowed"
	// ReasonWebhookAllowed says notices may be sent to the webhook.
	ReasonWebhookAllowed = "Allowed"
	// ReasonLocalAddress says the webhook targets a loopback or link-local address.
	ReasonLocalAddress = "LocalAddress"

	// ConditionExemptionsInForce is False when a policy merged after this one (of higher
	// precedence, or of the same precedence and a later name) sets a limit this one names in
	// spec.unlimited, for containers both select: those containers get that limit, not the
	// exemption (reason Overridden; status.overriddenExemptions names each), and once the
	// policy has expired (reason Expired). Absent when spec.unlimited is empty.
	ConditionExemptionsInForce = "ExemptionsInForce"
	// ReasonNotOverridden says no policy merged after this one sets a limit it lifts.
	ReasonNotOverridden = "NotOverridden"
	// ReasonOverridden says a policy merged after this one sets a limit it lifts.
	ReasonOverridden = "Overridden"
)

// PolicyMode says what gpuwarden does when a policy calls for an action.
// +kubebuilder:validation:Enum=Enforce;DryRun;NotifyOnly
type PolicyMode string

// Policy modes.
const (
	// ModeEnforce acts: warns, stops and removes containers.
	ModeEnforce PolicyMode = "Enforce"
	// ModeDryRun records what it would do ("would stop") and touches nothing.
	ModeDryRun PolicyMode = "DryRun"
	// ModeNotifyOnly sends warnings and notices but never stops or removes.
	ModeNotifyOnly PolicyMode = "NotifyOnly"
)

// BudgetExhaustedAction says what happens to a user's running GPU containers once their
// GPU-hour budget (GPUQuota spec.budget) is used up.
// +kubebuilder:validation:Enum=Continue;Stop
type BudgetExhaustedAction string

// Budget exhausted actions.
const (
	// BudgetExhaustedContinue lets running containers go on; only new requests are refused.
	BudgetExhaustedContinue BudgetExhaustedAction = "Continue"
	// BudgetExhaustedStop stops them too (checkpoint hook first), as mode allows.
	BudgetExhaustedStop BudgetExhaustedAction = "Stop"
)

// UnallocatedGPUAction says what happens to a container that uses GPUs no Bound allocation
// gives it: one adopted over its owner's quota, or one whose owner is unknown.
// +kubebuilder:validation:Enum=Record;Stop
type UnallocatedGPUAction string

// Unallocated GPU actions.
const (
	// UnallocatedGPURecord reports it (Event, audit record, metric) and leaves it running.
	UnallocatedGPURecord UnallocatedGPUAction = "Record"
	// UnallocatedGPUStop reports it and stops the container (as mode allows).
	UnallocatedGPUStop UnallocatedGPUAction = "Stop"
)

// PolicyLimitName names a time limit of a ContainerPolicy that can be lifted in spec.unlimited.
// +kubebuilder:validation:Enum=idleTimeout;maxRuntime;gpuHoldAfterStop;removeAfterStop;createdNeverStartedTimeout;releaseUnusedAfter
type PolicyLimitName string

// Policy limit names.
const (
	PolicyLimitIdleTimeout                PolicyLimitName = "idleTimeout"
	PolicyLimitMaxRuntime                 PolicyLimitName = "maxRuntime"
	PolicyLimitGPUHoldAfterStop           PolicyLimitName = "gpuHoldAfterStop"
	PolicyLimitRemoveAfterStop            PolicyLimitName = "removeAfterStop"
	PolicyLimitCreatedNeverStartedTimeout PolicyLimitName = "createdNeverStartedTimeout"
	PolicyLimitReleaseUnusedAfter         PolicyLimitName = "releaseUnusedAfter"
)

// PolicySelector says which containers a ContainerPolicy applies to. Every list that is
// set must match (AND); within a list any entry matches (OR). An empty selector matches
// every container.
type PolicySelector struct {
	// users are owners' login names.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9_][A-Za-z0-9_.@$-]*$`
	// +listType=set
	Users []string `json:"users,omitempty"`

	// groups are host groups the owner belongs to.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9_][A-Za-z0-9_.@$-]*$`
	// +listType=set
	Groups []string `json:"groups,omitempty"`

	// containerTypes are container types: managed, devcontainer, compose, docker, notebook, adopted, unknown.
	// +optional
	// +kubebuilder:validation:MaxItems=7
	// +listType=set
	ContainerTypes []ContainerType `json:"containerTypes,omitempty"`

	// labels are container labels that must all be present with these values.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Labels map[string]string `json:"labels,omitempty"`
}

// KeepAlive lets a user keep an idle container alive by touching a file inside it.
type KeepAlive struct {
	// path is the file inside the container whose modification time counts as activity.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:Pattern=`^/`
	Path string `json:"path"`

	// maxAge is how long one touch of the file keeps the container alive.
	// +optional
	MaxAge *Duration `json:"maxAge,omitempty"`
}

// HighDemand shortens idle timeouts while most GPUs are allocated.
type HighDemand struct {
	// allocatedFraction is the fraction of GPU capacity allocated at or above which demand is high.
	// +required
	AllocatedFraction Fraction `json:"allocatedFraction"`

	// timeoutFactor multiplies the idle timeout while demand is high (0.5 halves it).
	// +required
	TimeoutFactor Fraction `json:"timeoutFactor"`
}

// IdlePolicy says when a container counts as idle and what happens then.
type IdlePolicy struct {
	// timeout is how long a container may stay idle before it is stopped.
	// +optional
	Timeout *Duration `json:"timeout,omitempty"`

	// gpuUtilizationPercent: a sample is idle only while GPU utilisation is below this.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	GPUUtilizationPercent *int32 `json:"gpuUtilizationPercent,omitempty"`

	// cpuPercent: a sample is idle only while CPU use (100 = one core) is below this.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	CPUPercent *int32 `json:"cpuPercent,omitempty"`

	// networkBytesPerSecond: a sample is idle only while the network rate over the sample
	// window (never a cumulative counter) is below this.
	// +optional
	// +kubebuilder:validation:Minimum=0
	NetworkBytesPerSecond *int64 `json:"networkBytesPerSecond,omitempty"`

	// consecutiveSamples is how many idle samples in a row make a container idle.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	ConsecutiveSamples *int32 `json:"consecutiveSamples,omitempty"`

	// startupGrace is how long after start a container is never idle.
	// +optional
	StartupGrace *Duration `json:"startupGrace,omitempty"`

	// warnAtFractions are the fractions of the timeout at which the owner is warned.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +listType=atomic
	WarnAtFractions []Fraction `json:"warnAtFractions,omitempty"`

	// keepAlive lets the owner keep the container alive by touching a file.
	// +optional
	KeepAlive *KeepAlive `json:"keepAlive,omitempty"`

	// highDemand shortens the timeout while most GPUs are allocated.
	// +optional
	HighDemand *HighDemand `json:"highDemand,omitempty"`
}

// Notify says where warnings and notices go, besides Events and the audit log.
type Notify struct {
	// file is a path inside the container where notices are written.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:Pattern=`^/`
	File string `json:"file,omitempty"`

	// webhookURL receives a JSON POST for each notice. A loopback or link-local address
	// (localhost, 127.0.0.0/8, ::1, 169.254.0.0/16, fe80::/10) is refused unless gpuwarden
	// runs with --allow-local-webhooks: condition WebhookAllowed says which.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'https' || url(self).getScheme() == 'http')",message="webhookURL must be an http or https URL"
	WebhookURL string `json:"webhookURL,omitempty"`
}

// ContainerPolicySpec is what an admin declares about containers over time.
// +kubebuilder:validation:XValidation:rule="!has(self.unlimited) || (!('idleTimeout' in self.unlimited) || !has(self.idle) || !has(self.idle.timeout))",message="idleTimeout cannot be both set in idle.timeout and named in unlimited",fieldPath=".unlimited"
// +kubebuilder:validation:XValidation:rule="!has(self.unlimited) || !('maxRuntime' in self.unlimited) || !has(self.maxRuntime)",message="maxRuntime cannot be both set and named in unlimited",fieldPath=".unlimited"
// +kubebuilder:validation:XValidation:rule="!has(self.unlimited) || !('gpuHoldAfterStop' in self.unlimited) || !has(self.gpuHoldAfterStop)",message="gpuHoldAfterStop cannot be both set and named in unlimited",fieldPath=".unlimited"
// +kubebuilder:validation:XValidation:rule="!has(self.unlimited) || !('removeAfterStop' in self.unlimited) || !has(self.removeAfterStop)",message="removeAfterStop cannot be both set and named in unlimited",fieldPath=".unlimited"
// +kubebuilder:validation:XValidation:rule="!has(self.unlimited) || !('createdNeverStartedTimeout' in self.unlimited) || !has(self.createdNeverStartedTimeout)",message="createdNeverStartedTimeout cannot be both set and named in unlimited",fieldPath=".unlimited"
// +kubebuilder:validation:XValidation:rule="!has(self.unlimited) || !('releaseUnusedAfter' in self.unlimited) || !has(self.releaseUnusedAfter)",message="releaseUnusedAfter cannot be both set and named in unlimited",fieldPath=".unlimited"
type ContainerPolicySpec struct {
	// selector says which containers this policy applies to.
	// +optional
	Selector PolicySelector `json:"selector,omitempty"`

	// precedence orders merging: every policy that matches a container is merged field by
	// field in ascending precedence, so a higher precedence wins for the fields it sets.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	Precedence int32 `json:"precedence"`

	// mode is Enforce, DryRun (record "would stop", touch nothing) or NotifyOnly.
	// +optional
	Mode PolicyMode `json:"mode,omitempty"`

	// expires makes the policy a temporary exemption: after this time it no longer applies.
	// +optional
	Expires *metav1.Time `json:"expires,omitempty"`

	// idle says when a container is idle and how long it may stay so.
	// +optional
	Idle *IdlePolicy `json:"idle,omitempty"`

	// maxRuntime is how long a container may run in all.
	// +optional
	MaxRuntime *Duration `json:"maxRuntime,omitempty"`

	// runtimeWarnAtFractions are the fractions of maxRuntime at which the owner is warned.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +listType=atomic
	RuntimeWarnAtFractions []Fraction `json:"runtimeWarnAtFractions,omitempty"`

	// stopGracePeriod is the time between SIGTERM and SIGKILL when a container is stopped.
	// +optional
	StopGracePeriod *Duration `json:"stopGracePeriod,omitempty"`

	// checkpointTimeout bounds the checkpoint hook a container declares (its label
	// gpuwarden.io/checkpoint, a command run through the engine's exec before every stop
	// gpuwarden makes): the hook may run this long before the stop goes on without it; a
	// shorter gpuwarden.io/checkpoint-timeout on the container shortens it. Unset, 5m.
	// +optional
	CheckpointTimeout *Duration `json:"checkpointTimeout,omitempty"`

	// gpuHoldAfterStop is how long a stopped container keeps its GPUs.
	// +optional
	GPUHoldAfterStop *Duration `json:"gpuHoldAfterStop,omitempty"`

	// removeAfterStop is how long a stopped container is kept before it is removed
	// (containers labelled gpuwarden.io/protected are never removed).
	// +optional
	RemoveAfterStop *Duration `json:"removeAfterStop,omitempty"`

	// createdNeverStartedTimeout is how long a created container may wait to be started
	// before it is removed.
	// +optional
	CreatedNeverStartedTimeout *Duration `json:"createdNeverStartedTimeout,omitempty"`

	// releaseUnusedAfter is how long a user's own GPUAllocation (source Manual, made with
	// kubectl) may stay Bound with no container using it before its GPUs are given back;
	// unset, 1h. The allocation's user, groups and containerType select the policy. Once a
	// container uses the allocation, gpuHoldAfterStop applies instead.
	// +optional
	ReleaseUnusedAfter *Duration `json:"releaseUnusedAfter,omitempty"`

	// onUnallocatedGPU is what happens to a container found using GPUs outside gpuwarden that
	// cannot be given an allocation (over its owner's quota, or no known owner): Record
	// (the default) or Stop.
	// +optional
	OnUnallocatedGPU UnallocatedGPUAction `json:"onUnallocatedGPU,omitempty"`

	// onBudgetExhausted is what happens to the owner's running GPU containers once their
	// GPU-hour budget is used up: Continue (the default: only new requests are refused) or
	// Stop (each is stopped once, its checkpoint hook first, as mode allows).
	// +optional
	OnBudgetExhausted BudgetExhaustedAction `json:"onBudgetExhausted,omitempty"`

	// notify says where warnings and notices go.
	// +optional
	Notify *Notify `json:"notify,omitempty"`

	// queue bounds how a request waits for a GPU.
	// +optional
	Queue *QueuePolicy `json:"queue,omitempty"`

	// resources are what a container created through the Docker gateway gets where its
	// create asks for nothing, and the most it may ask for.
	// +optional
	Resources *ContainerResources `json:"resources,omitempty"`

	// unlimited names time limits that are explicitly lifted (distinct from unset, which inherits).
	// +optional
	// +kubebuilder:validation:MaxItems=6
	// +listType=set
	Unlimited []PolicyLimitName `json:"unlimited,omitempty"`
}

// QueuePolicy bounds how a request waits for a GPU.
type QueuePolicy struct {
	// maxWait is the longest a create through the Docker gateway may wait for a GPU, however
	// long its label gpuwarden.io/wait asks for (a create without the label waits the
	// server's --gateway-bind-wait, at most this).
	// +optional
	MaxWait *Duration `json:"maxWait,omitempty"`
}

// ContainerResources are a container's CPU, memory, /dev/shm and process limits. The
// defaults (cpus, memory, shmSize, pidsLimit) apply where a create sets none; the maxima
// refuse a create or update that asks for more, and apply as the limit where a create sets
// none and no default is given.
// +kubebuilder:validation:XValidation:rule="!has(self.cpus) || !has(self.maxCPUs) || quantity(string(self.cpus)).compareTo(quantity(string(self.maxCPUs))) <= 0",message="cpus is more than maxCPUs",fieldPath=".cpus"
// +kubebuilder:validation:XValidation:rule="!has(self.memory) || !has(self.maxMemory) || quantity(string(self.memory)).compareTo(quantity(string(self.maxMemory))) <= 0",message="memory is more than maxMemory",fieldPath=".memory"
type ContainerResources struct {
	// cpus is the CPU limit (docker --cpus, e.g. 8 or 500m) of a container whose create sets none.
	// +optional
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="cpus must be more than 0"
	CPUs *resource.Quantity `json:"cpus,omitempty"`

	// memory is the memory limit (docker --memory, e.g. 32Gi) of a container whose create sets none.
	// +optional
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('4Mi')) >= 0",message="memory must be at least 4Mi"
	Memory *resource.Quantity `json:"memory,omitempty"`

	// shmSize is the size of /dev/shm (docker --shm-size) where a create sets none; the
	// gateway's own default is 1Gi (Docker's 64Mi breaks data loaders).
	// +optional
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="shmSize must be more than 0"
	ShmSize *resource.Quantity `json:"shmSize,omitempty"`

	// pidsLimit bounds a container's processes (docker --pids-limit) where a create sets
	// none, and is the most a user's create or update may ask for; the gateway's own default
	// is 8192.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4194304
	PidsLimit *int64 `json:"pidsLimit,omitempty"`

	// maxCPUs is the most CPUs a container may ask for.
	// +optional
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="maxCPUs must be more than 0"
	MaxCPUs *resource.Quantity `json:"maxCPUs,omitempty"`

	// maxMemory is the most memory a container may ask for.
	// +optional
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('4Mi')) >= 0",message="maxMemory must be at least 4Mi"
	MaxMemory *resource.Quantity `json:"maxMemory,omitempty"`
}

// ContainerPolicyStatus is what the controllers observed about a ContainerPolicy.
type ContainerPolicyStatus struct {
	// observedGeneration is the spec generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Accepted, Active, WebhookAllowed, ExemptionsInForce.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// overriddenExemptions are the exemptions in spec.unlimited that policies merged after
	// this one cancel by setting the limit: the containers both policies select get that
	// policy's limit instead.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	OverriddenExemptions []OverriddenExemption `json:"overriddenExemptions,omitempty"`
}

// OverriddenExemption is one exemption of a ContainerPolicy that another policy, merged
// after it, cancels for the containers both select.
type OverriddenExemption struct {
	// limit is the exempted limit, as spec.unlimited names it.
	// +required
	Limit PolicyLimitName `json:"limit"`

	// policy is the ContainerPolicy that sets the limit again.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Policy string `json:"policy"`

	// precedence is that policy's precedence.
	// +optional
	Precedence int32 `json:"precedence"`

	// value is the limit that policy sets, e.g. 2h0m0s.
	// +required
	// +kubebuilder:validation:MaxLength=64
	Value string `json:"value"`

	// selector is that policy's selector: the containers this policy selects that it
	// selects too get value instead of the exemption.
	// +optional
	Selector PolicySelector `json:"selector,omitempty"`
}

// ContainerPolicy declares what happens to containers over time.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cpol,categories=gpuwarden
// +kubebuilder:printcolumn:name="Precedence",type=integer,JSONPath=`.spec.precedence`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Idle",type=string,JSONPath=`.spec.idle.timeout`
// +kubebuilder:printcolumn:name="Max-Runtime",type=string,JSONPath=`.spec.maxRuntime`
// +kubebuilder:printcolumn:name="Active",type=string,JSONPath=`.status.conditions[?(@.type=="Active")].status`
// +kubebuilder:printcolumn:name="Exemptions",type=string,JSONPath=`.status.conditions[?(@.type=="ExemptionsInForce")].reason`,priority=1
// +kubebuilder:printcolumn:name="Expires",type=date,JSONPath=`.spec.expires`,priority=1
// +kubebuilder:printcolumn:name="Types",type=string,JSONPath=`.spec.selector.containerTypes`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ContainerPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired policy.
	// +required
	Spec ContainerPolicySpec `json:"spec"`

	// status is observed by the controllers.
	// +optional
	Status ContainerPolicyStatus `json:"status,omitempty"`
}

// ContainerPolicyList is a list of ContainerPolicies.
// +kubebuilder:object:root=true
type ContainerPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ContainerPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ContainerPolicy{}, &ContainerPolicyList{})
}

package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MIGMode says whether a GPU is partitioned into MIG instances.
// +kubebuilder:validation:Enum=Enabled;Disabled;Unsupported
type MIGMode string

// MIG modes.
const (
	MIGEnabled     MIGMode = "Enabled"
	MIGDisabled    MIGMode = "Disabled"
	MIGUnsupported MIGMode = "Unsupported"
)

// GPUHealth says whether a GPU can be given out.
// +kubebuilder:validation:Enum=Healthy;Unhealthy;Lost;Unknown
type GPUHealth string

// GPU health values.
const (
	HealthHealthy   GPUHealth = "Healthy"
	HealthUnhealthy GPUHealth = "Unhealthy"
	HealthLost      GPUHealth = "Lost"
	HealthUnknown   GPUHealth = "Unknown"
)

// Condition types and reasons of a GPU.
const (
	// ConditionDockerReachable is True while the node's controller sees the Docker engine;
	// while False, container state on the node is not observed and nothing is released.
	ConditionDockerReachable = "DockerReachable"

	// ReasonDockerConnected: the events stream is open and the containers listed.
	ReasonDockerConnected = "Connected"
	// ReasonDockerUnreachable: the engine cannot be listed or its events stream broke.
	ReasonDockerUnreachable = "Unreachable"
)

// GPUSpec identifies a physical GPU on a node.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable"
type GPUSpec struct {
	// nodeName is the node the GPU is in.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	NodeName string `json:"nodeName"`

	// index is the GPU's NVML index on the node.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1023
	Index int32 `json:"index"`
}

// MIGInstance is one MIG slice of a GPU.
type MIGInstance struct {
	// uuid is the slice's UUID (MIG-…).
	// +required
	// +kubebuilder:validation:MaxLength=128
	UUID string `json:"uuid"`

	// profile is the MIG profile, e.g. 3g.40gb.
	// +required
	// +kubebuilder:validation:MaxLength=32
	Profile string `json:"profile"`

	// gpuInstanceID is NVML's GPU instance ID.
	// +optional
	GPUInstanceID int32 `json:"gpuInstanceID,omitempty"`

	// computeInstanceID is NVML's compute instance ID.
	// +optional
	ComputeInstanceID int32 `json:"computeInstanceID,omitempty"`

	// weight is the slice's share of the GPU's compute slices (3/7 for 3g on a 7-slice GPU).
	// +required
	Weight resource.Quantity `json:"weight"`

	// holder is the GPUAllocation that holds the slice, if any.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Holder string `json:"holder,omitempty"`
}

// GPUStatus is what NVML reports about a GPU (slow-moving values only; live numbers are metrics).
type GPUStatus struct {
	// uuid is the GPU's UUID (GPU-…).
	// +optional
	// +kubebuilder:validation:MaxLength=128
	UUID string `json:"uuid,omitempty"`

	// model is the product name, e.g. NVIDIA A100-SXM4-40GB.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Model string `json:"model,omitempty"`

	// memory is the GPU's total memory.
	// +optional
	Memory *resource.Quantity `json:"memory,omitempty"`

	// migMode is Enabled, Disabled or Unsupported.
	// +optional
	MIGMode MIGMode `json:"migMode,omitempty"`

	// migInstances are the GPU's MIG slices when MIG is enabled.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	MIGInstances []MIGInstance `json:"migInstances,omitempty"`

	// health is Healthy, Unhealthy (XID or NVML errors), Lost (fell off the bus) or Unknown.
	// +optional
	Health GPUHealth `json:"health,omitempty"`

	// healthMessage says why a GPU is not Healthy.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	HealthMessage string `json:"healthMessage,omitempty"`

	// lastXID is the last XID error seen.
	// +optional
	LastXID int64 `json:"lastXID,omitempty"`

	// holder is the GPUAllocation holding the whole GPU, or a comma-separated list of those holding its slices.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Holder string `json:"holder,omitempty"`

	// holderUsers are the users holding the GPU or its slices, sorted and each named once:
	// what `kubectl get gpus` shows (holder names the allocations).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	HolderUsers string `json:"holderUsers,omitempty"`

	// utilizationPercent is a slow-moving average of GPU utilisation.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	UtilizationPercent int32 `json:"utilizationPercent,omitempty"`

	// lastUpdateTime is when the status was last written.
	// +optional
	LastUpdateTime *metav1.Time `json:"lastUpdateTime,omitempty"`

	// conditions of the GPU.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// GPU is one physical GPU on one node, as the inventory controller sees it through NVML.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=gpu,categories=gpuwarden
// +kubebuilder:selectablefield:JSONPath=`.spec.nodeName`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.nodeName`
// +kubebuilder:printcolumn:name="Index",type=integer,JSONPath=`.spec.index`
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.status.model`
// +kubebuilder:printcolumn:name="Memory",type=string,JSONPath=`.status.memory`
// +kubebuilder:printcolumn:name="MIG",type=string,JSONPath=`.status.migMode`
// +kubebuilder:printcolumn:name="Health",type=string,JSONPath=`.status.health`
// +kubebuilder:printcolumn:name="User",type=string,JSONPath=`.status.holderUsers`
// +kubebuilder:printcolumn:name="Util",type=integer,JSONPath=`.status.utilizationPercent`
// +kubebuilder:printcolumn:name="Holder",type=string,JSONPath=`.status.holder`,priority=1
// +kubebuilder:printcolumn:name="UUID",type=string,JSONPath=`.status.uuid`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GPU struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec identifies the GPU.
	// +required
	Spec GPUSpec `json:"spec"`

	// status is what NVML reports.
	// +optional
	Status GPUStatus `json:"status,omitempty"`
}

// GPUList is a list of GPUs.
// +kubebuilder:object:root=true
type GPUList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GPU `json:"items"`
}

func init() {
	SchemeBuilder.Register(&GPU{}, &GPUList{})
}

package controllers

// Every Event reason the controllers record, in one place; with the audit event types
// (internal/audit) and the allocation reasons (api/v1alpha1) they are what people filter on.

// Event reasons of GPUAllocations besides the rejection reasons.
const (
	EventBound    = "Bound"
	EventWaiting  = "Waiting"
	EventReleased = "Released"
)

// Event reasons of the Docker connection, on the node's GPUs.
const (
	EventDockerUnreachable = "DockerUnreachable"
	EventDockerConnected   = "DockerConnected"
)

// Event reasons of unmanaged GPU use, on the GPU it happens on.
const (
	EventUnmanagedGPUUse      = "UnmanagedGPUUse"
	EventUnmanagedGPUUseEnded = "UnmanagedGPUUseEnded"
)

// Event reasons of the container controller.
const (
	EventAttached       = "Attached"
	EventAdopted        = "Adopted"
	EventUnallocatedGPU = "UnallocatedGPU"
	EventRemoved        = "ContainerRemoved"
	EventStopped        = "ContainerStopped"
	EventWouldAct       = "WouldAct"
	EventReleaseAsked   = "ReleaseRequested"

	// ReasonOwnerUnknown: no label names the owner of an adopted container.
	ReasonOwnerUnknown = "OwnerUnknown"
	// ReasonContainerRemoved is the release reason of an allocation whose container is gone.
	ReasonContainerRemoved = "container removed"
)

// ReasonOverAllocation: a container attached to an allocation uses devices it does not give.
const ReasonOverAllocation = "OverAllocation"

// Event reasons of idle and runtime reclaim, on the allocation.
const (
	EventIdleWarning    = "IdleWarning"
	EventIdleNotice     = "IdleNotice"
	EventIdleStopped    = "IdleStopped"
	EventRuntimeWarning = "RuntimeWarning"
	EventRuntimeStopped = "RuntimeStopped"
)

// ReasonNeverCreated is the release reason of a gateway allocation whose container was
// never created.
const ReasonNeverCreated = "its container was never created (the create through the gateway did not complete)"

// Package reasons holds every Event reason the controllers record and the release reasons
// they write on an allocation; with the audit event types (internal/audit) and the
// allocation reasons (api/v1alpha1) they are what people filter on.
package reasons

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
	// EventNotAttached: an allocation names a container whose owner is not the allocation's user.
	EventNotAttached = "NotAttached"
	// EventRemovalScheduled, EventReleaseScheduled: a stopped (or never started) container
	// will be removed, or its GPUs given back, at the time the Event says; its owner is told.
	EventRemovalScheduled = "RemovalScheduled"
	EventReleaseScheduled = "ReleaseScheduled"
	// EventReleasedUnused: a user's own allocation no container used within
	// releaseUnusedAfter was given back (announced before as EventReleaseScheduled).
	EventReleasedUnused = "ReleasedUnused"
)

// Event reasons of idle and runtime reclaim, on the allocation.
const (
	EventIdleWarning    = "IdleWarning"
	EventIdleNotice     = "IdleNotice"
	EventIdleStopped    = "IdleStopped"
	EventRuntimeWarning = "RuntimeWarning"
	EventRuntimeStopped = "RuntimeStopped"
	// EventGiveBack: borrowed GPUs are asked back for a request within its quota;
	// EventGivenBack: the container was stopped (its checkpoint hook first) and they went.
	EventGiveBack  = "GiveBack"
	EventGivenBack = "GivenBack"
	// EventBudgetStopped: stopped because its owner's GPU-hour budget is used up.
	EventBudgetStopped = "BudgetStopped"
	// EventReservationStopped: stopped (its checkpoint hook first) at the start of a
	// reservation of its devices that stops other work (displace: Stop).
	EventReservationStopped = "ReservationStopped"
	// EventDisplaced: a reservation takes the allocation's devices at its start, which
	// its time crosses: it is stopped then.
	EventDisplaced = "Displaced"
)

// EventExemptionOverridden is the reason of the Event, on a ContainerPolicy, that says a
// policy merged after it sets a limit it lifts (its ExemptionsInForce condition turned False).
const EventExemptionOverridden = "ExemptionOverridden"

// EventAuditLogWriteFailed is the reason of the Event, on the node, that says the audit log
// cannot be written (a full disk): decisions go on, their records are lost until it recovers.
const EventAuditLogWriteFailed = "AuditLogWriteFailed"

// EventAccessDenied is the reason of the Event a refused gateway request raises, on the node.
const EventAccessDenied = "AccessDenied"

// Why a container uses a GPU without an allocation that gives it: the detail of an
// EventUnallocatedGPU and the reason label of gpuwarden_unallocated_gpu_containers_total,
// beside the allocation rejection reasons (api/v1alpha1).
const (
	// OwnerUnknown: no label names the owner of an adopted container.
	OwnerUnknown = "OwnerUnknown"
	// OverAllocation: a container attached to an allocation uses devices it does not give.
	OverAllocation = "OverAllocation"
	// DeviceHeld: a container started (outside the gateway: straight at the engine, or by
	// its restart policy) on devices another allocation holds.
	DeviceHeld = "DeviceHeld"
)

// MountMoved is the reason code of a security stop: a container's bind mount source
// resolves elsewhere than when it was created (a directory replaced by a symbolic link since).
const MountMoved = "mount_moved"

// Release reasons: the sentence an allocation's release annotation carries, shown in its
// status message (prose, unlike the Event reasons above).
const (
	// ReleaseContainerRemoved: the allocation's container is gone.
	ReleaseContainerRemoved = "container removed"
	// ReleaseNeverCreated: a gateway allocation whose container was never created.
	ReleaseNeverCreated = "its container was never created (the create through the gateway did not complete)"
)

package audit

import "time"

// Event types. Constructors below build each one, so call sites cannot misspell a field.
const (
	TypeContainerCreate = "container.create"
	TypeContainerStart  = "container.start"
	TypeContainerStop   = "container.stop"
	TypeContainerDie    = "container.die"
	TypeContainerRemove = "container.remove"
	// TypeContainerCheckpoint is a container's checkpoint hook, run before a stop gpuwarden
	// made: its start, end, exit code, duration and the tail of its output.
	TypeContainerCheckpoint = "container.checkpoint"

	TypeGPUAllocate = "gpu.allocate"
	TypeGPUReject   = "gpu.reject"
	TypeGPURelease  = "gpu.release"
	// TypeGPUUsage is an allocation's GPU use over a stretch of time (at most an hour): what
	// `gpuwarden report` counts as used and idle, with the peaks its right-size advice
	// judges by (Usage).
	TypeGPUUsage = "gpu.usage"

	TypeAuthDenied = "auth.denied"

	TypeLifecycleIdleWarning    = "lifecycle.idle_warning"
	TypeLifecycleIdleStop       = "lifecycle.idle_stop"
	TypeLifecycleRuntimeWarning = "lifecycle.runtime_warning"
	TypeLifecycleRuntimeStop    = "lifecycle.runtime_stop"
	TypeLifecycleRemove         = "lifecycle.remove"
	// TypeLifecycleGiveBack: a container holding borrowed GPUs was stopped (its checkpoint
	// hook first) and its GPUs given back for a request within its user's quota.
	TypeLifecycleGiveBack = "lifecycle.give_back"
	// TypeLifecycleBudgetStop: a running container stopped because its owner's GPU-hour
	// budget is used up and its policy says onBudgetExhausted: Stop.
	TypeLifecycleBudgetStop = "lifecycle.budget_stop"
	// TypeLifecycleReservationStop: a container was stopped (its checkpoint hook first) and
	// its allocation released at the start of a reservation of its devices (displace: Stop).
	TypeLifecycleReservationStop = "lifecycle.reservation_stop"
	// A DryRun or NotifyOnly policy's record of what it kept gpuwarden from doing.
	TypeLifecycleWouldRemove  = "lifecycle.would_remove"
	TypeLifecycleWouldRelease = "lifecycle.would_release"
	TypeLifecycleWouldStop    = "lifecycle.would_stop"

	TypeDetectionUnmanagedContainer       = "detection.unmanaged_container"
	TypeDetectionUnmanagedProcess         = "detection.unmanaged_process"
	TypeDetectionUnmanagedContainerExited = "detection.unmanaged_container_exited"
	TypeDetectionUnmanagedProcessExited   = "detection.unmanaged_process_exited"

	TypeQuotaCreate  = "quota.create"
	TypeQuotaUpdate  = "quota.update"
	TypeQuotaDelete  = "quota.delete"
	TypePolicyCreate = "policy.create"
	TypePolicyUpdate = "policy.update"
	TypePolicyDelete = "policy.delete"

	// TypeAuditDropped records how many events were lost when the writer's memory bound was hit.
	TypeAuditDropped = "audit.dropped"

	// A GPUReservation's steps: accepted (devices chosen), rejected (why), active (its
	// window began), ended (its last window ended), released_unused (its devices went back
	// to everyone for the rest of a window its users did not use) and displaced (a holder
	// crossing its start is told it will be stopped then).
	TypeReservationAccepted       = "reservation.accepted"
	TypeReservationRejected       = "reservation.rejected"
	TypeReservationActive         = "reservation.active"
	TypeReservationEnded          = "reservation.ended"
	TypeReservationReleasedUnused = "reservation.released_unused"
	TypeReservationDisplaced      = "reservation.displaced"
)

// Container identifies a container in an event.
type Container struct {
	ID    string
	Name  string
	Image string
	// Type is the container type: managed, devcontainer, compose, docker, notebook, adopted, unknown.
	Type string
	// Allocation is the allocation the container was made for (the gateway's label), on
	// container records: what ties a container to the gpu.allocate made before it existed.
	Allocation string
}

func (c Container) details(d map[string]any) map[string]any {
	put(d, "container", c.Name)
	put(d, "container_id", c.ID)
	put(d, "image", c.Image)
	put(d, "container_type", c.Type)
	put(d, "allocation", c.Allocation)
	return d
}

func put(d map[string]any, k string, v any) {
	switch v := v.(type) {
	case string:
		if v == "" {
			return
		}
	case []string:
		if len(v) == 0 {
			return
		}
	}
	d[k] = v
}

// ContainerAction is what happened to a container.
type ContainerAction string

// Container actions, as Docker reports them.
const (
	ContainerCreate ContainerAction = TypeContainerCreate
	ContainerStart  ContainerAction = TypeContainerStart
	ContainerStop   ContainerAction = TypeContainerStop
	ContainerDie    ContainerAction = TypeContainerDie
	ContainerRemove ContainerAction = TypeContainerRemove
)

// ContainerEvent records a container's create, start, stop, die or remove; user is the
// owner ("" when unknown), reason says why gpuwarden acted, if it did.
func ContainerEvent(action ContainerAction, user string, c Container, reason string) Event {
	d := c.details(map[string]any{})
	put(d, "reason", reason)
	return Event{Type: string(action), User: user, Details: d}
}

// Checkpoint is one run of a container's checkpoint hook.
type Checkpoint struct {
	Command    string
	Start, End time.Time
	// ExitCode is the hook's exit status; -1 when it did not end (TimedOut) or could not
	// be started (Error says why).
	ExitCode int
	TimedOut bool
	Error    string
	// Output is the tail of what it wrote.
	Output string
	// Stop is why the stop it came before was made ("idle: …").
	Stop string
}

// Outcome is how the hook ended, as the metric's label: ok, failed, timeout or error.
func (k Checkpoint) Outcome() string {
	switch {
	case k.Error != "":
		return "error"
	case k.TimedOut:
		return "timeout"
	case k.ExitCode != 0:
		return "failed"
	}
	return "ok"
}

// ContainerCheckpoint records a checkpoint hook run before a stop gpuwarden made.
func ContainerCheckpoint(user string, c Container, policy string, k Checkpoint) Event {
	d := c.details(map[string]any{})
	put(d, "policy", policy)
	put(d, "command", k.Command)
	d["started"] = k.Start.UTC().Format(time.RFC3339Nano)
	d["ended"] = k.End.UTC().Format(time.RFC3339Nano)
	d["duration_seconds"] = k.End.Sub(k.Start).Round(time.Millisecond).Seconds()
	d["exit_code"] = k.ExitCode
	if k.TimedOut {
		d["timed_out"] = true
	}
	put(d, "error", k.Error)
	put(d, "output", k.Output)
	put(d, "reason", k.Stop)
	return Event{Type: TypeContainerCheckpoint, User: user, Details: d}
}

// Allocation identifies a GPUAllocation in an event.
type Allocation struct {
	Name string
	// Devices are the bound device UUIDs.
	Devices []string
	// GPUEquivalents is what the devices cost, e.g. "0.428571".
	GPUEquivalents string
	Container      Container
	// Wait is how long the request waited before it was bound (gpu.allocate).
	Wait time.Duration
	// MIGProfile is the MIG profile of its devices when they are MIG slices (e.g.
	// "3g.40gb"), "" for whole GPUs: mig_profile, on gpu.usage records.
	MIGProfile string
}

func (a Allocation) details() map[string]any {
	d := a.Container.details(map[string]any{})
	put(d, "allocation", a.Name)
	put(d, "devices", a.Devices)
	put(d, "gpu_equivalents", a.GPUEquivalents)
	put(d, "mig_profile", a.MIGProfile)
	if a.Wait > 0 {
		d["wait_seconds"] = a.Wait.Round(time.Millisecond).Seconds()
	}
	return d
}

// GPUAllocate records devices bound to a user.
func GPUAllocate(user string, a Allocation) Event {
	return Event{Type: TypeGPUAllocate, User: user, Details: a.details()}
}

// Usage is an allocation's GPU use over Window, in gpu-equivalent seconds.
type Usage struct {
	Window time.Duration
	// Used is utilisation × gpu-equivalents over the time NVML gave a utilisation
	// (UtilizationKnown of the Window); MIG slices have none.
	Used, UtilizationKnown time.Duration
	// Idle is gpu-equivalents × the time the lifecycle rules judged the container idle.
	Idle time.Duration

	// The peaks over the samples of the Window, which `gpuwarden report` judges the right
	// size of a run by. Each is of one device, never a sum over the allocation's devices.
	//
	// MemorySampled says NVML read the memory of some device in some sample; without it the
	// record has none of peak_memory_bytes, memory_total_bytes and busy_devices.
	MemorySampled bool
	// PeakMemoryBytes is the most memory used on any one of its devices in any sample
	// (peak_memory_bytes). On a whole GPU that others' processes use too, theirs is in it.
	PeakMemoryBytes uint64
	// MemoryTotalBytes is the memory size of its largest device (memory_total_bytes): a
	// MIG slice's own, a whole GPU's.
	MemoryTotalBytes uint64
	// PeakUtilization is the utilisation of its busiest device at its busiest sample, in
	// percent (peak_utilization_percent), the container's own share on a GPU others use
	// too; only when HasPeakUtilization: NVML gives none on MIG slices, and the record
	// then has no peak_utilization_percent.
	PeakUtilization    float64
	HasPeakUtilization bool
	// BusyDevices is how many of its devices showed any use in some sample of the Window
	// (busy_devices): a utilisation above 0, or more than BusyMemoryFloor of memory used.
	BusyDevices int
	// GPUModel is the physical GPU's model, the parent's for a MIG slice (gpu_model, e.g.
	// "NVIDIA H100 80GB HBM3"): whose MIG profiles a whole-GPU run could have had.
	GPUModel string
}

// BusyMemoryFloor is the GPU memory a device may use and still count as unused in
// Usage.BusyDevices: a CUDA context alone takes a few hundred MiB on every device a
// process merely opens.
const BusyMemoryFloor = 256 << 20

// GPUUsage records an allocation's use of its GPUs over a stretch of time.
func GPUUsage(user string, a Allocation, u Usage) Event {
	d := a.details()
	d["window_seconds"] = u.Window.Round(time.Millisecond).Seconds()
	d["used_gpu_seconds"] = u.Used.Round(time.Millisecond).Seconds()
	d["utilization_known_seconds"] = u.UtilizationKnown.Round(time.Millisecond).Seconds()
	d["idle_gpu_seconds"] = u.Idle.Round(time.Millisecond).Seconds()
	if u.MemorySampled {
		d["peak_memory_bytes"] = u.PeakMemoryBytes
		d["memory_total_bytes"] = u.MemoryTotalBytes
		d["busy_devices"] = u.BusyDevices
	}
	if u.HasPeakUtilization {
		d["peak_utilization_percent"] = u.PeakUtilization
	}
	put(d, "gpu_model", u.GPUModel)
	return Event{Type: TypeGPUUsage, User: user, Details: d}
}

// GPUReject records a refused allocation with its reason (QuotaExceeded, …) and message.
func GPUReject(user string, a Allocation, reason, message string) Event {
	d := a.details()
	put(d, "reason", reason)
	put(d, "message", message)
	return Event{Type: TypeGPUReject, User: user, Details: d}
}

// GPURelease records devices given back and why (container removed, hold expired, …).
func GPURelease(user string, a Allocation, reason string) Event {
	d := a.details()
	put(d, "reason", reason)
	return Event{Type: TypeGPURelease, User: user, Details: d}
}

// AuthDenied records an operation refused to user, e.g. on another user's container.
func AuthDenied(user, operation string, c Container, reason string) Event {
	d := c.details(map[string]any{})
	put(d, "operation", operation)
	put(d, "reason", reason)
	return Event{Type: TypeAuthDenied, User: user, Details: d}
}

// AuthDeniedOwner is AuthDenied of an object another user owns: the owner is a detail of
// its own (owner), for admins; a user reading their own records is not told it.
func AuthDeniedOwner(user, operation string, c Container, owner, reason string) Event {
	e := AuthDenied(user, operation, c, reason)
	put(e.Details, "owner", owner)
	return e
}

// ForCaller is the record as a user who is not an admin may read it: without the owner of
// another user's object they were refused.
func (e Event) ForCaller() Event {
	if _, ok := e.Details["owner"]; !ok || e.Type != TypeAuthDenied {
		return e
	}
	d := make(map[string]any, len(e.Details))
	for k, v := range e.Details {
		if k != "owner" {
			d[k] = v
		}
	}
	e.Details = d
	return e
}

// LifecycleAction is what the lifecycle controller did or warned about.
type LifecycleAction string

// Lifecycle actions.
const (
	IdleWarning     LifecycleAction = TypeLifecycleIdleWarning
	IdleStop        LifecycleAction = TypeLifecycleIdleStop
	RuntimeWarning  LifecycleAction = TypeLifecycleRuntimeWarning
	RuntimeStop     LifecycleAction = TypeLifecycleRuntimeStop
	Remove          LifecycleAction = TypeLifecycleRemove
	GiveBack        LifecycleAction = TypeLifecycleGiveBack
	BudgetStop      LifecycleAction = TypeLifecycleBudgetStop
	ReservationStop LifecycleAction = TypeLifecycleReservationStop
	WouldRemove     LifecycleAction = TypeLifecycleWouldRemove
	WouldRelease    LifecycleAction = TypeLifecycleWouldRelease
	WouldStop       LifecycleAction = TypeLifecycleWouldStop
)

// Lifecycle records a warning or an action on a container; policy is the ContainerPolicy
// that called for it, mode its mode (Enforce, DryRun, NotifyOnly).
func Lifecycle(action LifecycleAction, user string, c Container, policy, mode, reason string) Event {
	d := c.details(map[string]any{})
	put(d, "policy", policy)
	put(d, "mode", mode)
	put(d, "reason", reason)
	return Event{Type: string(action), User: user, Details: d}
}

// Unmanaged describes GPU use outside any allocation.
type Unmanaged struct {
	PID       int
	Command   string
	GPU       string // device UUID
	MemoryMiB int64
	Container Container
}

// DetectionKind is what unmanaged GPU use was found, or that it ended.
type DetectionKind string

// Detection kinds.
const (
	UnmanagedContainer       DetectionKind = TypeDetectionUnmanagedContainer
	UnmanagedProcess         DetectionKind = TypeDetectionUnmanagedProcess
	UnmanagedContainerExited DetectionKind = TypeDetectionUnmanagedContainerExited
	UnmanagedProcessExited   DetectionKind = TypeDetectionUnmanagedProcessExited
)

// Detection records GPU use that belongs to no allocation, or its end.
func Detection(kind DetectionKind, user string, u Unmanaged) Event {
	d := u.Container.details(map[string]any{})
	if u.PID > 0 {
		d["pid"] = u.PID
	}
	put(d, "command", u.Command)
	put(d, "gpu", u.GPU)
	if u.MemoryMiB > 0 {
		d["memory_mib"] = u.MemoryMiB
	}
	return Event{Type: string(kind), User: user, Details: d}
}

// AdminAction is a change an admin made to a quota or policy.
type AdminAction string

// Admin actions.
const (
	QuotaCreate  AdminAction = TypeQuotaCreate
	QuotaUpdate  AdminAction = TypeQuotaUpdate
	QuotaDelete  AdminAction = TypeQuotaDelete
	PolicyCreate AdminAction = TypePolicyCreate
	PolicyUpdate AdminAction = TypePolicyUpdate
	PolicyDelete AdminAction = TypePolicyDelete
)

// AdminChange records a change to a GPUQuota or ContainerPolicy: its name, new generation
// and the field manager that wrote it (kubectl-client-side-apply, helm, …). The API server
// keeps no user name in the object, so the event carries none.
func AdminChange(action AdminAction, name string, generation int64, manager string) Event {
	d := map[string]any{"name": name}
	if generation > 0 {
		d["generation"] = generation
	}
	put(d, "manager", manager)
	return Event{Type: string(action), Details: d}
}

// Reservation records a GPUReservation's step (a TypeReservation… type) with its devices,
// window and for whom; user is whom it concerns (the booker, or the displaced holder).
func Reservation(eventType, user, name string, details map[string]any) Event {
	d := map[string]any{"reservation": name}
	for k, v := range details {
		put(d, k, v)
	}
	return Event{Type: eventType, User: user, Details: d}
}

func droppedEvent(n uint64) Event {
	return Event{Type: TypeAuditDropped, Details: map[string]any{"dropped": n,
		"reason": "the audit writer's memory bound was reached while the log could not be written"}}
}

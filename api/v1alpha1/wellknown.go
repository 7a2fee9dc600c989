package v1alpha1

// Labels and annotations gpuwarden sets or reads, and the values they share. Declared once
// here; every package (and the CLI's messages) uses these names.
const (
	// LabelNode names the GPU node of a GPU object or an adopted allocation.
	LabelNode = "gpuwarden.io/node"
	// LabelUser on a container names its owner. On a GPUAllocation it is spec.user, kept so
	// by the allocation controller (absent where the user is no valid label value), so that
	// `kubectl get ga -l gpuwarden.io/user=alice` lists alice's allocations. Whoever creates
	// an allocation sets it (the gateway, adoption): the controller then has nothing to write.
	LabelUser = "gpuwarden.io/user"
	// LabelPhase was status.phase as a label, written on every phase change (a write per
	// bind and per release). The field itself is selectable now (`kubectl get ga
	// --field-selector status.phase!=Released`), and the allocation controller removes this
	// label where an earlier version left it: a label that no longer follows the phase
	// would lie.
	LabelPhase = "gpuwarden.io/phase"
	// LabelAllocation on a container names the GPUAllocation it uses (a claim, checked).
	LabelAllocation = "gpuwarden.io/allocation"
	// LabelContainerType on a container names its type (a ContainerType).
	LabelContainerType = "gpuwarden.io/type"
	// LabelManaged on a container says gpuwarden made it.
	LabelManaged = "gpuwarden.io/managed"
	// LabelProtected on a container ("true") keeps it from ever being removed.
	LabelProtected = "gpuwarden.io/protected"
	// LabelTypeClaimed on a container ("true") says its type (LabelContainerType) comes
	// from labels its owner chose (devcontainer.local_folder, com.docker.compose.project)
	// on a create through the Docker gateway: a ContainerPolicy takes that type at its word
	// only where its selector.labels name this label; every other policy sees the
	// container as docker, the type of a create that claims none.
	LabelTypeClaimed = "gpuwarden.io/type-claimed"
	// LabelMIGProfile on a create through the Docker gateway asks for one free MIG slice of
	// the profile it names (`docker run --label gpuwarden.io/mig-profile=1g.10gb`), as
	// --gpus '"device=1g.10gb"' does; the gateway keeps it on the container, checked.
	LabelMIGProfile = "gpuwarden.io/mig-profile"
	// LabelWait on a create through the Docker gateway says how long the create may wait for
	// its GPUs (`docker run --label gpuwarden.io/wait=8h`), at most the ContainerPolicy's
	// queue.maxWait; the gateway keeps on the container the wait it granted.
	LabelWait = "gpuwarden.io/wait"
	// LabelCheckpoint on a container is a command (run with /bin/sh -c, as the container's
	// own user, through the engine's exec) that gpuwarden runs before every stop it makes,
	// so that the work can save itself: `docker run --label gpuwarden.io/checkpoint="python
	// save.py"`. LabelCheckpointTimeout asks for less time than the policy's
	// checkpointTimeout (a duration such as 2m).
	LabelCheckpoint        = "gpuwarden.io/checkpoint"
	LabelCheckpointTimeout = "gpuwarden.io/checkpoint-timeout"

	// AnnotationRelease on an allocation asks for its devices back; its value is the reason.
	AnnotationRelease = "gpuwarden.io/release"
	// AnnotationGiveBack on a borrowed allocation asks its node to give its GPUs back for a
	// request within its user's quota (the value says which and why): the owner is told,
	// the container's checkpoint hook runs, it is stopped with its grace period, and the
	// allocation is released.
	AnnotationGiveBack = "gpuwarden.io/give-back"
	// AnnotationAdoptedForStart on an adopted allocation records the container start it
	// was made for: one adoption per start.
	AnnotationAdoptedForStart = "gpuwarden.io/adopted-for-start"
	// AnnotationSignature on an allocation gpuwarden made itself proves it did.
	AnnotationSignature = "gpuwarden.io/signature"
	// AnnotationWaitUntil on a gateway allocation is when the create that waits for it gives
	// up (RFC 3339); AnnotationWaiter names the gateway process that waits (one per
	// process): a waiting allocation of a process gone, or past its time, has no one waiting.
	AnnotationWaitUntil = "gpuwarden.io/wait-until"
	AnnotationWaiter    = "gpuwarden.io/waiter"

	// UnknownUser owns what no label names an owner of.
	UnknownUser = "unknown"
)

package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/provenance"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

const (
	// IndexContainerID indexes GPUAllocations by the container IDs they name.
	IndexContainerID = "gpuwarden.io/containerID"
	// DefaultStopGracePeriod is the SIGTERM → SIGKILL wait when no policy sets one.
	DefaultStopGracePeriod = 60 * time.Second
)

// ContainerReconciler ties the node's containers to GPUAllocations: it attaches a container
// to the allocation its label names, releases an allocation at once when its container is
// removed and after gpuHoldAfterStop when it stays stopped, removes containers never started
// or stopped too long, and adopts GPU containers made outside gpuwarden. It acts only on a
// synced ContainerStore: a Docker outage releases nothing.
type ContainerReconciler struct {
	Client client.Client
	// Reader reads the signing key beside the ledger from the API server itself.
	Reader client.Reader
	// LedgerNamespace holds the allocation ledger (kube-system when empty).
	LedgerNamespace string
	Engine          docker.Engine
	Store           *ContainerStore
	NodeName        string
	Groups          resolve.Groups
	Clock           clock.PassiveClock
	Recorder        recorder.EventRecorder
	Audit           audit.Logger
	// Owners says who owns a container (shared with the watcher and the scanner).
	Owners *Owners
	// Changed is the ContainerWatcher's channel of containers to look at.
	Changed <-chan event.GenericEvent

	mu sync.Mutex
	// reported remembers what was said once and should not be said on every pass
	// (dry-run actions, unallocated-GPU reports), by container and what.
	reported map[string]bool
}

// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuallocations,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuallocations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=gpuwarden.io,resources=containerpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpus/status,verbs=get;update;patch

// Reconcile looks at one container, named by its ID.
func (r *ContainerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	id := req.Name
	c, ok, synced := r.Store.Get(id)
	if !synced {
		return ctrl.Result{}, nil // the watcher hands every container on again once it is back
	}
	if !ok {
		return ctrl.Result{}, r.gone(ctx, id)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("container", c.Name, "id", id[:min(12, len(id))]))
	owner := r.Owners.Of(c)
	allocs, err := r.attached(ctx, c, owner)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.carryAdoptionToFirstStart(ctx, c, allocs); err != nil {
		return ctrl.Result{}, err
	}
	live := liveAllocation(allocs)
	if live != nil {
		if err := r.attach(ctx, c, live); err != nil {
			return ctrl.Result{}, err
		}
	} else if r.wantsAdoption(c, allocs) {
		return ctrl.Result{}, r.adopt(ctx, c, owner, allocs)
	}
	policy, err := r.policy(ctx, c, owner)
	if err != nil {
		return ctrl.Result{}, err
	}
	if live != nil {
		if err := r.checkWithinAllocation(ctx, c, owner, live, policy); err != nil {
			return ctrl.Result{}, err
		}
	}
	if a := adoptedFor(allocs, c.ID); a != nil && c.State == docker.StateRunning {
		if err := r.checkAdopted(ctx, c, a, policy); err != nil {
			return ctrl.Result{}, err
		}
	}
	if c.State == docker.StateRunning || c.State == docker.StateRestarting || c.State == docker.StatePaused {
		return ctrl.Result{}, nil
	}
	bound := live != nil && live.Status.Phase == gpuwardenv1alpha1.PhaseBound && live.Annotations[gpuwardenv1alpha1.AnnotationRelease] == ""
	due, next := lifecycle.NotRunning(lifecycle.Container{NeverStarted: c.NeverStarted(), Stopped: c.State.Stopped(),
		Created: c.Created, FinishedAt: c.FinishedAt, HoldsGPUs: bound, Protected: labels.IsProtected(c.Labels)}, policy, r.Clock.Now())
	for _, d := range due {
		if err := r.act(ctx, c, owner, live, policy, d); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// gone releases what a removed container held.
func (r *ContainerReconciler) gone(ctx context.Context, id string) error {
	last, _ := r.Store.Gone(id)
	last.ID = id
	owner := r.Owners.Of(last)
	items, err := r.attached(ctx, last, owner)
	if err != nil {
		return err
	}
	for i := range items {
		a := &items[i]
		if a.Spec.NodeName != r.NodeName && a.Spec.NodeName != "" {
			continue
		}
		switch {
		case a.Spec.Source == gpuwardenv1alpha1.SourceAdopted && a.Status.Phase != gpuwardenv1alpha1.PhaseBound:
			// Adopted for this container alone and holding nothing: it has nothing left to say.
			if err := r.Client.Delete(ctx, a); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting adopted allocation %s: %w", a.Name, err)
			}
		case isLive(a):
			if err := r.release(ctx, a, ReasonContainerRemoved); err != nil {
				return err
			}
		}
	}
	r.Store.Forget(id)
	r.Owners.Forget(id)
	r.forget(id)
	return nil
}

// attached returns the allocations a container belongs to: those that name its ID (the
// one adopted for it among them) and the one its label names, if that is for the same
// owner and no other container's.
func (r *ContainerReconciler) attached(ctx context.Context, c docker.Container, owner string) ([]gpuwardenv1alpha1.GPUAllocation, error) {
	var list gpuwardenv1alpha1.GPUAllocationList
	if err := r.Client.List(ctx, &list, client.MatchingFields{IndexContainerID: c.ID}); err != nil {
		return nil, fmt.Errorf("listing allocations of container %s: %w", c.ID, err)
	}
	out := list.Items
	name := c.Labels[gpuwardenv1alpha1.LabelAllocation]
	if name == "" || slices.ContainsFunc(out, func(a gpuwardenv1alpha1.GPUAllocation) bool { return a.Name == name }) {
		return out, nil
	}
	var a gpuwardenv1alpha1.GPUAllocation
	err := r.Client.Get(ctx, client.ObjectKey{Name: name}, &a)
	if apierrors.IsNotFound(err) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading allocation %s: %w", name, err)
	}
	// A label is a claim, not proof: the allocation must be for this container's known
	// owner and not already another container's.
	if a.Status.ContainerID != "" && a.Status.ContainerID != c.ID || a.Spec.ContainerID != "" && a.Spec.ContainerID != c.ID ||
		owner == "" || a.Spec.User != owner {
		ctrl.LoggerFrom(ctx).Info("Not attaching a container to an allocation that is another container's or user's", "allocation", name, "owner", owner)
		return out, nil
	}
	return append(out, a), nil
}

// isLive reports whether an allocation holds or waits for devices.
func isLive(a *gpuwardenv1alpha1.GPUAllocation) bool {
	return a.DeletionTimestamp == nil && a.Annotations[gpuwardenv1alpha1.AnnotationRelease] == "" &&
		(a.Status.Phase == "" || a.Status.Phase == gpuwardenv1alpha1.PhasePending || a.Status.Phase == gpuwardenv1alpha1.PhaseBound)
}

// liveAllocation returns the allocation that holds or waits for devices for the container.
func liveAllocation(allocs []gpuwardenv1alpha1.GPUAllocation) *gpuwardenv1alpha1.GPUAllocation {
	for i := range allocs {
		if isLive(&allocs[i]) {
			return &allocs[i]
		}
	}
	return nil
}

// adoptedFor returns the allocation adopted for the container, if any.
func adoptedFor(allocs []gpuwardenv1alpha1.GPUAllocation, id string) *gpuwardenv1alpha1.GPUAllocation {
	for i := range allocs {
		if allocs[i].Name == adoptedName(id) && allocs[i].DeletionTimestamp == nil {
			return &allocs[i]
		}
	}
	return nil
}

// attach records the container on its allocation.
func (r *ContainerReconciler) attach(ctx context.Context, c docker.Container, a *gpuwardenv1alpha1.GPUAllocation) error {
	if a.Status.ContainerID == c.ID {
		return nil
	}
	orig := a.DeepCopy()
	a.Status.ContainerID = c.ID
	if err := r.Client.Status().Patch(ctx, a, client.MergeFrom(orig)); err != nil {
		return client.IgnoreNotFound(err)
	}
	r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, EventAttached, "Attach", "Container %s (%s) uses this allocation", shownName(c), c.ID[:12])
	return nil
}

// release asks the allocation controller for the devices back.
func (r *ContainerReconciler) release(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, reason string) error {
	orig := a.DeepCopy()
	if a.Annotations == nil {
		a.Annotations = map[string]string{}
	}
	a.Annotations[gpuwardenv1alpha1.AnnotationRelease] = reason
	if err := r.Client.Patch(ctx, a, client.MergeFrom(orig)); err != nil {
		return client.IgnoreNotFound(err)
	}
	return nil
}

// wantsAdoption: a GPU container with no live allocation that is running (or created and
// never started) and has not been looked at since it last started.
func (r *ContainerReconciler) wantsAdoption(c docker.Container, allocs []gpuwardenv1alpha1.GPUAllocation) bool {
	if !c.GPUs.Any() || c.State != docker.StateRunning && !c.NeverStarted() {
		return false
	}
	for _, a := range allocs {
		if a.Name == adoptedName(c.ID) && a.Annotations[gpuwardenv1alpha1.AnnotationAdoptedForStart] != "" {
			if a.Annotations[gpuwardenv1alpha1.AnnotationAdoptedForStart] == startedAt(c) {
				return false // adopted for this very start: that decision stands
			}
			continue
		}
		// Creation times have whole seconds: one made in the second the container started
		// was made after the start.
		if !c.StartedAt.Truncate(time.Second).After(a.CreationTimestamp.Time) {
			return false // decided since the container last started: that decision stands
		}
	}
	return true
}

// carryAdoptionToFirstStart: an adoption made while the container was created but not yet
// started (docker run creates, then starts) is the decision for its first start too; the
// allocation is marked with that start instead of being made anew.
func (r *ContainerReconciler) carryAdoptionToFirstStart(ctx context.Context, c docker.Container, allocs []gpuwardenv1alpha1.GPUAllocation) error {
	if c.StartedAt.IsZero() {
		return nil
	}
	for i := range allocs {
		a := &allocs[i]
		if a.Name != adoptedName(c.ID) || a.Annotations[gpuwardenv1alpha1.AnnotationAdoptedForStart] != neverStarted {
			continue
		}
		orig := a.DeepCopy()
		a.Annotations[gpuwardenv1alpha1.AnnotationAdoptedForStart] = startedAt(c)
		if err := r.Client.Patch(ctx, a, client.MergeFrom(orig)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("recording the start of adopted container %s: %w", c.Name, err)
		}
	}
	return nil
}

// neverStarted is startedAt of a container that was never started.
var neverStarted = time.Time{}.UTC().Format(time.RFC3339Nano)

// startedAt is the container's last start, as recorded on the allocation adopted for it.
func startedAt(c docker.Container) string { return c.StartedAt.UTC().Format(time.RFC3339Nano) }

// adopt creates an Adopted allocation for the devices a container really uses; it goes
// through the same checks as any other.
func (r *ContainerReconciler) adopt(ctx context.Context, c docker.Container, owner string, allocs []gpuwardenv1alpha1.GPUAllocation) error {
	name := adoptedName(c.ID)
	for i := range allocs {
		if allocs[i].Name == name {
			// An earlier adoption, from before the container last started: start afresh.
			// Its deletion wakes this controller again, which then adopts anew.
			if err := r.Client.Delete(ctx, &allocs[i]); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("replacing adopted allocation %s: %w", name, err)
			}
			return nil
		}
	}
	var gpus gpuwardenv1alpha1.GPUList
	if err := r.Client.List(ctx, &gpus, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: r.NodeName}); err != nil {
		return fmt.Errorf("listing GPUs: %w", err)
	}
	devices := devicesOf(c.GPUs, gpus.Items)
	if len(devices) == 0 {
		ctrl.LoggerFrom(ctx).Info("A GPU container asks for no device this node has; not adopting it", "request", fmt.Sprintf("%+v", c.GPUs))
		return nil
	}
	if owner == "" {
		owner = gpuwardenv1alpha1.UnknownUser
	}
	a := &gpuwardenv1alpha1.GPUAllocation{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{gpuwardenv1alpha1.LabelNode: r.NodeName},
			Annotations: map[string]string{gpuwardenv1alpha1.AnnotationAdoptedForStart: startedAt(c)}},
		Spec: gpuwardenv1alpha1.GPUAllocationSpec{
			User: owner, NodeName: r.NodeName, Request: gpuwardenv1alpha1.AllocationRequest{Devices: devices},
			ContainerType: labels.ContainerType(c.Labels), Source: gpuwardenv1alpha1.SourceAdopted,
			ContainerName: truncate(c.Name, 256), ContainerID: c.ID,
		},
	}
	key, err := signingKey(ctx, r.Reader, r.Client, r.LedgerNamespace)
	if err != nil {
		return err
	}
	a.Annotations[gpuwardenv1alpha1.AnnotationSignature] = provenance.Sign(key, a)
	if err := r.Client.Create(ctx, a); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil // adopted by an earlier look at this container
		}
		return fmt.Errorf("creating adopted allocation %s: %w", name, err)
	}
	r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, EventAdopted, "Adopt", "Adopted container %s of %s, which uses %s outside gpuwarden",
		shownName(c), owner, strings.Join(devices, ","))
	return nil
}

// checkAdopted reports an adopted container that could not be given its devices (or has no
// known owner) once, and stops it when the policy says so.
func (r *ContainerReconciler) checkAdopted(ctx context.Context, c docker.Container, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy) error {
	reason, msg := "", ""
	switch {
	case a.Spec.User == gpuwardenv1alpha1.UnknownUser:
		reason, msg = ReasonOwnerUnknown, "no label names the owner of the container"
	case a.Status.Phase == gpuwardenv1alpha1.PhaseRejected, a.Status.Phase == gpuwardenv1alpha1.PhasePending && a.Status.Reason != "":
		reason, msg = a.Status.Reason, a.Status.Message
	default:
		return nil // bound, or not decided yet
	}
	key := "unallocated/" + string(a.UID)
	if !r.once(c.ID, key) {
		return nil
	}
	action := p.String("onUnallocatedGPU", string(gpuwardenv1alpha1.UnallocatedGPURecord))
	mode := p.String("mode", string(gpuwardenv1alpha1.ModeEnforce))
	unallocatedGPUContainers.WithLabelValues(reason).Inc()
	r.Recorder.Eventf(a, nil, corev1.EventTypeWarning, EventUnallocatedGPU, "Detect", "Container %s uses %s without an allocation: %s (%s); policy: %s",
		shownName(c), strings.Join(a.Spec.Request.Devices, ","), msg, reason, action)
	r.Audit.Log(audit.Detection(audit.UnmanagedContainer, a.Spec.User, audit.Unmanaged{PID: c.PID, GPU: strings.Join(a.Spec.Request.Devices, ","), Container: containerRef(c)}))
	if action != string(gpuwardenv1alpha1.UnallocatedGPUStop) || c.State != docker.StateRunning {
		return nil
	}
	return r.stop(ctx, c, a.Spec.User, a, p, mode, "unallocated_gpu: "+msg)
}

// act carries out one due action as the policy's mode allows.
func (r *ContainerReconciler) act(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, d lifecycle.Due) error {
	mode := p.String("mode", string(gpuwardenv1alpha1.ModeEnforce))
	switch d.Action {
	case lifecycle.ReleaseGPUs:
		if mode == string(gpuwardenv1alpha1.ModeDryRun) {
			r.wouldAct(ctx, c, owner, a, p, mode, "release its GPUs", d)
			return nil
		}
		containerActions.WithLabelValues(string(d.Action), mode).Inc()
		r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, EventReleaseAsked, "Release", "Releasing the GPUs of container %s: %s", shownName(c), d.Message)
		return r.release(ctx, a, d.Reason+": "+d.Message)
	case lifecycle.Remove:
		if mode != string(gpuwardenv1alpha1.ModeEnforce) {
			r.wouldAct(ctx, c, owner, a, p, mode, "remove it", d)
			return nil
		}
		r.Store.note(c.ID, d.Reason)
		err := r.Engine.Remove(ctx, c.ID, false)
		if errors.Is(err, docker.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		containerActions.WithLabelValues(string(d.Action), mode).Inc()
		r.Audit.Log(audit.Lifecycle(audit.Remove, ownerOrUnknown(owner), containerRef(c), policyName(d.Policy), mode, d.Reason+": "+d.Message))
		r.eventOn(ctx, a, d.Policy, corev1.EventTypeNormal, EventRemoved, "Remove", "Removed container %s of %s: %s", shownName(c), ownerOrUnknown(owner), d.Message)
	}
	return nil
}

// stop stops a container, SIGKILL after the policy's stopGracePeriod.
func (r *ContainerReconciler) stop(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, mode, reason string) error {
	if labels.IsProtected(c.Labels) {
		return nil
	}
	if mode != string(gpuwardenv1alpha1.ModeEnforce) {
		r.wouldAct(ctx, c, owner, a, p, mode, "stop it", lifecycle.Due{Action: lifecycle.Stop, Reason: reason, Message: reason})
		return nil
	}
	grace := DefaultStopGracePeriod
	if l := p.Duration("stopGracePeriod"); l.Applies() {
		grace = l.Duration
	}
	r.Store.note(c.ID, reason)
	if err := r.Engine.Stop(ctx, c.ID, grace); err != nil && !errors.Is(err, docker.ErrNotFound) {
		return err
	}
	containerActions.WithLabelValues(string(lifecycle.Stop), mode).Inc()
	r.eventOn(ctx, a, "", corev1.EventTypeWarning, EventStopped, "Stop", "Stopped container %s of %s: %s", shownName(c), owner, reason)
	return nil
}

// wouldAct records, once, what a DryRun or NotifyOnly policy kept gpuwarden from doing.
func (r *ContainerReconciler) wouldAct(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, mode, what string, d lifecycle.Due) {
	if !r.once(c.ID, "would/"+string(d.Action)+"/"+d.Reason) {
		return
	}
	containerActions.WithLabelValues(string(d.Action), mode).Inc()
	from := d.Policy
	if from == "" {
		from = p.Values["mode"].From
	}
	r.Audit.Log(audit.Lifecycle(wouldRecord[d.Action], ownerOrUnknown(owner), containerRef(c), policyName(from), mode, "would "+what+": "+d.Message))
	r.eventOn(ctx, a, from, corev1.EventTypeNormal, EventWouldAct, "DryRun", "Would %s container %s of %s (mode %s): %s", what, shownName(c), ownerOrUnknown(owner), mode, d.Message)
}

// wouldRecord is the audit record of an action a DryRun or NotifyOnly policy held back.
var wouldRecord = map[lifecycle.Action]audit.LifecycleAction{
	lifecycle.Remove: audit.WouldRemove, lifecycle.ReleaseGPUs: audit.WouldRelease, lifecycle.Stop: audit.WouldStop,
}

// eventOn records an Event on the allocation when there is one, else on the policy that
// called for the action (named "ContainerPolicy <name>").
func (r *ContainerReconciler) eventOn(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, policy, eventType, reason, action, format string, args ...any) {
	var obj runtime.Object
	if a != nil {
		obj = a
	} else if name := policyName(policy); name != "" {
		p := &gpuwardenv1alpha1.ContainerPolicy{}
		if err := r.Client.Get(ctx, client.ObjectKey{Name: name}, p); err == nil {
			obj = p
		}
	}
	if obj != nil {
		r.Recorder.Eventf(obj, nil, eventType, reason, action, format, args...)
	}
}

// policy is the container's effective ContainerPolicy.
func (r *ContainerReconciler) policy(ctx context.Context, c docker.Container, owner string) (resolve.Policy, error) {
	var list gpuwardenv1alpha1.ContainerPolicyList
	if err := r.Client.List(ctx, &list); err != nil {
		return resolve.Policy{}, fmt.Errorf("listing container policies: %w", err)
	}
	var groups []string
	if owner != "" {
		g, err := r.Groups.GroupsOf(owner)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Looking up groups; treating the user as in none", "user", owner)
		}
		groups = g
	}
	return resolve.EffectivePolicy(list.Items, resolve.Container{User: owner, Groups: groups, Type: labels.ContainerType(c.Labels), Labels: c.Labels}, r.Clock.Now())
}

func (r *ContainerReconciler) once(id, what string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reported == nil {
		r.reported = map[string]bool{}
	}
	k := id + "/" + what
	if r.reported[k] {
		return false
	}
	r.reported[k] = true
	return true
}

func (r *ContainerReconciler) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.reported {
		if strings.HasPrefix(k, id+"/") {
			delete(r.reported, k)
		}
	}
}

// devicesOf turns a container's GPU request into the UUIDs of this node's slots it uses:
// named UUIDs and indices as named, the first N GPUs for a count, every slot for "all". A
// GPU partitioned into MIG instances stands for all of its instances.
func devicesOf(req docker.GPURequest, gpus []gpuwardenv1alpha1.GPU) []string {
	byIndex := map[string]*gpuwardenv1alpha1.GPU{}
	byUUID := map[string]*gpuwardenv1alpha1.GPU{}
	for i := range gpus {
		g := &gpus[i]
		byIndex[strconv.Itoa(int(g.Spec.Index))] = g
		byUUID[g.Status.UUID] = g
	}
	slotsOfGPU := func(g *gpuwardenv1alpha1.GPU) []string {
		if g.Status.MIGMode == gpuwardenv1alpha1.MIGEnabled {
			var out []string
			for _, in := range g.Status.MIGInstances {
				out = append(out, in.UUID)
			}
			return out
		}
		return []string{g.Status.UUID}
	}
	var out []string
	add := func(ids ...string) {
		for _, id := range ids {
			if id != "" && !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	switch {
	case req.All:
		slices.SortFunc(gpus, func(a, b gpuwardenv1alpha1.GPU) int { return int(a.Spec.Index - b.Spec.Index) })
		for i := range gpus {
			add(slotsOfGPU(&gpus[i])...)
		}
	case req.Count > 0:
		for i := 0; i < req.Count; i++ {
			if g := byIndex[strconv.Itoa(i)]; g != nil {
				add(slotsOfGPU(g)...)
			}
		}
	default:
		for _, d := range req.Devices {
			gi, mi, isMIG := strings.Cut(d, ":")
			switch {
			case byUUID[d] != nil:
				add(slotsOfGPU(byUUID[d])...)
			case strings.HasPrefix(d, "MIG-"):
				add(d)
			case isMIG && byIndex[gi] != nil:
				if n, err := strconv.Atoi(mi); err == nil && n < len(byIndex[gi].Status.MIGInstances) {
					add(byIndex[gi].Status.MIGInstances[n].UUID)
				}
			case byIndex[d] != nil:
				add(slotsOfGPU(byIndex[d])...)
			}
		}
	}
	return out
}

// adoptedName is the name of the allocation adopted for a container.
func adoptedName(id string) string { return "adopted-" + id[:min(12, len(id))] }

// policyName turns "ContainerPolicy x" into "x".
func policyName(from string) string { return strings.TrimPrefix(from, "ContainerPolicy ") }

// SetupWithManager registers the controller, fed by the watcher and by changes to the
// allocations that name a container.
func (r *ContainerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.LedgerNamespace == "" {
		r.LedgerNamespace = "kube-system"
	}
	if r.Client == nil || r.Reader == nil || r.Engine == nil || r.Store == nil || r.Owners == nil || r.NodeName == "" || r.Groups == nil || r.Clock == nil ||
		r.Recorder == nil || r.Audit == nil || r.Changed == nil {
		return errors.New("ContainerReconciler needs a Client, Reader, Engine, Owners, Store, NodeName, Groups, Clock, Recorder, Audit and Changed")
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &gpuwardenv1alpha1.GPUAllocation{}, IndexContainerID,
		func(o client.Object) []string { return containerIDsOf(o.(*gpuwardenv1alpha1.GPUAllocation)) }); err != nil {
		return fmt.Errorf("indexing allocations by container: %w", err)
	}
	toContainers := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		var out []reconcile.Request
		for _, id := range containerIDsOf(o.(*gpuwardenv1alpha1.GPUAllocation)) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: id}})
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("container").
		WatchesRawSource(source.Channel(r.Changed, &handler.EnqueueRequestForObject{})).
		Watches(&gpuwardenv1alpha1.GPUAllocation{}, toContainers).
		Complete(r)
}

package containers

// Adoption: GPU containers made outside gpuwarden get an allocation for the devices they
// really use, once per start, checked like any request.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/provenance"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// adoptedFor returns the allocation adopted for the container, if any.
func adoptedFor(allocs []gpuwardenv1alpha1.GPUAllocation, id string) *gpuwardenv1alpha1.GPUAllocation {
	for i := range allocs {
		if allocs[i].Name == adoptedName(id) && allocs[i].DeletionTimestamp == nil {
			return &allocs[i]
		}
	}
	return nil
}

// wantsAdoption: a GPU container with no live allocation that is running (or created and
// never started) and has not been looked at since it last started.
func (r *Reconciler) wantsAdoption(c docker.Container, allocs []gpuwardenv1alpha1.GPUAllocation) bool {
	if !c.GPUs.Any() || c.State != docker.StateRunning && !c.NeverStarted() {
		return false
	}
	for _, a := range allocs {
		if a.Name == adoptedName(c.ID) && a.Annotations[gpuwardenv1alpha1.AnnotationAdoptedForStart] != "" {
			if a.Annotations[gpuwardenv1alpha1.AnnotationAdoptedForStart] == c.StartStamp() {
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
func (r *Reconciler) carryAdoptionToFirstStart(ctx context.Context, c docker.Container, allocs []gpuwardenv1alpha1.GPUAllocation) error {
	if c.StartedAt.IsZero() {
		return nil
	}
	for i := range allocs {
		a := &allocs[i]
		if a.Name != adoptedName(c.ID) || a.Annotations[gpuwardenv1alpha1.AnnotationAdoptedForStart] != neverStarted {
			continue
		}
		orig := a.DeepCopy()
		a.Annotations[gpuwardenv1alpha1.AnnotationAdoptedForStart] = c.StartStamp()
		if err := r.Client.Patch(ctx, a, client.MergeFrom(orig)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("recording the start of adopted container %s: %w", c.Name, err)
		}
	}
	return nil
}

// neverStarted is the start stamp of a container that was never started.
var neverStarted = docker.Container{}.StartStamp()

// adopt creates an Adopted allocation for the devices a container really uses; it goes
// through the same checks as any other.
func (r *Reconciler) adopt(ctx context.Context, c docker.Container, owner string, allocs []gpuwardenv1alpha1.GPUAllocation) error {
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
			Annotations: map[string]string{gpuwardenv1alpha1.AnnotationAdoptedForStart: c.StartStamp()}},
		Spec: gpuwardenv1alpha1.GPUAllocationSpec{
			User: owner, NodeName: r.NodeName, Request: gpuwardenv1alpha1.AllocationRequest{Devices: devices},
			ContainerType: labels.ContainerType(c.Labels), Source: gpuwardenv1alpha1.SourceAdopted,
			ContainerName: message.Truncate(c.Name, 256), ContainerID: c.ID,
		},
	}
	allocation.SyncLabels(a) // selectable by user from the start
	key, err := ledger.SigningKey(ctx, r.Reader, r.Client, r.LedgerNamespace)
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
	r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, reasons.EventAdopted, "Adopt", "Adopted container %s of %s, which uses %s outside gpuwarden",
		message.ContainerName(c), owner, strings.Join(devices, ","))
	return nil
}

// checkAdopted reports an adopted container that could not be given its devices (or has no
// known owner) once, and stops it when the policy says so.
func (r *Reconciler) checkAdopted(ctx context.Context, c docker.Container, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy) error {
	reason, msg := "", ""
	switch {
	case a.Spec.User == gpuwardenv1alpha1.UnknownUser:
		reason, msg = reasons.OwnerUnknown, "no label names the owner of the container"
	case a.Status.Phase == gpuwardenv1alpha1.PhaseRejected, a.Status.Phase == gpuwardenv1alpha1.PhasePending && a.Status.Reason != "":
		reason, msg = a.Status.Reason, a.Status.Message
	default:
		return nil // bound, or not decided yet
	}
	key := "unallocated/" + string(a.UID)
	if !r.Actions.Once(c.ID, key) {
		return nil
	}
	action := p.String("onUnallocatedGPU", string(gpuwardenv1alpha1.UnallocatedGPURecord))
	if gatewayMade(c) {
		// Made through the gateway, started straight at the engine (or by its restart
		// policy): a start through the gateway would have been refused, so is this one.
		action = string(gpuwardenv1alpha1.UnallocatedGPUStop)
	}
	u := actions.Unallocated{Container: c, Owner: a.Spec.User, On: a, Devices: a.Spec.Request.Devices, Reason: reason, Policy: p,
		Note: fmt.Sprintf("Container %s uses %s without an allocation: %s (%s); policy: %s",
			message.ContainerName(c), strings.Join(a.Spec.Request.Devices, ","), msg, reason, action)}
	if action == string(gpuwardenv1alpha1.UnallocatedGPUStop) {
		u.Stop = "unallocated_gpu: " + msg
	}
	return r.Actions.ReportUnallocated(ctx, u)
}

// devicesOf turns a container's GPU request into the UUIDs of this node's slots it uses:
// named UUIDs and indices as named, the first N GPUs for a count, every slot for "all". A
// GPU partitioned into MIG instances stands for all of its instances.
func devicesOf(req docker.GPURequest, gpus []gpuwardenv1alpha1.GPU) []string {
	slots := allocation.SlotsOf(gpus) // index order; a partitioned GPU as its instances
	var out []string
	add := func(match func(allocation.Slot) bool) {
		for _, s := range slots {
			if match(s) && !slices.Contains(out, s.UUID) {
				out = append(out, s.UUID)
			}
		}
	}
	switch {
	case req.All:
		add(func(allocation.Slot) bool { return true })
	case req.Count > 0:
		add(func(s allocation.Slot) bool { return s.GPUIndex < req.Count })
	default:
		for _, d := range req.Devices {
			gi, mi, isMIG := strings.Cut(d, ":")
			g, gerr := strconv.Atoi(gi)
			m, merr := strconv.Atoi(mi)
			switch {
			case isMIG && gerr == nil && merr == nil:
				n := -1
				add(func(s allocation.Slot) bool {
					if s.GPUIndex != g || s.Profile == "" {
						return false
					}
					n++
					return n == m
				})
			case gerr == nil && !isMIG:
				add(func(s allocation.Slot) bool { return s.GPUIndex == g })
			case strings.HasPrefix(d, "MIG-") && !slices.ContainsFunc(slots, func(s allocation.Slot) bool { return s.UUID == d }):
				if !slices.Contains(out, d) {
					out = append(out, d) // an instance the inventory does not show (yet): as named
				}
			default:
				add(func(s allocation.Slot) bool { return s.UUID == d || s.GPUUUID == d })
			}
		}
	}
	return out
}

// adoptedName is the name of the allocation adopted for a container.
func adoptedName(id string) string { return "adopted-" + docker.ShortID(id) }

// gatewayMade reports whether the gateway made the container (its labels say so: a user
// cannot set them through the gateway).
func gatewayMade(c docker.Container) bool {
	return c.Labels[gpuwardenv1alpha1.LabelManaged] == "true" && c.Labels[gpuwardenv1alpha1.LabelAllocation] != ""
}

// stopOnHeldDevices stops at once a running GPU container that holds no live allocation and
// uses devices another allocation holds (a container whose hold passed, started again
// straight at the engine or by its restart policy after its GPU went to someone else),
// whatever onUnallocatedGPU says: two containers never share a GPU that one of them holds.
// It records why (an Event, a detection.unmanaged_container record for its owner, the stop's
// reason) once per start, and reports whether it stopped (or would have) the container.
func (r *Reconciler) stopOnHeldDevices(ctx context.Context, c docker.Container, owner string, allocs []gpuwardenv1alpha1.GPUAllocation) (bool, error) {
	if c.State != docker.StateRunning {
		return false, nil
	}
	var gpus gpuwardenv1alpha1.GPUList
	if err := r.Client.List(ctx, &gpus, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: r.NodeName}); err != nil {
		return false, fmt.Errorf("listing GPUs: %w", err)
	}
	uses := devicesOf(c.GPUs, gpus.Items)
	if len(uses) == 0 {
		return false, nil
	}
	var list gpuwardenv1alpha1.GPUAllocationList
	if err := r.Client.List(ctx, &list); err != nil {
		return false, fmt.Errorf("listing allocations: %w", err)
	}
	holder, device := allocation.HeldElsewhere(list.Items, uses, r.NodeName, func(a *gpuwardenv1alpha1.GPUAllocation) bool {
		return slices.ContainsFunc(allocs, func(o gpuwardenv1alpha1.GPUAllocation) bool { return o.Name == a.Name })
	})
	if holder == nil {
		return false, nil
	}
	key := "held/" + c.StartStamp()
	if !r.Actions.Once(c.ID, key) {
		return true, nil
	}
	policy, err := r.policy(ctx, c, owner)
	if err != nil {
		r.Actions.Unsay(c.ID, key)
		return false, err
	}
	user := containerstore.OwnerOrUnknown(owner)
	msg := fmt.Sprintf("%s is held by allocation %s of %s", device, holder.Name, holder.Spec.User)
	on := holder
	if own := ownLatest(allocs); own != nil {
		on = own // the container's own (released) allocation tells its user
	}
	// Stopped whatever onUnallocatedGPU says: two containers never share a held GPU.
	if err := r.Actions.ReportUnallocated(ctx, actions.Unallocated{Container: c, Owner: user, On: on, Devices: uses, Reason: reasons.DeviceHeld, Policy: policy,
		Note: fmt.Sprintf("Container %s of %s started without an allocation on %s: %s (%s); stopping it (start it through the gateway to get its GPUs again, or recreate it with --gpus to get a free GPU)",
			message.ContainerName(c), user, strings.Join(uses, ","), msg, reasons.DeviceHeld),
		Stop: "device_held: " + msg}); err != nil {
		r.Actions.Unsay(c.ID, key) // said, not done: the next look tries again
		return true, err
	}
	return true, nil
}

// ownLatest is the newest of the container's own allocations, if any.
func ownLatest(allocs []gpuwardenv1alpha1.GPUAllocation) *gpuwardenv1alpha1.GPUAllocation {
	var out *gpuwardenv1alpha1.GPUAllocation
	for i := range allocs {
		if out == nil || out.CreationTimestamp.Before(&allocs[i].CreationTimestamp) {
			out = &allocs[i]
		}
	}
	return out
}

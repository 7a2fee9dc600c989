package containers

// Binding and release: which allocations a container belongs to, attaching it, and giving
// its devices back when it is gone.

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
)

// gone releases what a removed container held.
func (r *Reconciler) gone(ctx context.Context, id string) error {
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
		case allocation.Live(a):
			if err := r.Actions.Release(ctx, a, reasons.ReleaseContainerRemoved); err != nil {
				return err
			}
		}
	}
	r.Store.Forget(id)
	r.Owners.Forget(id)
	r.Actions.Forget(id)
	return nil
}

// attached returns the allocations a container belongs to: those that name its ID (the
// one adopted for it among them) and the one its label names, if that is for the same
// owner and no other container's.
func (r *Reconciler) attached(ctx context.Context, c docker.Container, owner string) ([]gpuwardenv1alpha1.GPUAllocation, error) {
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

// ownedAmong keeps the allocations that may be this container's: the one adopted for it,
// and those of its known owner. An allocation that names a container of another user (a
// user's own Manual allocation with someone else's containerID) is never attached: it is
// told so once in an Event, and detached if an earlier version attached it.
func (r *Reconciler) ownedAmong(ctx context.Context, c docker.Container, owner string, allocs []gpuwardenv1alpha1.GPUAllocation) ([]gpuwardenv1alpha1.GPUAllocation, error) {
	out := allocs[:0:0]
	for i := range allocs {
		a := &allocs[i]
		if ownedBy(a, c, owner) {
			out = append(out, *a)
			continue
		}
		if a.Status.ContainerID == c.ID {
			orig := a.DeepCopy()
			a.Status.ContainerID, a.Status.ContainerName = "", ""
			if err := r.Client.Status().Patch(ctx, a, client.MergeFrom(orig)); client.IgnoreNotFound(err) != nil {
				return nil, fmt.Errorf("detaching container %s from allocation %s: %w", c.ID, a.Name, err)
			}
		}
		if r.Actions.Once(c.ID, "notattached/"+string(a.UID)) {
			r.Recorder.Eventf(a, nil, corev1.EventTypeWarning, reasons.EventNotAttached, "Attach",
				"Not attaching container %s (%s): it belongs to %s, not to %s; an allocation names only its own user's containers",
				message.ContainerName(c), docker.ShortID(c.ID), containerstore.OwnerOrUnknown(owner), a.Spec.User)
			ctrl.LoggerFrom(ctx).Info("Not attaching a container another user's allocation names", "allocation", a.Name, "user", a.Spec.User, "owner", owner)
		}
	}
	return out, nil
}

// ownedBy reports whether an allocation naming container c may be c's: the one adopted for
// it (signed by the controller, for whoever owns it), or one whose user is c's known owner.
func ownedBy(a *gpuwardenv1alpha1.GPUAllocation, c docker.Container, owner string) bool {
	if a.Spec.Source == gpuwardenv1alpha1.SourceAdopted && a.Name == adoptedName(c.ID) {
		return true
	}
	return owner != "" && a.Spec.User == owner
}

// liveAllocation returns the allocation that holds or waits for devices for the container.
func liveAllocation(allocs []gpuwardenv1alpha1.GPUAllocation) *gpuwardenv1alpha1.GPUAllocation {
	for i := range allocs {
		if allocation.Live(&allocs[i]) {
			return &allocs[i]
		}
	}
	return nil
}

// attach records the container on its allocation: its ID, and its name (kept up to date
// across renames) for kubectl get and the audit records of the allocation.
func (r *Reconciler) attach(ctx context.Context, c docker.Container, a *gpuwardenv1alpha1.GPUAllocation) error {
	name := message.Truncate(c.Name, message.MaxUserText)
	if a.Status.ContainerID == c.ID && a.Status.ContainerName == name {
		return nil
	}
	attached := a.Status.ContainerID == c.ID
	orig := a.DeepCopy()
	a.Status.ContainerID, a.Status.ContainerName = c.ID, name
	if err := r.Client.Status().Patch(ctx, a, client.MergeFrom(orig)); err != nil {
		return client.IgnoreNotFound(err)
	}
	if attached {
		return nil // renamed
	}
	r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, reasons.EventAttached, "Attach", "Container %s (%s) uses this allocation", message.ContainerName(c), docker.ShortID(c.ID))
	return nil
}

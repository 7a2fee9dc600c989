package containers

// Users' own allocations that no container uses: a GPUAllocation made with kubectl (source
// Manual) holds its devices for a container that names it (docker run --label
// gpuwarden.io/allocation=NAME through the gateway). One no container uses within the
// policy's releaseUnusedAfter is given back, so that a reservation nobody came for does not
// hold a GPU for ever; its user is told when, and told again when it happens.

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/manager"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// Unused releases the node's Bound Manual allocations that no container has used within
// releaseUnusedAfter (lifecycle.Unused), as the policy's mode allows, and announces each
// release once before it falls due. It judges only while the engine is in view: a container
// unseen during an outage may well be using the allocation.
type Unused struct {
	Client client.Client
	Store  *containerstore.Store
	// Actions release, record and tell (shared with the container reconciler).
	Actions  *actions.Actions
	NodeName string
	Clock    clock.PassiveClock
	// Interval is the time between two sweeps.
	Interval time.Duration
}

// NeedLeaderElection: only the node's active controller releases.
func (u *Unused) NeedLeaderElection() bool { return true }

// Start sweeps every Interval until ctx ends.
func (u *Unused) Start(ctx context.Context) error {
	return manager.Every(ctx, u.Interval, u.Sweep, "Looking for users' own allocations no container uses")
}

// Sweep announces and releases once.
func (u *Unused) Sweep(ctx context.Context) error {
	if !u.Store.Synced() {
		return nil
	}
	// What the node's containers name: allocation/USER/NAME by label (one of another
	// user's that names it will never be attached, so it does not keep it), id/ID.
	named := map[string]bool{}
	for _, c := range u.Store.All() {
		if n := c.Labels[gpuwardenv1alpha1.LabelAllocation]; n != "" {
			owner, _ := labels.Owner(c.Labels)
			named["allocation/"+owner+"/"+n] = true
		}
		named["id/"+c.ID] = true
	}
	var allocs gpuwardenv1alpha1.GPUAllocationList
	if err := u.Client.List(ctx, &allocs); err != nil {
		return fmt.Errorf("listing GPU allocations: %w", err)
	}
	var policies gpuwardenv1alpha1.ContainerPolicyList
	if err := u.Client.List(ctx, &policies); err != nil {
		return fmt.Errorf("listing container policies: %w", err)
	}
	for i := range allocs.Items {
		a := &allocs.Items[i]
		if !u.unused(a, named) {
			continue
		}
		p, err := u.Actions.PolicyAmong(ctx, policies.Items, docker.Container{Labels: labels.OfAllocation(a)}, a.Spec.User)
		if err != nil {
			return err
		}
		since := a.CreationTimestamp.Time
		if a.Status.BoundTime != nil {
			since = a.Status.BoundTime.Time
		}
		due, coming, _ := lifecycle.Unused(since, p, u.Clock.Now())
		switch {
		case due != nil:
			if err := u.release(ctx, a, p, *due); err != nil {
				return err
			}
		case coming != nil:
			u.announce(ctx, a, p, *coming)
		}
	}
	return nil
}

// unused reports whether a is a Bound Manual allocation of this node that no container
// uses: none is attached to it, and no container on the engine names it (one just made
// for it, not attached yet).
func (u *Unused) unused(a *gpuwardenv1alpha1.GPUAllocation, named map[string]bool) bool {
	switch {
	case a.Spec.Source != gpuwardenv1alpha1.SourceManual || a.Spec.NodeName != u.NodeName:
		return false
	case a.Status.Phase != gpuwardenv1alpha1.PhaseBound || a.Annotations[gpuwardenv1alpha1.AnnotationRelease] != "":
		return false // holds nothing, or already on its way back
	case a.Status.ContainerID != "":
		return false // a container uses it: its stop and removal release it
	case a.Spec.ContainerID != "" && named["id/"+a.Spec.ContainerID]:
		return false // an admin named a container that exists: it is attached by its ID
	}
	return !named["allocation/"+a.Spec.User+"/"+a.Name]
}

// key is what Actions.Once remembers of an allocation (not a container).
func key(a *gpuwardenv1alpha1.GPUAllocation) string {
	return "allocation/" + string(a.UID) + "/" + a.Name
}

// howToUse is the sentence that tells a user how a container uses their allocation.
func howToUse(a *gpuwardenv1alpha1.GPUAllocation) string {
	return fmt.Sprintf("docker run --label %s=%s … uses it", gpuwardenv1alpha1.LabelAllocation, a.Name)
}

// announce tells the user, once for each time it falls due, when an unused allocation goes back.
func (u *Unused) announce(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, k lifecycle.Coming) {
	if p.Mode() == gpuwardenv1alpha1.ModeDryRun || !u.Actions.Once(key(a), "announced/unused/"+k.At.UTC().Format(time.RFC3339)) {
		return
	}
	text := fmt.Sprintf("Allocation %s of %s holds GPU %s for a container and none uses it: its GPUs go back at %s (%s, set by %s) unless a container uses it before then (%s).",
		a.Name, a.Spec.User, a.Status.DevicesSummary, k.At.UTC().Format(time.RFC3339), k.Limit, k.Policy, howToUse(a))
	u.Actions.Recorder.Eventf(a, nil, corev1.EventTypeNormal, reasons.EventReleaseScheduled, "Announce", "%s", text)
	u.tell(ctx, a, p, notify.TypeReleaseWarning, "NOTICE", text)
}

// release gives an unused allocation's GPUs back, as the policy's mode allows: DryRun
// records once what it would do.
func (u *Unused) release(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, d lifecycle.Due) error {
	mode := p.Mode()
	policy := ""
	if d.Policy != lifecycle.DefaultFrom {
		policy = resolve.PolicyName(d.Policy)
	}
	ref := audit.Container{Type: string(a.Spec.ContainerType), Allocation: a.Name}
	if mode == gpuwardenv1alpha1.ModeDryRun {
		if policy == "" {
			policy = resolve.PolicyName(p.Values["mode"].From) // the policy that held it back
		}
		if u.Actions.Once(key(a), actions.WouldKey(d.Action, d.Reason)) {
			metrics.ContainerActions.WithLabelValues(string(d.Action), string(mode)).Inc()
			u.Actions.Audit.Log(audit.Lifecycle(audit.WouldRelease, a.Spec.User, ref, policy, string(mode), d.Reason+": would release its GPUs: "+d.Message))
			u.Actions.Recorder.Eventf(a, nil, corev1.EventTypeNormal, reasons.EventWouldAct, "DryRun", "Would release the GPUs of allocation %s of %s (mode %s): %s",
				a.Name, a.Spec.User, mode, d.Message)
		}
		return nil
	}
	metrics.ContainerActions.WithLabelValues(string(d.Action), string(mode)).Inc()
	text := fmt.Sprintf("Released the GPUs of allocation %s of %s: %s. Create a new allocation when you need them (%s).", a.Name, a.Spec.User, d.Message, howToUse(a))
	u.Actions.Recorder.Eventf(a, nil, corev1.EventTypeNormal, reasons.EventReleasedUnused, "Release", "%s", text)
	ctrl.LoggerFrom(ctx).Info("Releasing a user's allocation no container used", "allocation", a.Name, "user", a.Spec.User, "reason", d.Message)
	// The allocation controller records the release (gpu.release, this reason) once it is done.
	if err := u.Actions.Release(ctx, a, d.Reason+": "+d.Message); err != nil {
		return fmt.Errorf("releasing unused allocation %s: %w", a.Name, err)
	}
	u.tell(ctx, a, p, audit.TypeGPURelease, "NOTICE", text)
	u.Actions.Forget(key(a)) // what was announced of it: it is not looked at again
	return nil
}

// tell sends the user a notice about their allocation: no container has it, so it goes to
// the policy's webhook (and whatever channels the notifier has), not into a notice file.
func (u *Unused) tell(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, typ, title, text string) {
	n := notify.For(docker.Container{}, a.Spec.User, a.Name, p, u.NodeName, u.Clock.Now())
	n.File, n.Type, n.Title, n.Message = "", typ, title, text
	u.Actions.Tell(ctx, n)
}

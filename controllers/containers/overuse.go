package containers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// beyondAllocation returns the devices (UUIDs of this node's slots) a container uses that
// its allocation does not give it: with --gpus all, another device, or more devices than
// allocated. A Pending allocation gives none.
func beyondAllocation(uses []string, a *gpuwardenv1alpha1.GPUAllocation) []string {
	given := map[string]bool{}
	if a.Status.Phase == gpuwardenv1alpha1.PhaseBound {
		for _, d := range a.Status.Devices {
			given[d.UUID] = true
		}
	}
	var extra []string
	for _, u := range uses {
		if !given[u] {
			extra = append(extra, u)
		}
	}
	return extra
}

// checkWithinAllocation reports a running container that uses more than its allocation
// gives, once per allocation state, and stops it when the policy's onUnallocatedGPU says
// so — exactly as for a container with no allocation at all. The allocation adopted for
// the container is checkAdopted's to report.
func (r *Reconciler) checkWithinAllocation(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy) error {
	if c.State != docker.StateRunning || !c.GPUs.Any() {
		return nil
	}
	if a.Spec.Source == gpuwardenv1alpha1.SourceAdopted && a.Name == adoptedName(c.ID) {
		// Adopted for exactly the devices it uses: until they are given, checkAdopted
		// reports the one start without an allocation (one record, not one more here).
		return nil
	}
	var gpus gpuwardenv1alpha1.GPUList
	if err := r.Client.List(ctx, &gpus, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: r.NodeName}); err != nil {
		return fmt.Errorf("listing GPUs: %w", err)
	}
	uses := devicesOf(c.GPUs, gpus.Items)
	extra := beyondAllocation(uses, a)
	if len(extra) == 0 {
		return nil
	}
	var given []string
	for _, d := range a.Status.Devices {
		given = append(given, d.UUID)
	}
	slices.Sort(extra)
	if !r.Actions.Once(c.ID, fmt.Sprintf("over/%s/%s/%s", a.UID, a.Status.Phase, strings.Join(extra, ","))) {
		return nil
	}
	gives := "no device (it is " + string(a.Status.Phase) + ")"
	if len(given) > 0 {
		gives = strings.Join(given, ",")
	}
	msg := fmt.Sprintf("uses %s beyond allocation %s, which gives %s", strings.Join(extra, ","), a.Name, gives)
	action := p.String("onUnallocatedGPU", string(gpuwardenv1alpha1.UnallocatedGPURecord))
	u := actions.Unallocated{Container: c, Owner: containerstore.OwnerOrUnknown(owner), On: a, Devices: extra, Reason: reasons.OverAllocation,
		Note: fmt.Sprintf("Container %s %s (%s); policy: %s", message.ContainerName(c), msg, reasons.OverAllocation, action), Policy: p}
	if action == string(gpuwardenv1alpha1.UnallocatedGPUStop) {
		u.Stop = "over_allocation: " + msg
	}
	return r.Actions.ReportUnallocated(ctx, u)
}

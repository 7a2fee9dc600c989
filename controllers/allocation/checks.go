package allocation

// What a pass checks besides the decision itself: that gpuwarden made what says it did, that
// a request can ever be met, which devices run processes of no allocation.

import (
	"context"
	"errors"
	"fmt"
	"slices"

	ctrl "sigs.k8s.io/controller-runtime"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/provenance"
)

// signed reports whether gpuwarden made a (its signature matches its spec).
func (p *pass) signed(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) (bool, error) {
	if p.key == nil && p.storedKey != "" {
		// Beside the ledger this pass has read already.
		if key, err := provenance.ParseKey(p.storedKey); err == nil {
			p.key = key
		}
	}
	if p.key == nil {
		key, err := ledger.SigningKey(ctx, p.r.Reader, p.r.Client, p.r.LedgerNamespace)
		if err != nil {
			return false, err
		}
		p.key = key
	}
	return provenance.Verify(p.key, a), nil
}

// unsatisfiable says why req can never be met — on this node, or for a request not yet
// given a node, on any node — or "" when it can, or when that is not known. This node's
// inventory is what the GPU back end lists (complete, unlike GPU objects still being
// written) together with the GPU objects of GPUs it no longer lists (lost, maybe back later).
func (p *pass) unsatisfiable(ctx context.Context, req allocation.Request, anyNode bool) string {
	if p.complete == nil && !p.local() {
		// Another node's: what its GPU objects say (its controller lists its devices).
		p.complete = allocation.SlotsOf(p.nodeGPUs)
	}
	if p.complete == nil {
		p.complete = append([]allocation.Slot{}, p.r.listedSlots(ctx)...)
		if len(p.complete) == 0 {
			return "" // the back end lists nothing for sure: keep waiting
		}
		// A GPU that fell off the bus is not listed, but its object stays: what it offered
		// may come back, so it still counts as there.
		for _, s := range allocation.SlotsOf(p.nodeGPUs) {
			if !slices.ContainsFunc(p.complete, func(c allocation.Slot) bool { return c.UUID == s.UUID }) {
				p.complete = append(p.complete, s)
			}
		}
	}
	if len(p.complete) == 0 {
		return ""
	}
	why := allocation.Unsatisfiable(p.complete, req, p.node)
	if why == "" || !anyNode {
		return why
	}
	var all gpuwardenv1alpha1.GPUList
	if err := p.r.cached().List(ctx, &all); err != nil {
		return ""
	}
	byNode := map[string][]gpuwardenv1alpha1.GPU{}
	for _, g := range all.Items {
		if n := g.Labels[gpuwardenv1alpha1.LabelNode]; n != p.node {
			byNode[n] = append(byNode[n], g)
		}
	}
	for node, gpus := range byNode {
		if allocation.Unsatisfiable(allocation.SlotsOf(gpus), req, node) == "" {
			return "" // another node may meet it
		}
	}
	if len(byNode) > 0 {
		why += fmt.Sprintf(", nor can any of the %d other GPU nodes", len(byNode))
	}
	return why
}

// listedSlots are the slots of every device the GPU back end lists (none when it cannot
// say), read at most once per gpu.InventoryInterval: waiting requests make every pass
// ask, and the inventory changes far more slowly than passes run.
func (r *Reconciler) listedSlots(ctx context.Context) []allocation.Slot {
	if r.GPUs == nil {
		return nil
	}
	r.listedMu.Lock()
	defer r.listedMu.Unlock()
	if now := r.Clock.Now(); r.listedAt.IsZero() || now.Sub(r.listedAt) >= gpu.InventoryInterval {
		devices, err := r.GPUs.Devices(ctx)
		if err != nil {
			return nil // nothing known for sure: keep waiting, and ask again next time
		}
		gpus := make([]gpuwardenv1alpha1.GPU, 0, len(devices))
		for _, d := range devices {
			gpus = append(gpus, gpuwardenv1alpha1.GPU{Spec: gpuwardenv1alpha1.GPUSpec{Index: int32(d.Index)}, Status: gpu.StatusOf(d)})
		}
		r.listed, r.listedAt = allocation.SlotsOf(gpus), now
	}
	return r.listed
}

// markForeign marks slots with processes on them. Held slots are skipped by the decision
// anyway, so any process on a free slot is one that belongs to no allocation.
func (r *Reconciler) markForeign(ctx context.Context, slots []allocation.Slot) []allocation.Slot {
	if r.GPUs == nil {
		return slots
	}
	procs, err := r.GPUs.Processes(ctx)
	if err != nil && !errors.Is(err, gpu.ErrNoDriver) {
		ctrl.LoggerFrom(ctx).Error(err, "Reading GPU processes; deciding without them")
	}
	busy := map[string]bool{}
	for _, pr := range procs {
		busy[pr.DeviceUUID] = true
	}
	for i := range slots {
		slots[i].Foreign = busy[slots[i].UUID]
	}
	return slots
}

// ownProcesses returns the inventory with the named devices' processes counted as the
// requester's own.
func ownProcesses(inventory []allocation.Slot, devices []string) []allocation.Slot {
	out := slices.Clone(inventory)
	for i := range out {
		if slices.Contains(devices, out[i].UUID) {
			out[i].Foreign = false
		}
	}
	return out
}

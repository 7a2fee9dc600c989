package allocation

import (
	"sort"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// SlotsOf turns GPU objects into slots: a whole GPU when MIG is off, else its instances,
// each costing the weight its GPU object records. Slots are in GPU index order, instances in
// the GPU's own order (the order "4:0", "4:1" name them). GPUs whose UUID is not known yet
// give none.
func SlotsOf(gpus []gpuwardenv1alpha1.GPU) []Slot {
	var out []Slot
	for _, g := range gpus {
		healthy := g.Status.Health == gpuwardenv1alpha1.HealthHealthy
		if g.Status.MIGMode != gpuwardenv1alpha1.MIGEnabled {
			if g.Status.UUID != "" {
				out = append(out, Slot{GPUIndex: int(g.Spec.Index), GPUUUID: g.Status.UUID, UUID: g.Status.UUID, Healthy: healthy})
			}
			continue
		}
		for _, in := range g.Status.MIGInstances {
			out = append(out, Slot{GPUIndex: int(g.Spec.Index), GPUUUID: g.Status.UUID, UUID: in.UUID, Profile: in.Profile,
				Share: in.Weight.AsApproximateFloat64(), Healthy: healthy})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].GPUIndex < out[j].GPUIndex })
	return out
}

// Queued is what orders a waiting request.
type Queued struct {
	Name     string
	Priority int32
	// Share is the requester's fair share: their recent use over their quota, less the
	// credit of the time waited; the lower goes first.
	Share   float64
	Created time.Time
}

// ShareResolution is the step fair shares are compared in: users whose recent use over
// quota differ by less (three minutes of their whole quota) are taken as equal, and their
// requests wait in order of age.
const ShareResolution = 0.05

// SortQueue orders waiting requests as they are decided: highest quota priority first,
// then the lowest fair share, then the oldest, then by name.
func SortQueue[T any](queue []T, key func(T) Queued) {
	sort.SliceStable(queue, func(i, j int) bool {
		a, b := key(queue[i]), key(queue[j])
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		if x, y := ShareStep(a.Share), ShareStep(b.Share); x != y {
			return x < y
		}
		if !a.Created.Equal(b.Created) {
			return a.Created.Before(b.Created)
		}
		return a.Name < b.Name
	})
}

package gpu

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// InventoryInterval is how often the node's GPUs are listed for their GPU objects; what
// reads the back end's list for a decision need not ask more often.
const InventoryInterval = 10 * time.Second

// ObjectName is the name of the GPU object of a node's GPU by index.
func ObjectName(node string, index int) string { return fmt.Sprintf("%s-gpu%d", node, index) }

// StatusOf is the GPU object status for what NVML reports.
func StatusOf(d Device) gpuwardenv1alpha1.GPUStatus {
	s := gpuwardenv1alpha1.GPUStatus{
		UUID:          d.UUID,
		Model:         d.Model,
		MIGMode:       gpuwardenv1alpha1.MIGMode(d.MIG),
		Health:        gpuwardenv1alpha1.GPUHealth(d.Health),
		HealthMessage: d.HealthMessage,
		// utilisation is a slow-moving number here: live values are metrics
		UtilizationPercent: int32(d.UtilizationPercent),
		LastXID:            int64(d.LastXID),
	}
	if d.MemoryBytes > 0 {
		s.Memory = resource.NewQuantity(int64(d.MemoryBytes), resource.BinarySI)
	}
	for _, in := range d.Instances {
		s.MIGInstances = append(s.MIGInstances, gpuwardenv1alpha1.MIGInstance{
			UUID: in.UUID, Profile: in.Profile, GPUInstanceID: int32(in.GPUInstanceID),
			ComputeInstanceID: int32(in.ComputeInstanceID), Weight: Weight(in.Slices, d.TotalSlices),
		})
	}
	return s
}

// Weight is slices/total as a quantity, to the nano (3/7 is 428571429n); 1 for a whole GPU.
func Weight(slices, total int) resource.Quantity {
	if total <= 0 || slices >= total {
		return resource.MustParse("1")
	}
	nanos := (int64(slices)*1_000_000_000 + int64(total)/2) / int64(total)
	return *resource.NewScaledQuantity(nanos, resource.Nano)
}

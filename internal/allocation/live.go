package allocation

import (
	"slices"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// Live reports whether an allocation still holds or waits for devices: not being deleted,
// no release asked, and Pending (or not decided yet) or Bound.
func Live(a *gpuwardenv1alpha1.GPUAllocation) bool {
	return a.DeletionTimestamp == nil && a.Annotations[gpuwardenv1alpha1.AnnotationRelease] == "" &&
		(a.Status.Phase == "" || a.Status.Phase == gpuwardenv1alpha1.PhasePending || a.Status.Phase == gpuwardenv1alpha1.PhaseBound)
}

// HeldElsewhere returns a live Bound allocation of the node (none of those own reports as
// the asker's own) that holds one of the devices, and that device.
func HeldElsewhere(items []gpuwardenv1alpha1.GPUAllocation, devices []string, node string, own func(*gpuwardenv1alpha1.GPUAllocation) bool) (*gpuwardenv1alpha1.GPUAllocation, string) {
	for i := range items {
		a := &items[i]
		if a.Spec.NodeName != node && a.Spec.NodeName != "" || a.Status.Phase != gpuwardenv1alpha1.PhaseBound || !Live(a) || own(a) {
			continue
		}
		for _, d := range a.Status.Devices {
			if slices.Contains(devices, d.UUID) {
				return a, d.UUID
			}
		}
	}
	return nil, ""
}

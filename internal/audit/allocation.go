package audit

import gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"

// AllocationOf is an allocation's reference in a record, from its status: the devices it
// holds and what they cost, with container c.
func AllocationOf(a *gpuwardenv1alpha1.GPUAllocation, c Container) Allocation {
	ref := Allocation{Name: a.Name, Container: c}
	for _, d := range a.Status.Devices {
		ref.Devices = append(ref.Devices, d.UUID)
	}
	if a.Status.GPUEquivalents != nil {
		ref.GPUEquivalents = a.Status.GPUEquivalents.AsDec().String()
	}
	return ref
}

package gateway

import (
	"context"
	"errors"
	"strings"

	"github.com/moby/moby/api/types/container"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/labels"
)

// reacquireGPUs makes sure a GPU container's devices are held by an allocation of its owner
// before it runs again: a container whose hold passed while it was stopped gets a new
// allocation for the very devices its create was bound to (waiting, like a create, or
// refused with the reason), never runs on devices another allocation holds.
func (s *Server) reacquireGPUs(ctx context.Context, _ Caller, ct inspected) error {
	devices, asks := startDevices(&ct.HostConfig)
	if !asks {
		return nil
	}
	name := strings.TrimPrefix(ct.Name, "/")
	if len(devices) == 0 {
		return refused("container %s asks for GPUs without naming devices (it was not made through the gateway); recreate it with --gpus N to get free GPUs", name)
	}
	if s.GPUs == nil {
		return refused("this gateway gives out no GPUs")
	}
	owner, _ := labels.Owner(ct.Config.Labels)
	_, err := s.GPUs.Reacquire(ctx, owner, Starting{ID: ct.ID, Name: name, Allocation: ct.Config.Labels[gpuwardenv1alpha1.LabelAllocation],
		Devices: devices, Type: labels.ContainerType(ct.Config.Labels)})
	var ae *AllocationError
	if errors.As(err, &ae) {
		return &refusal{status: ae.Status, msg: ae.Message}
	}
	return err
}

// startDevices returns the devices a container's GPU device requests name, and whether it
// asks for GPUs at all (a request by count or for all names none).
func startDevices(hc *container.HostConfig) (devices []string, asks bool) {
	for _, d := range hc.DeviceRequests {
		switch {
		case d.Driver == "cdi":
			for _, id := range d.DeviceIDs {
				if dev, ok := strings.CutPrefix(id, "nvidia.com/gpu="); ok {
					asks = true
					if dev != "all" {
						devices = append(devices, dev)
					}
				}
			}
		case d.Driver == "nvidia" || d.Driver == "" && hasGPU(d.Capabilities):
			asks = true
			devices = append(devices, d.DeviceIDs...)
			if len(d.DeviceIDs) == 0 {
				return nil, true // a count, or all: not the devices of a create through the gateway
			}
		}
	}
	for _, d := range hc.Devices {
		if nvidiaDevice.MatchString(d.PathOnHost) {
			return nil, true // a device node: not the form a create through the gateway leaves
		}
	}
	return devices, asks
}

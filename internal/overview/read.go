package overview

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// Read lists the objects a snapshot is built from (users may list them all).
func Read(ctx context.Context, c client.Reader) (Input, error) {
	var in Input
	var gpus gpuwardenv1alpha1.GPUList
	if err := c.List(ctx, &gpus); err != nil {
		return in, fmt.Errorf("listing GPUs: %w", err)
	}
	var allocs gpuwardenv1alpha1.GPUAllocationList
	if err := c.List(ctx, &allocs); err != nil {
		return in, fmt.Errorf("listing GPU allocations: %w", err)
	}
	var quotas gpuwardenv1alpha1.GPUQuotaList
	if err := c.List(ctx, &quotas); err != nil {
		return in, fmt.Errorf("listing GPU quotas: %w", err)
	}
	var rsvs gpuwardenv1alpha1.GPUReservationList
	if err := c.List(ctx, &rsvs); err != nil {
		return in, fmt.Errorf("listing GPU reservations: %w", err)
	}
	var policies gpuwardenv1alpha1.ContainerPolicyList
	if err := c.List(ctx, &policies); err != nil {
		return in, fmt.Errorf("listing container policies: %w", err)
	}
	in.GPUs, in.Allocations, in.Quotas, in.Reservations, in.Policies = gpus.Items, allocs.Items, quotas.Items, rsvs.Items, policies.Items
	return in, nil
}

package controllers

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/provenance"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

// decideAs plays the allocation controller: the first Gateway allocation it sees gets st.
func decideAs(t *testing.T, c client.Client, st gpuwardenv1alpha1.GPUAllocationStatus) {
	t.Helper()
	go func() {
		for range 200 {
			var list gpuwardenv1alpha1.GPUAllocationList
			if c.List(context.Background(), &list) == nil && len(list.Items) > 0 {
				a := list.Items[0]
				a.Status = st
				_ = c.Status().Update(context.Background(), &a)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
}

func newGatewayAllocator(t *testing.T) (*GatewayAllocator, client.Client) {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithStatusSubresource(&gpuwardenv1alpha1.GPUAllocation{}).Build()
	return &GatewayAllocator{Client: c, Reader: c, NodeName: "n1", Clock: clock.RealClock{}, BindWait: 300 * time.Millisecond, Poll: 10 * time.Millisecond}, c
}

func TestGatewayAllocatorWaitsForTheBinding(t *testing.T) {
	g, c := newGatewayAllocator(t)
	decideAs(t, c, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseBound, Devices: []gpuwardenv1alpha1.BoundDevice{{UUID: "GPU-7"}}})
	name, uuids, err := g.Allocate(context.Background(), "alice", gateway.GPURequest{Count: 1}, "nb", gpuwardenv1alpha1.ContainerTypeDocker)
	if err != nil || len(uuids) != 1 || uuids[0] != "GPU-7" {
		t.Fatalf("Allocate = %s %v %v", name, uuids, err)
	}
	a := &gpuwardenv1alpha1.GPUAllocation{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, a); err != nil {
		t.Fatal(err)
	}
	if a.Spec.Source != gpuwardenv1alpha1.SourceGateway || a.Spec.User != "alice" || *a.Spec.Request.GPUs != 1 || !provenance.NeedsSignature(a) ||
		a.Annotations[gpuwardenv1alpha1.AnnotationSignature] == "" || a.Spec.ContainerName != "nb" {
		t.Errorf("the allocation made: %+v", a)
	}
}

func TestGatewayAllocatorRefusesAtOnceAndGivesUpWithThePosition(t *testing.T) {
	g, c := newGatewayAllocator(t)
	decideAs(t, c, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseRejected, Reason: gpuwardenv1alpha1.ReasonQuotaExceeded,
		Message: "2 of 2 gpu-equivalents in use (GPUQuota students)"})
	_, _, err := g.Allocate(context.Background(), "alice", gateway.GPURequest{Count: 1}, "", "")
	var ae *gateway.AllocationError
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, "GPUQuota students") {
		t.Errorf("a rejected request: %v", err)
	}
	var list gpuwardenv1alpha1.GPUAllocationList
	if _ = c.List(context.Background(), &list); len(list.Items) != 0 {
		t.Errorf("the rejected allocation is left: %d", len(list.Items))
	}

	decideAs(t, c, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhasePending, Reason: gpuwardenv1alpha1.ReasonNoCapacity, Message: "no free GPU"})
	_, _, err = g.Allocate(context.Background(), "alice", gateway.GPURequest{Count: 1}, "", "")
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "no GPU free after waiting 300ms: no free GPU") ||
		!strings.Contains(ae.Message, "number 1 of 1 waiting on n1") {
		t.Errorf("a request that waits too long: %v", err)
	}
	if _ = c.List(context.Background(), &list); len(list.Items) != 0 {
		t.Errorf("the abandoned allocation is left: %d", len(list.Items))
	}
}

package controllers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/provenance"
)

// DefaultGatewayBindWait is how long a create through the gateway waits for a GPU to free.
const DefaultGatewayBindWait = 3 * time.Minute

// GatewayAllocator gives a create through the gateway its GPUs: a signed Gateway
// GPUAllocation for the caller, decided by the allocation controller like any other, and
// waited for until Bound, refused, or BindWait passes while it waits for capacity.
type GatewayAllocator struct {
	Client client.Client
	// Reader reads the ledger (the signing key) from the API server itself.
	Reader          client.Reader
	NodeName        string
	LedgerNamespace string
	Clock           clock.Clock
	BindWait        time.Duration
	// Poll is how often the allocation is looked at while it waits.
	Poll time.Duration
}

var _ gateway.Allocator = (*GatewayAllocator)(nil)

// Allocate implements gateway.Allocator.
func (g *GatewayAllocator) Allocate(ctx context.Context, user string, req gateway.GPURequest, containerName string, t gpuwardenv1alpha1.ContainerType) (string, []string, error) {
	start := g.Clock.Now()
	request, err := g.request(ctx, req)
	if err != nil {
		return "", nil, err
	}
	suffix := make([]byte, 5)
	_, _ = rand.Read(suffix)
	a := &gpuwardenv1alpha1.GPUAllocation{
		ObjectMeta: metav1.ObjectMeta{Name: "gateway-" + hex.EncodeToString(suffix), Labels: map[string]string{gpuwardenv1alpha1.LabelNode: g.NodeName},
			Annotations: map[string]string{}},
		Spec: gpuwardenv1alpha1.GPUAllocationSpec{User: user, NodeName: g.NodeName, Request: request, ContainerType: t,
			Source: gpuwardenv1alpha1.SourceGateway, ContainerName: truncate(containerName, 256)},
	}
	ns := g.LedgerNamespace
	if ns == "" {
		ns = DefaultLedgerNamespace
	}
	key, err := signingKey(ctx, g.Reader, g.Client, ns)
	if err != nil {
		return "", nil, err
	}
	a.Annotations[gpuwardenv1alpha1.AnnotationSignature] = provenance.Sign(key, a)
	if err := g.Client.Create(ctx, a); err != nil {
		return "", nil, fmt.Errorf("creating the GPU allocation: %w", err)
	}
	poll := g.Poll
	if poll == 0 {
		poll = 100 * time.Millisecond
	}
	wait := g.BindWait
	if wait == 0 {
		wait = DefaultGatewayBindWait
	}
	for {
		cur := &gpuwardenv1alpha1.GPUAllocation{}
		if err := g.Client.Get(ctx, client.ObjectKeyFromObject(a), cur); err == nil {
			switch cur.Status.Phase {
			case gpuwardenv1alpha1.PhaseBound:
				var uuids []string
				for _, d := range cur.Status.Devices {
					uuids = append(uuids, d.UUID)
				}
				return a.Name, uuids, nil
			case gpuwardenv1alpha1.PhaseRejected:
				g.Release(context.Background(), a.Name)
				return "", nil, &gateway.AllocationError{Status: http.StatusForbidden, Message: fmt.Sprintf("no GPU for you: %s (%s)", cur.Status.Message, cur.Status.Reason)}
			}
			if g.Clock.Since(start) >= wait {
				position, waiting := g.queuePosition(ctx, cur)
				g.Release(context.Background(), a.Name)
				why := cur.Status.Message
				if why == "" {
					why = "not decided yet"
				}
				return "", nil, &gateway.AllocationError{Status: http.StatusServiceUnavailable, Message: fmt.Sprintf(
					"no GPU free after waiting %s: %s; your request was number %d of %d waiting on %s (try again later, or ask for fewer GPUs)",
					wait, why, position, waiting, g.NodeName)}
			}
		}
		select {
		case <-ctx.Done(): // the caller gave up
			g.Release(context.Background(), a.Name)
			return "", nil, ctx.Err()
		case <-g.Clock.After(poll):
		}
	}
}

// request turns the gateway's GPU request into the allocation's; "all" is every GPU of the node.
func (g *GatewayAllocator) request(ctx context.Context, req gateway.GPURequest) (gpuwardenv1alpha1.AllocationRequest, error) {
	switch {
	case req.MIGProfile != "":
		return gpuwardenv1alpha1.AllocationRequest{MIGProfile: req.MIGProfile}, nil
	case len(req.Devices) > 0:
		return gpuwardenv1alpha1.AllocationRequest{Devices: req.Devices}, nil
	case req.All:
		var gpus gpuwardenv1alpha1.GPUList
		if err := g.Client.List(ctx, &gpus, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: g.NodeName}); err != nil {
			return gpuwardenv1alpha1.AllocationRequest{}, fmt.Errorf("listing the node's GPUs: %w", err)
		}
		n := int32(len(gpus.Items))
		return gpuwardenv1alpha1.AllocationRequest{GPUs: &n}, nil
	}
	n := int32(req.Count)
	return gpuwardenv1alpha1.AllocationRequest{GPUs: &n}, nil
}

// queuePosition is the allocation's place among the node's waiting requests, oldest first.
func (g *GatewayAllocator) queuePosition(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) (position, waiting int) {
	var list gpuwardenv1alpha1.GPUAllocationList
	if err := g.Client.List(ctx, &list); err != nil {
		return 1, 1
	}
	position = 1
	for _, o := range list.Items {
		if o.Spec.NodeName != g.NodeName || (o.Status.Phase != "" && o.Status.Phase != gpuwardenv1alpha1.PhasePending) {
			continue
		}
		waiting++
		if o.Name != a.Name && o.CreationTimestamp.Before(&a.CreationTimestamp) {
			position++
		}
	}
	return position, max(waiting, 1)
}

// Release implements gateway.Allocator: the allocation is deleted, its GPUs free at once.
func (g *GatewayAllocator) Release(ctx context.Context, name string) {
	a := &gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := g.Client.Delete(ctx, a); err != nil && !apierrors.IsNotFound(err) {
		ctrl.Log.WithName("gateway").Error(err, "Giving back the GPUs of a create that failed", "allocation", name)
	}
}

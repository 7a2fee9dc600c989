package allocation

// Where the passes read from. Deciding for its node alone, a process reads the manager's
// cache. As the cluster's allocator it reads a cache of its own, of every node's
// allocations, GPUs and quotas, kept only while it leads: the nodes' processes cache their
// own node's allocations and GPUs alone (NodeScoped), so that a write reaches the
// processes that need it, not every node of the cluster.

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// NodeScoped narrows a node's caches to its own allocations and GPUs (by spec.nodeName, a
// selectable field of both): for a process whose node does not decide for itself, because
// the cluster's allocator decides for every node.
func NodeScoped(node string) map[client.Object]fields.Selector {
	mine := fields.OneTermEqualSelector("spec.nodeName", node)
	return map[client.Object]fields.Selector{&gpuwardenv1alpha1.GPUAllocation{}: mine, &gpuwardenv1alpha1.GPU{}: mine}
}

// cached is what the passes read allocations, GPUs and quotas from: the manager's cache,
// or as the cluster's allocator, the cache of its latest term.
func (r *Reconciler) cached() client.Reader {
	if v := r.view.Load(); v != nil {
		return *v
	}
	return r.Client
}

// terms runs the allocation controller of each term this process leads, on a cache of
// every node's objects made for that term: its informers start when the term starts and
// stop when it ends, so that a process that does not lead watches nothing beyond its node.
type terms struct {
	r   *Reconciler
	mgr ctrl.Manager
	// started receives each term's context (it ends with the term).
	started chan context.Context
}

// NeedLeaderElection: only a node's active controller competes for the cluster's Lease.
func (t *terms) NeedLeaderElection() bool { return true }

// Start runs each term as it comes, until ctx ends. A term that cannot be set up stops the
// process: holding the Lease without deciding would leave every node waiting.
func (t *terms) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case term := <-t.started:
			if err := t.run(ctx, term); err != nil {
				return err
			}
		}
	}
}

func (t *terms) run(ctx, term context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(term, cancel)()
	view, err := cache.New(t.mgr.GetConfig(), cache.Options{Scheme: t.mgr.GetScheme(), Mapper: t.mgr.GetRESTMapper(), HTTPClient: t.mgr.GetHTTPClient()})
	if err != nil {
		return fmt.Errorf("the allocator's cache: %w", err)
	}
	c, err := controller.NewUnmanaged("allocation", controller.Options{
		Reconciler: t.r, Logger: t.mgr.GetLogger(), SkipNameValidation: ptr.To(true), // one per term
	})
	if err != nil {
		return fmt.Errorf("the allocator's controller: %w", err)
	}
	start := make(chan event.GenericEvent, 1)
	start <- event.GenericEvent{Object: &gpuwardenv1alpha1.GPUAllocation{}}
	if err := t.r.watch(c, view, start); err != nil {
		return err
	}
	go func() {
		if err := view.Start(ctx); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "The allocator's cache stopped")
		}
	}()
	if !view.WaitForCacheSync(ctx) {
		return nil // the term ended (or the process stops) before the cache synced
	}
	var read client.Reader = view
	t.r.view.Store(&read)
	if err := c.Start(ctx); err != nil && ctx.Err() == nil {
		ctrl.LoggerFrom(ctx).Error(err, "The allocator's controller stopped; waiting for the next term")
	}
	return nil
}

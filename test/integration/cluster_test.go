package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/controllers"
	allocationctrl "github.com/gpuwarden/gpuwarden/controllers/allocation"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	gwtestutil "github.com/gpuwarden/gpuwarden/internal/testutil"
)

// clusterLease is the allocator's Lease in these tests: short, so that a takeover is quick.
const clusterLease = 3 * time.Second

// runClusterNode runs every controller for node, its allocator one of the cluster's
// candidates (--cluster-allocator).
func runClusterNode(t *testing.T, node string) (stop func()) {
	t.Helper()
	fake, err := fakegpu.NewForNode("dgxa100", node)
	if err != nil {
		t.Fatal(err)
	}
	stop = startManager(t, controllers.Options{NodeName: node, GPUs: gpu.NewNVML(fake), Groups: resolve.StaticGroups{},
		ClusterAllocator: true, AllocatorLease: clusterLease})
	waitInventory(t, node, len(fake.UUIDs()))
	return stop
}

// allocatorLeader is the node whose process holds the allocator's Lease ("" for none).
func allocatorLeader(c client.Client) string {
	var l coordinationv1.Lease
	if c.Get(context.Background(), client.ObjectKey{Namespace: ledger.DefaultNamespace, Name: allocationctrl.LeaseName}, &l) != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	node, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
	return node
}

// TestOneAllocatorForThreeNodes: three nodes' controllers elect one allocator, which binds
// requests for every node against the shared quotas with no ledger conflict at all; killed
// in the middle of a burst, another takes over and every request is decided, no device
// twice and no quota exceeded.
func TestOneAllocatorForThreeNodes(t *testing.T) {
	c := allocationTest(t)
	createQuotas(t, c)
	stops := map[string]func(){}
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		stops[n] = runClusterNode(t, n)
	}
	var leader string
	gwtestutil.Eventually(t, 30*time.Second, "one allocator elected", func() bool {
		leader = allocatorLeader(c)
		return stops[leader] != nil
	})
	conflicts := testutil.ToFloat64(metrics.LedgerWrites.WithLabelValues("conflict"))

	// 12 users × quota 2 = 24 = the GPUs of the three nodes: every request is bound.
	burst(t, c, "one", "", 12, 2)
	var allocs []gpuwardenv1alpha1.GPUAllocation
	gwtestutil.Eventually(t, 60*time.Second, "the 24 GPUs of the three nodes bound", func() bool {
		allocs = settled(t, c, 24)
		return count(allocs, gpuwardenv1alpha1.PhaseBound, "") == 24
	})
	nodes := map[string]int{}
	for _, a := range allocs {
		if a.Status.Phase == gpuwardenv1alpha1.PhaseBound {
			nodes[a.Spec.NodeName]++
		}
	}
	if nodes["node-a"] != 8 || nodes["node-b"] != 8 || nodes["node-c"] != 8 {
		t.Errorf("bound per node = %v, want 8 on each of the three", nodes)
	}
	if got := testutil.ToFloat64(metrics.LedgerWrites.WithLabelValues("conflict")) - conflicts; got != 0 {
		t.Errorf("%v ledger conflicts with one allocator, want none", got)
	}

	// Released, then a second burst, the allocator killed in the middle of it.
	if err := c.DeleteAllOf(context.Background(), &gpuwardenv1alpha1.GPUAllocation{}); err != nil {
		t.Fatal(err)
	}
	gwtestutil.Eventually(t, 30*time.Second, "the first burst gone", func() bool {
		var l gpuwardenv1alpha1.GPUAllocationList
		return c.List(context.Background(), &l) == nil && len(l.Items) == 0
	})
	done := make(chan struct{})
	go func() { defer close(done); burst(t, c, "two", "", 12, 2) }()
	gwtestutil.Eventually(t, 30*time.Second, "some of the second burst bound", func() bool {
		var l gpuwardenv1alpha1.GPUAllocationList
		return c.List(context.Background(), &l) == nil && count(l.Items, gpuwardenv1alpha1.PhaseBound, "") >= 2
	})
	killed := time.Now()
	stops[leader]()
	<-done
	var next string
	gwtestutil.Eventually(t, 30*time.Second, "another allocator elected", func() bool {
		next = allocatorLeader(c)
		return next != "" && next != leader
	})
	t.Logf("%s took over from %s %s after it stopped", next, leader, time.Since(killed).Round(100*time.Millisecond))
	// Its node's GPUs are the stopped node's objects still: the 16 of the two others, at
	// least, are bound.
	gwtestutil.Eventually(t, 60*time.Second, "the second burst decided by the new allocator", func() bool {
		allocs := settled(t, c, 24)
		return count(allocs, gpuwardenv1alpha1.PhaseBound, "") >= 16
	})
}

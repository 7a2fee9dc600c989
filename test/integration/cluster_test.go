package integration

import (
	"context"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/controllers"
	allocationctrl "github.com/gpuwarden/gpuwarden/controllers/allocation"
	"github.com/gpuwarden/gpuwarden/internal/controlplane/controlplanetest"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/manager"
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
	nodes := allBound(t, c, 24, 24)
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

// cuttable forwards TCP connections to an address until it is cut: then every connection
// is closed and new ones are refused, as for a node that lost its network (or a process
// killed with SIGKILL, whose Lease is not given back), until it heals.
type cuttable struct {
	ln    net.Listener
	to    string
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func newCuttable(t *testing.T, to string) *cuttable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cuttable{ln: ln, to: to}
	t.Cleanup(func() { ln.Close(); c.setCut(true) })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			if c.cut {
				c.mu.Unlock()
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				c.mu.Unlock()
				in.Close()
				continue
			}
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return c
}

func (c *cuttable) setCut(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	if cut {
		for _, conn := range c.conns {
			conn.Close()
		}
		c.conns = nil
	}
}

// TestAllocatorCutOffFromTheAPIServer: the allocator's node loses the API server in the
// middle of a burst (its Lease is not given back, as after a kill -9). Another node takes
// over once the Lease runs out and decides every request; when the first comes back it
// follows, and no device is bound twice nor a quota exceeded at any point.
func TestAllocatorCutOffFromTheAPIServer(t *testing.T) {
	c := allocationTest(t)
	createQuotas(t, c)
	base := controlplanetest.Get(t).Config()
	u, err := url.Parse(base.Host)
	if err != nil {
		t.Fatal(err)
	}
	link := newCuttable(t, u.Host)
	cfg := rest.CopyConfig(base)
	cfg.Host = "https://" + link.ln.Addr().String()
	fake, err := fakegpu.NewForNode("dgxa100", "node-a")
	if err != nil {
		t.Fatal(err)
	}
	startManagerWith(t, cfg, controllers.Options{NodeName: "node-a", GPUs: gpu.NewNVML(fake), Groups: resolve.StaticGroups{},
		ClusterAllocator: true, AllocatorLease: clusterLease})
	waitInventory(t, "node-a", len(fake.UUIDs()))
	gwtestutil.Eventually(t, 30*time.Second, "node-a elected first", func() bool { return allocatorLeader(c) == "node-a" })
	runClusterNode(t, "node-b")
	runClusterNode(t, "node-c")

	done := make(chan struct{})
	go func() { defer close(done); burst(t, c, "cut", "", 12, 2) }()
	gwtestutil.Eventually(t, 30*time.Second, "some of the burst bound", func() bool {
		var l gpuwardenv1alpha1.GPUAllocationList
		return c.List(context.Background(), &l) == nil && count(l.Items, gpuwardenv1alpha1.PhaseBound, "") >= 2
	})
	cut := time.Now()
	link.setCut(true)
	<-done
	var next string
	gwtestutil.Eventually(t, 30*time.Second, "another allocator elected", func() bool {
		next = allocatorLeader(c)
		return next != "" && next != "node-a"
	})
	t.Logf("%s took over %s after node-a was cut off (lease %s)", next, time.Since(cut).Round(100*time.Millisecond), clusterLease)
	// node-a's GPU objects stay: the new allocator may bind them too.
	gwtestutil.Eventually(t, 60*time.Second, "the burst decided by the new allocator", func() bool {
		return count(settled(t, c, 24), gpuwardenv1alpha1.PhaseBound, "") >= 16
	})

	// node-a comes back, competing again: whoever leads, nothing decided before it was cut
	// off counts twice.
	link.setCut(false)
	gwtestutil.Consistently(t, 3*clusterLease, "every invariant, node-a back", func() bool {
		return count(settled(t, c, 24), gpuwardenv1alpha1.PhaseBound, "") >= 16
	})
	t.Logf("the allocator after node-a came back: %s", allocatorLeader(c))
}

// TestANodeCachesItsOwnAllocationsAndGPUs: where the cluster's allocator decides, a node's
// process caches its own node's allocations and GPUs alone (spec.nodeName, a selectable
// field), not every node's: a write elsewhere costs it nothing.
func TestANodeCachesItsOwnAllocationsAndGPUs(t *testing.T) {
	c := allocationTest(t)
	ctx := context.Background()
	for _, a := range []*gpuwardenv1alpha1.GPUAllocation{
		gwtestutil.MakeAllocation("scope-a").User("alice").Node("node-a").GPUs(1).Obj(),
		gwtestutil.MakeAllocation("scope-b").User("alice").Node("node-b").GPUs(1).Obj(),
		gwtestutil.MakeAllocation("scope-any").User("alice").GPUs(1).Obj(),
	} {
		if err := c.Create(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []*gpuwardenv1alpha1.GPU{
		{ObjectMeta: metav1.ObjectMeta{Name: "node-a-gpu0"}, Spec: gpuwardenv1alpha1.GPUSpec{NodeName: "node-a"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "node-b-gpu0"}, Spec: gpuwardenv1alpha1.GPUSpec{NodeName: "node-b"}},
	} {
		if err := c.Create(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	mgr, err := manager.New(controlplanetest.Get(t).Config(), manager.Options{NodeName: "node-a", MetricsBindAddress: "0",
		HealthProbeBindAddress: "0", SkipNameValidation: true, Scoped: allocationctrl.NodeScoped("node-a")})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = mgr.Start(mctx) }()
	names := func(list client.ObjectList) string {
		if err := mgr.GetClient().List(mctx, list); err != nil {
			return err.Error()
		}
		var out []string
		items, _ := meta.ExtractList(list)
		for _, o := range items {
			out = append(out, o.(client.Object).GetName())
		}
		return strings.Join(out, ",")
	}
	gwtestutil.Eventually(t, 30*time.Second, "node-a's cache holds node-a's allocations and GPUs alone", func() (bool, string) {
		a, g := names(&gpuwardenv1alpha1.GPUAllocationList{}), names(&gpuwardenv1alpha1.GPUList{})
		return a == "scope-a" && g == "node-a-gpu0", "allocations " + a + "; GPUs " + g
	})
}

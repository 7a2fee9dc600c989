package integration

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/controllers"
	allocationctrl "github.com/gpuwarden/gpuwarden/controllers/allocation"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/controlplane/controlplanetest"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/manager"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// allocationMu keeps allocation tests apart: they share the API server and the ledger.
var allocationMu sync.Mutex

// allocationTest holds the allocation tests' lock for the test and starts it from a clean
// slate; it returns an admin client.
func allocationTest(tb testing.TB) client.Client {
	tb.Helper()
	allocationMu.Lock()
	tb.Cleanup(allocationMu.Unlock)
	c := controlplanetest.Get(tb).Client(tb)
	cleanSlate(tb, c)
	return c
}

// cleanSlate removes every allocation, quota, GPU, reservation and the ledger.
func cleanSlate(t testing.TB, c client.Client) {
	t.Helper()
	ctx := context.Background()
	for _, obj := range []client.Object{&gpuwardenv1alpha1.GPUAllocation{}, &gpuwardenv1alpha1.GPUQuota{}, &gpuwardenv1alpha1.GPU{}, &gpuwardenv1alpha1.GPUReservation{}} {
		if err := c.DeleteAllOf(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: ledger.Name}})
	testutil.Eventually(t, 30*time.Second, "a clean slate", func() bool {
		var allocs gpuwardenv1alpha1.GPUAllocationList
		var gpus gpuwardenv1alpha1.GPUList
		return c.List(ctx, &allocs) == nil && len(allocs.Items) == 0 && c.List(ctx, &gpus) == nil && len(gpus.Items) == 0
	})
}

// runManager runs every controller for node against the shared API server until the
// returned stop is called (or the test ends).
func runManager(t *testing.T, node string, groups resolve.Groups) (stop func()) {
	t.Helper()
	stop, _ = runManagerWithGPUs(t, node, groups)
	return stop
}

// runManagerWithGPUs is runManager that also returns the node's simulated GPUs.
func runManagerWithGPUs(t *testing.T, node string, groups resolve.Groups) (stop func(), fake *fakegpu.Server) {
	t.Helper()
	return runNode(t, controllers.Options{NodeName: node, Groups: groups})
}

// runNode is runManagerWithGPUs with the rest of the options o.
func runNode(t *testing.T, o controllers.Options) (stop func(), fake *fakegpu.Server) {
	t.Helper()
	fake, err := fakegpu.NewForNode("dgxa100", o.NodeName)
	if err != nil {
		t.Fatal(err)
	}
	o.GPUs = gpu.NewNVML(fake)
	stop = startManager(t, o)
	waitInventory(t, o.NodeName, len(fake.UUIDs()))
	return stop, fake
}

// waitInventory waits until node's n GPUs are known (UUID and health): requests made before
// then wait for capacity, which is right but not what the tests measure.
func waitInventory(t testing.TB, node string, n int) {
	t.Helper()
	c := controlplanetest.Get(t).Client(t)
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%d GPUs of %s in the inventory", n, node), func() bool {
		var gpus gpuwardenv1alpha1.GPUList
		if c.List(context.Background(), &gpus, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: node}) != nil {
			return false
		}
		known := 0
		for _, g := range gpus.Items {
			if g.Status.UUID != "" && g.Status.Health == gpuwardenv1alpha1.HealthHealthy {
				known++
			}
		}
		return known == n
	})
}

// startManager runs every controller with o (metrics and probes off) against the shared
// API server until the returned stop is called or the test ends.
func startManager(tb testing.TB, o controllers.Options) (stop func()) {
	tb.Helper()
	return startManagerWith(tb, controlplanetest.Get(tb).Config(), o)
}

// startManagerWith is startManager talking to the API server through cfg.
func startManagerWith(tb testing.TB, cfg *rest.Config, o controllers.Options) (stop func()) {
	tb.Helper()
	mo := manager.Options{NodeName: o.NodeName, MetricsBindAddress: "0", HealthProbeBindAddress: "0", SkipNameValidation: true, Watched: ledger.Watched()}
	if w, ok := o.Audit.(*audit.Writer); ok {
		mo.Audit = w
	}
	if o.ClusterAllocator { // as gpuwarden controller --cluster-allocator runs
		mo.Scoped = allocationctrl.NodeScoped(o.NodeName)
	}
	mgr, err := manager.New(cfg, mo)
	if err != nil {
		tb.Fatal(err)
	}
	if err := controllers.Setup(mgr, o); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			tb.Errorf("manager %s: %v", o.NodeName, err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	tb.Cleanup(stop)
	return stop
}

func createQuotas(t testing.TB, c client.Client) {
	t.Helper()
	for _, q := range []*testutil.QuotaWrapper{
		testutil.MakeQuota("everyone").Everyone().Priority(10).GPUEquivalents("2").MaxGPUsPerContainer(2).MaxContainers(3),
		testutil.MakeQuota("vip").Groups("vip").Precedence(10).Priority(50),
	} {
		if err := c.Create(context.Background(), q.Obj()); err != nil {
			t.Fatal(err)
		}
	}
}

// burst creates users × each 1-GPU allocations concurrently; node "" lets any node claim them.
func burst(t *testing.T, c client.Client, prefix, node string, users, each int) {
	t.Helper()
	var wg sync.WaitGroup
	for u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				a := testutil.MakeAllocation(fmt.Sprintf("%s-u%02d-%02d", prefix, u, i)).User(fmt.Sprintf("u%02d", u)).Node(node).GPUs(1).Obj()
				if err := c.Create(context.Background(), a); err != nil {
					t.Errorf("creating %s: %v", a.Name, err)
				}
			}
		}()
	}
	wg.Wait()
}

// settled waits until every allocation is decided (bound, rejected, or waiting for capacity)
// and checks the invariants; it returns the allocations.
func settled(t *testing.T, c client.Client, want int) []gpuwardenv1alpha1.GPUAllocation {
	t.Helper()
	var allocs gpuwardenv1alpha1.GPUAllocationList
	testutil.Eventually(t, 90*time.Second, "every allocation decided", func() bool {
		if err := c.List(context.Background(), &allocs); err != nil || len(allocs.Items) != want {
			return false
		}
		for _, a := range allocs.Items {
			if a.Status.Phase == "" || a.Status.Phase == gpuwardenv1alpha1.PhasePending && a.Status.Reason == "" {
				return false
			}
		}
		return true
	})
	checkInvariants(t, allocs.Items)
	return allocs.Items
}

// allBound waits until bound of want allocations are Bound (invariants checked all along)
// and returns how many each node holds.
func allBound(t *testing.T, c client.Client, want, bound int) map[string]int {
	t.Helper()
	var allocs []gpuwardenv1alpha1.GPUAllocation
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("%d GPUs bound", bound), func() bool {
		allocs = settled(t, c, want)
		return count(allocs, gpuwardenv1alpha1.PhaseBound, "") == bound
	})
	nodes := map[string]int{}
	for _, a := range allocs {
		if a.Status.Phase == gpuwardenv1alpha1.PhaseBound {
			nodes[a.Spec.NodeName]++
		}
	}
	return nodes
}

// checkInvariants: no device in two Bound allocations; nobody above 2 gpu-equivalents or 3 containers.
func checkInvariants(t *testing.T, allocs []gpuwardenv1alpha1.GPUAllocation) {
	t.Helper()
	holder := map[string]string{}
	perUser := map[string]int{}
	for _, a := range allocs {
		if a.Status.Phase != gpuwardenv1alpha1.PhaseBound {
			continue
		}
		perUser[a.Spec.User]++
		for _, d := range a.Status.Devices {
			key := a.Spec.NodeName + "/" + d.UUID
			if other, ok := holder[key]; ok {
				t.Errorf("device %s is bound to both %s and %s", key, other, a.Name)
			}
			holder[key] = a.Name
		}
	}
	for u, n := range perUser {
		if n > 2 {
			t.Errorf("%s holds %d GPUs, over the quota of 2", u, n)
		}
	}
}

func count(allocs []gpuwardenv1alpha1.GPUAllocation, phase gpuwardenv1alpha1.AllocationPhase, reason string) int {
	n := 0
	for _, a := range allocs {
		if a.Status.Phase == phase && (reason == "" || a.Status.Reason == reason) {
			n++
		}
	}
	return n
}

// TestConcurrentRequestsBindInPriorityOrder: 300 requests from 20 users against 8 GPUs.
func TestConcurrentRequestsBindInPriorityOrder(t *testing.T) {
	c := allocationTest(t)
	createQuotas(t, c)
	groups := resolve.StaticGroups{"u07": {"vip"}, "u13": {"vip"}}
	runManager(t, "node-a", groups)

	burst(t, c, "burst", "node-a", 20, 15)
	allocs := settled(t, c, 300)
	if bound := count(allocs, gpuwardenv1alpha1.PhaseBound, ""); bound != 8 {
		t.Fatalf("%d bound, want exactly the 8 GPUs", bound)
	}
	for _, a := range allocs {
		if a.Status.Phase == gpuwardenv1alpha1.PhaseRejected && a.Status.Reason != "QuotaExceeded" && a.Status.Reason != "MaxContainersExceeded" {
			t.Errorf("%s rejected for %s: %s", a.Name, a.Status.Reason, a.Status.Message)
		}
	}
	waiting := count(allocs, gpuwardenv1alpha1.PhasePending, "NoCapacity")
	if waiting == 0 {
		t.Fatal("nothing waits for capacity; the test needs a queue")
	}

	// Release bound allocations one at a time: each freed GPU goes to the first waiting
	// allocation in priority, then age, order whose user is still within quota.
	for round := 0; round < 6; round++ {
		var bound *gpuwardenv1alpha1.GPUAllocation
		for i := range allocs {
			if allocs[i].Status.Phase == gpuwardenv1alpha1.PhaseBound {
				bound = &allocs[i]
				break
			}
		}
		expect := firstEligible(allocs, groups, bound.Spec.User)
		if err := c.Delete(context.Background(), bound); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "the next waiting allocation bound", func() bool {
			a := &gpuwardenv1alpha1.GPUAllocation{}
			return c.Get(context.Background(), client.ObjectKey{Name: expect}, a) == nil && a.Status.Phase == gpuwardenv1alpha1.PhaseBound
		})
		allocs = settled(t, c, 300-round-1)
		if bound := count(allocs, gpuwardenv1alpha1.PhaseBound, ""); bound != 8 {
			t.Fatalf("round %d: %d bound, want 8", round, bound)
		}
	}
}

// firstEligible is the waiting allocation that should get the next free GPU: highest
// priority, then oldest, then by name; its user below quota once released frees theirs.
func firstEligible(allocs []gpuwardenv1alpha1.GPUAllocation, groups resolve.StaticGroups, releasing string) string {
	held := map[string]int{}
	for _, a := range allocs {
		if a.Status.Phase == gpuwardenv1alpha1.PhaseBound {
			held[a.Spec.User]++
		}
	}
	held[releasing]--
	var waiting []gpuwardenv1alpha1.GPUAllocation
	for _, a := range allocs {
		if a.Status.Phase == gpuwardenv1alpha1.PhasePending && held[a.Spec.User] < 2 {
			waiting = append(waiting, a)
		}
	}
	prio := func(a gpuwardenv1alpha1.GPUAllocation) int {
		if len(groups[a.Spec.User]) > 0 {
			return 50
		}
		return 10
	}
	sort.SliceStable(waiting, func(i, j int) bool {
		a, b := waiting[i], waiting[j]
		if prio(a) != prio(b) {
			return prio(a) > prio(b)
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
	return waiting[0].Name
}

// TestTwoNodesShareQuotas: two controllers, one API server, shared quotas, allocations
// that either node may claim. The ledger's changes move to its per-node shards every
// three, so both nodes race on a head whose bindings are mostly in the shards; released
// GPUs are bound again; the ledger read afresh holds exactly the Bound allocations.
func TestTwoNodesShareQuotas(t *testing.T) {
	c := allocationTest(t)
	createQuotas(t, c)
	const flushAt = 3
	runNode(t, controllers.Options{NodeName: "node-a", Groups: resolve.StaticGroups{}, LedgerFlushAt: flushAt})
	runNode(t, controllers.Options{NodeName: "node-b", Groups: resolve.StaticGroups{}, LedgerFlushAt: flushAt})

	burst(t, c, "two", "", 20, 10)
	// 20 users × quota 2 = 40 > 16 GPUs on the two nodes: every GPU gets bound. A snapshot
	// where all are decided can precede a node's retried claim: wait for the 16.
	nodes := allBound(t, c, 200, 16)
	if nodes["node-a"] != 8 || nodes["node-b"] != 8 {
		t.Errorf("bound per node = %v, want 8 each", nodes)
	}
	ledgerMatchesStatuses(t, c)

	// Four bound requests go: their GPUs are bound to waiting ones, through the shards.
	var allocs gpuwardenv1alpha1.GPUAllocationList
	if err := c.List(context.Background(), &allocs); err != nil {
		t.Fatal(err)
	}
	gone := 0
	for _, a := range allocs.Items {
		if a.Status.Phase == gpuwardenv1alpha1.PhaseBound && gone < 4 {
			if err := c.Delete(context.Background(), &a); err != nil {
				t.Fatal(err)
			}
			gone++
		}
	}
	allBound(t, c, 196, 16)
	ledgerMatchesStatuses(t, c)
	for _, node := range []string{"node-a", "node-b"} {
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ledger.DefaultNamespace, Name: ledger.ShardName(node)}, &corev1.ConfigMap{}); err != nil {
			t.Errorf("%s's shard of the ledger: %v", node, err)
		}
	}
}

// ledgerMatchesStatuses waits until the ledger, read afresh from its head and shards,
// holds exactly the Bound allocations, on their nodes.
func ledgerMatchesStatuses(t *testing.T, c client.Client) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, "the ledger holds the Bound allocations", func() (bool, string) {
		_, l, _, err := ledger.NewStore(c, c, ledger.DefaultNamespace).Read(context.Background(), true)
		if err != nil {
			return false, err.Error()
		}
		var allocs gpuwardenv1alpha1.GPUAllocationList
		if err := c.List(context.Background(), &allocs); err != nil {
			return false, err.Error()
		}
		bound := 0
		for _, a := range allocs.Items {
			b, in := l.Bindings[a.Name]
			if a.Status.Phase == gpuwardenv1alpha1.PhaseBound {
				bound++
				if !in || b.Node != a.Spec.NodeName {
					return false, fmt.Sprintf("%s: Bound on %s, in the ledger %v on %q", a.Name, a.Spec.NodeName, in, b.Node)
				}
			}
		}
		return len(l.Bindings) == bound, fmt.Sprintf("%d bindings, %d Bound", len(l.Bindings), bound)
	})
}

// TestControllerKilledMidBurst stops the controller while it binds and starts another.
func TestControllerKilledMidBurst(t *testing.T) {
	c := allocationTest(t)
	createQuotas(t, c)
	stop := runManager(t, "node-a", resolve.StaticGroups{})
	go burst(t, c, "kill", "node-a", 20, 8)
	testutil.Eventually(t, 30*time.Second, "some allocations bound", func() bool {
		var allocs gpuwardenv1alpha1.GPUAllocationList
		return c.List(context.Background(), &allocs) == nil && count(allocs.Items, gpuwardenv1alpha1.PhaseBound, "") >= 2
	})
	stop()
	runManager(t, "node-a", resolve.StaticGroups{})
	// The statuses the first controller left may be stale until the second has made a
	// pass: wait for all 8 GPUs to be bound, checking the invariants all along.
	testutil.Eventually(t, 60*time.Second, "all 8 GPUs bound after the restart", func() bool {
		allocs := settled(t, c, 160)
		return count(allocs, gpuwardenv1alpha1.PhaseBound, "") == 8
	})
}

// TestForeignProcessesKeepAGPUOut: a GPU running a process of no allocation is not given out.
func TestForeignProcessesKeepAGPUOut(t *testing.T) {
	c := allocationTest(t)
	_, fake := runManagerWithGPUs(t, "node-a", resolve.StaticGroups{})
	fake.SetProcesses(fake.UUIDs()[0], fakegpu.Process{PID: 4242, UsedMemoryBytes: 1 << 30})
	testutil.Eventually(t, 30*time.Second, "the inventory", func() bool {
		var gpus gpuwardenv1alpha1.GPUList
		return c.List(context.Background(), &gpus) == nil && len(gpus.Items) == 8
	})
	a := testutil.MakeAllocation("foreign-1").User("alice").Node("node-a").GPUs(1).Obj()
	if err := c.Create(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "bound", func() bool {
		return c.Get(context.Background(), client.ObjectKeyFromObject(a), a) == nil && a.Status.Phase == gpuwardenv1alpha1.PhaseBound
	})
	if d := a.Status.Devices; len(d) != 1 || d[0].Index != 1 {
		t.Errorf("bound %+v; GPU 0 runs a foreign process, want GPU 1", d)
	}
}

// TestReleaseOnRequestAndRetention: an allocation annotated gpuwarden.io/release gives its
// GPU back at once and stays visible as Released until the retention period has passed.
func TestReleaseOnRequestAndRetention(t *testing.T) {
	ctx := context.Background()
	c := allocationTest(t)
	clk := clocktesting.NewFakeClock(time.Now())
	fake, err := fakegpu.NewForNode("dgxa100", "node-r")
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, controllers.Options{NodeName: "node-r", GPUs: gpu.NewNVML(fake), Groups: resolve.StaticGroups{}, Clock: clk})

	newAlloc := func(name string, gpus int32) *gpuwardenv1alpha1.GPUAllocation {
		a := testutil.MakeAllocation(name).User("alice").Node("node-r").GPUs(gpus).Obj()
		if err := c.Create(ctx, a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	phase := func(a *gpuwardenv1alpha1.GPUAllocation, want gpuwardenv1alpha1.AllocationPhase) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%s %s", a.Name, want), func() bool {
			return c.Get(ctx, client.ObjectKeyFromObject(a), a) == nil && a.Status.Phase == want
		})
	}
	big := newAlloc("rel-big", 8)
	phase(big, gpuwardenv1alpha1.PhaseBound)
	small := newAlloc("rel-small", 1)
	phase(small, gpuwardenv1alpha1.PhasePending)
	if small.Status.Reason != "NoCapacity" {
		t.Fatalf("small = %+v, want NoCapacity while big holds every GPU", small.Status)
	}

	big.Annotations = map[string]string{gpuwardenv1alpha1.AnnotationRelease: "job finished"}
	if err := c.Update(ctx, big); err != nil {
		t.Fatal(err)
	}
	phase(big, gpuwardenv1alpha1.PhaseReleased)
	if big.Status.Message != "Devices given back: job finished" || big.Status.ReleasedTime == nil {
		t.Errorf("released status = %+v", big.Status)
	}
	phase(small, gpuwardenv1alpha1.PhaseBound)

	// Past the retention period the released allocation is deleted (the next pass sees it).
	clk.Step(controllers.DefaultRetention + time.Minute)
	newAlloc("rel-wake", 1)
	testutil.Eventually(t, 30*time.Second, "the released allocation deleted", func() bool {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(big), &gpuwardenv1alpha1.GPUAllocation{}))
	})
}

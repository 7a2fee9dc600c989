package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gwalloc "github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// The cluster's mode of the chaos suite: a server (the API server; its own node decides
// for itself) and three `gpuwarden controller --cluster-allocator`, which elect the one
// allocator for their nodes. Each round is a burst of requests across the nodes, under a
// per-user quota and a shared one, and, mid-burst, one fault: the allocator killed with
// SIGKILL (restarted), the allocator paused past its Lease (SIGSTOP) and resumed once
// another has taken over, or a controller that does not lead killed. Throughout, from the
// outside: no GPU bound twice, in the ledger or in the allocations' status; no quota
// exceeded; and at the end of each round every request decided and the ledger and the
// statuses telling the same. At the end, each allocation's binding is in the audit logs
// under one event_id.
const (
	clusterNodes    = 3
	clusterUsers    = 5
	clusterPerUser  = 3  // each user's gpu-equivalents (a PerUser quota)
	clusterShared   = 10 // everyone's together (a Shared quota)
	clusterPerRound = 16 // requests in a round's burst
	clusterLease    = 3 * time.Second
	// clusterLedgerFlushAt moves the ledger's changes to its shards every few decisions,
	// so that every round reads and writes the shards.
	clusterLedgerFlushAt = 5
	clusterRoundWait     = 90 * time.Second
)

func TestChaosClusterAllocator(t *testing.T) {
	_, err := exec.LookPath("kubectl")
	testutil.Require(t, err == nil, "kubectl is not installed")
	rounds, seed, rng := roundsAndSeed(t, "chaos across nodes")

	c := newCluster(t)
	var counts counts
	faults := []string{"kill -9 the allocator", "pause the allocator past its Lease", "kill -9 a controller that does not lead"}
	for round := 1; round <= rounds; round++ {
		fault := faults[rng.Intn(len(faults))]
		if round <= len(faults) {
			fault = faults[round-1] // every run has each fault at least once
		}
		counts.add("fault: "+fault, 1)
		c.round(round, fault, rng, &counts)
	}
	c.checkAudit(&counts)
	t.Logf("chaos across nodes: what ran and what was checked (seed %d):\n%s", seed, counts.String())
}

type cluster struct {
	t     *testing.T
	dir   string
	api   *server
	nodes []string
	ctrl  map[string]*server
	// client reads the ledger.
	client client.Client
	// watching checks the invariants while a round runs; violations are reported once each.
	mu       sync.Mutex
	reported map[string]bool
	checks   int
}

func newCluster(t *testing.T) *cluster {
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, ctrl: map[string]*server{}, reported: map[string]bool{}}
	data := filepath.Join(dir, "data")
	c.api = &server{t: t, kc: filepath.Join(data, "admin.kubeconfig"), args: []string{"server", "--web-bind-address", "0", "--data-dir", data, "--api-port", "0",
		"--node-name", "cx-0", "--fake-gpus", "h100x8", "--docker-host", "none", "--gateway-socket", "",
		"--audit-log", filepath.Join(dir, "cx-0.jsonl"), "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--ledger-flush-at", strconv.Itoa(clusterLedgerFlushAt)}}
	c.api.start()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.api.kc)
	if err != nil {
		t.Fatalf("reading the admin kubeconfig: %v", err)
	}
	if c.client, err = client.New(cfg, client.Options{Scheme: scheme.New()}); err != nil {
		t.Fatalf("connecting to the API server: %v", err)
	}
	t.Cleanup(func() {
		for _, s := range append([]*server{c.api}, c.controllers()...) {
			_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused one dies too
			select {
			case <-s.done:
			default:
				s.kill9()
			}
		}
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("%s's last output:\n%s", n, tail(c.ctrl[n].out.String(), 40))
			}
		}
	})
	for i := 1; i <= clusterNodes; i++ {
		n := fmt.Sprintf("cx-%d", i)
		c.nodes = append(c.nodes, n)
		c.ctrl[n] = &server{t: t, kc: c.api.kc, args: []string{"controller", "--kubeconfig", c.api.kc, "--node-name", n,
			"--fake-gpus", "h100x8", "--docker-host", "none", "--gateway-socket", "", "--install-crds=false", "--leader-elect=false",
			"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--cluster-allocator",
			"--allocator-lease-duration", clusterLease.String(), "--audit-log", filepath.Join(dir, n+".jsonl"),
			"--ledger-flush-at", strconv.Itoa(clusterLedgerFlushAt)}}
		c.ctrl[n].start()
	}
	quotas := fmt.Sprintf(`apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: cx-each}
spec: {subjects: [{kind: Everyone}], limits: {gpuEquivalents: "%d", maxGPUsPerContainer: 1}}
---
apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: cx-pool}
spec: {subjects: [{kind: Everyone}], scope: Shared, limits: {gpuEquivalents: "%d"}}
`, clusterPerUser, clusterShared)
	if out, err := c.api.kubectl(quotas, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v %s", err, out)
	}
	testutil.Eventually(t, 60*time.Second, "every node's GPUs and one allocator", func() (bool, string) {
		out, _ := c.api.kubectl("", "get", "gpus", "-o", `jsonpath={range .items[*]}{.spec.nodeName}{"\n"}{end}`)
		n := 0
		for _, node := range c.nodes {
			n += strings.Count(out, node+"\n")
		}
		return n == 8*clusterNodes && c.leader() != "", fmt.Sprintf("%d GPUs, allocator %q", n, c.leader())
	})
	return c
}

func (c *cluster) controllers() []*server {
	var out []*server
	for _, n := range c.nodes {
		out = append(out, c.ctrl[n])
	}
	return out
}

// leader is the node whose controller holds the allocator's Lease ("" when none is held).
func (c *cluster) leader() string {
	node, _, _ := strings.Cut(c.holder(), "_")
	if c.ctrl[node] == nil {
		return ""
	}
	return node
}

// holder is the Lease's holder identity (node and process).
func (c *cluster) holder() string {
	out, _ := c.api.kubectl("", "-n", "kube-system", "get", "lease", "gpuwarden-allocator", "-o", "jsonpath={.spec.holderIdentity}")
	return strings.TrimSpace(out)
}

func (c *cluster) round(round int, fault string, rng *rand.Rand, counts *counts) {
	t := c.t
	when := fmt.Sprintf("round %d (%s)", round, fault)
	// The last round's requests go: their GPUs and quota are released.
	if out, err := c.api.kubectl("", "delete", "ga", "--all", "--wait=false"); err != nil {
		t.Fatalf("%s: kubectl delete: %v %s", when, err, out)
	}
	testutil.Eventually(t, clusterRoundWait, "the last round's bindings released from the ledger", func() (bool, string) {
		l, err := c.ledger()
		return err == nil && len(l) == 0, fmt.Sprintf("%d bindings, %v", len(l), err)
	})
	var b strings.Builder
	for i := range clusterPerRound {
		node := c.nodes[rng.Intn(len(c.nodes))]
		fmt.Fprintf(&b, "---\napiVersion: gpuwarden.io/v1alpha1\nkind: GPUAllocation\nmetadata: {name: cx-r%d-%d}\nspec: {user: user%d, nodeName: %s, request: {gpus: 1}}\n",
			round, i, i%clusterUsers, node)
	}
	stop := c.watch(when)
	defer stop()
	applied := make(chan error, 1)
	go func() {
		out, err := c.api.kubectl(b.String(), "create", "-f", "-")
		if err != nil {
			err = fmt.Errorf("%v: %s", err, out)
		}
		applied <- err
	}()
	testutil.Eventually(t, clusterRoundWait, "the burst's first binds", func() (bool, string) {
		n := c.phases()
		return n["Bound"] >= 2, fmt.Sprint(n)
	})
	leader := c.leader()
	testutil.Require(t, leader != "", "%s: no allocator", when)
	faulted := time.Now()
	switch fault {
	case "kill -9 the allocator":
		c.ctrl[leader].kill9()
		testutil.Eventually(t, clusterRoundWait, "another allocator", func() (bool, string) {
			l := c.leader()
			return l != "" && l != leader, "the Lease holder: " + c.holder()
		})
		c.tookOver(faulted, counts)
		c.ctrl[leader].start()
	case "pause the allocator past its Lease":
		held := c.holder()
		_ = c.ctrl[leader].cmd.Process.Signal(syscall.SIGSTOP)
		testutil.Eventually(t, clusterRoundWait, "another allocator while the first is paused", func() (bool, string) {
			h := c.holder()
			return h != "" && h != held && c.leader() != "", "the Lease holder: " + h
		})
		c.tookOver(faulted, counts)
		// More requests reach the new allocator before the paused one resumes.
		time.Sleep(time.Duration(500+rng.Intn(1500)) * time.Millisecond)
		_ = c.ctrl[leader].cmd.Process.Signal(syscall.SIGCONT)
	case "kill -9 a controller that does not lead":
		var others []string
		for _, n := range c.nodes {
			if n != leader {
				others = append(others, n)
			}
		}
		victim := others[rng.Intn(len(others))]
		c.ctrl[victim].kill9()
		time.Sleep(time.Duration(rng.Intn(2000)) * time.Millisecond)
		c.ctrl[victim].start()
	}
	if err := <-applied; err != nil {
		t.Fatalf("%s: kubectl create: %v", when, err)
	}
	// Every request decided: as many Bound as the quotas allow, the rest waiting for quota
	// or refused.
	want := c.boundable()
	testutil.Eventually(t, clusterRoundWait, when+": every request decided", func() (bool, string) {
		n := c.phases()
		return n["Bound"] == want && n["Bound"]+n["Pending"]+n["Rejected"] == clusterPerRound, fmt.Sprintf("%v, want %d Bound", n, want)
	})
	// The ledger (the binding's durable truth) and the statuses tell the same.
	testutil.Eventually(t, 30*time.Second, when+": the ledger and the statuses agree", func() (bool, string) {
		l, err := c.ledger()
		if err != nil {
			return false, err.Error()
		}
		allocs, err := c.api.allocations()
		if err != nil {
			return false, err.Error()
		}
		for _, a := range allocs {
			bound, inLedger := a.Status.Phase == "Bound", l[a.Metadata.Name].Node != ""
			if bound != inLedger {
				return false, fmt.Sprintf("%s: phase %s, in the ledger %v", a.Metadata.Name, a.Status.Phase, inLedger)
			}
		}
		return true, ""
	})
	stop()
	counts.add("requests decided", clusterPerRound)
	counts.add("bound", want)
	c.mu.Lock()
	counts.add("invariant checks (ledger and statuses)", c.checks)
	c.checks = 0
	c.mu.Unlock()
}

// boundable is how many of a round's requests the quotas let be Bound at once.
func (c *cluster) boundable() int {
	per := map[int]int{}
	for i := range clusterPerRound {
		per[i%clusterUsers]++
	}
	n := 0
	for _, k := range per {
		n += min(k, clusterPerUser)
	}
	return min(n, clusterShared)
}

func (c *cluster) phases() map[string]int {
	out, _ := c.api.kubectl("", "get", "ga", "-o", `jsonpath={range .items[*]}{.status.phase}{"\n"}{end}`)
	n := map[string]int{}
	for _, p := range strings.Fields(out) {
		n[p]++
	}
	return n
}

// ledger reads the ledger as a controller does, from its head and per-node shards.
func (c *cluster) ledger() (map[string]gwalloc.Binding, error) {
	_, l, _, err := ledger.NewStore(c.client, c.client, ledger.DefaultNamespace).Read(context.Background(), true)
	if err != nil {
		return nil, fmt.Errorf("reading the ledger: %v", err)
	}
	return l.Bindings, nil
}

// watch checks the invariants every few hundred milliseconds until stopped: no GPU of a
// node held twice, no user over the per-user quota and everyone under the shared one, in
// the ledger and in the Bound statuses alike.
func (c *cluster) watch(when string) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-time.After(250 * time.Millisecond):
			}
			c.checkOnce(when)
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done); <-finished; c.checkOnce(when + ", at its end") })
	}
}

func (c *cluster) checkOnce(when string) {
	l, lerr := c.ledger()
	allocs, aerr := c.api.allocations()
	if lerr != nil || aerr != nil {
		return // the API server is not what is tested: a failed read checks nothing
	}
	type holding struct {
		name, user, node string
		uuids            []string
		weight           float64
	}
	var ledgerHeld, statusHeld []holding
	for name, b := range l {
		h := holding{name: name, user: b.User, node: b.Node}
		for _, s := range b.Slots {
			h.uuids, h.weight = append(h.uuids, s.UUID), h.weight+s.Weight
		}
		ledgerHeld = append(ledgerHeld, h)
	}
	for _, a := range allocs {
		if a.Status.Phase != "Bound" {
			continue
		}
		h := holding{name: a.Metadata.Name, user: a.Spec.User, node: a.Spec.NodeName}
		h.weight, _ = strconv.ParseFloat(a.Status.GPUEquivalents, 64)
		for _, d := range a.Status.Devices {
			h.uuids = append(h.uuids, d.UUID)
		}
		statusHeld = append(statusHeld, h)
	}
	for what, hs := range map[string][]holding{"the ledger": ledgerHeld, "the Bound statuses": statusHeld} {
		holder, perUser, total := map[string]string{}, map[string]float64{}, 0.0
		for _, h := range hs {
			for _, u := range h.uuids {
				key := h.node + "/" + u
				if other, ok := holder[key]; ok {
					c.report(fmt.Sprintf("%s: in %s, GPU %s bound to both %s and %s", when, what, key, other, h.name))
				}
				holder[key] = h.name
			}
			perUser[h.user] += h.weight
			total += h.weight
		}
		for u, w := range perUser {
			if w > clusterPerUser+1e-9 {
				c.report(fmt.Sprintf("%s: in %s, %s holds %.2f gpu-equivalents over the per-user quota of %d", when, what, u, w, clusterPerUser))
			}
		}
		if total > clusterShared+1e-9 {
			c.report(fmt.Sprintf("%s: in %s, %.2f gpu-equivalents held over the shared quota of %d", when, what, total, clusterShared))
		}
	}
	c.mu.Lock()
	c.checks++
	c.mu.Unlock()
}

func (c *cluster) report(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.reported[msg] {
		c.reported[msg] = true
		c.t.Error(msg)
	}
}

// checkAudit: each allocation's binding recorded under one event_id across every
// process's audit log (a decision is never made twice; what a killed process had not
// flushed is recorded again under the same ID).
func (c *cluster) checkAudit(counts *counts) {
	logs, _ := filepath.Glob(filepath.Join(c.dir, "cx-*.jsonl"))
	ids := testutil.DecisionIDs("gpu.allocate", logs...)
	for name, set := range ids {
		if len(set) > 1 {
			c.t.Errorf("%s decided %d times in the audit logs: %v", name, len(set), set)
		}
	}
	counts.add("allocations with gpu.allocate in the audit logs", len(ids))
}

// tookOver counts a takeover seen this long after the allocator was killed or paused (the
// Lease's duration is the floor; the target is within it and 2 s more).
func (c *cluster) tookOver(faulted time.Time, counts *counts) {
	took := time.Since(faulted)
	counts.add("takeovers", 1)
	if took <= clusterLease+2*time.Second {
		counts.add("takeovers within the Lease + 2 s", 1)
	}
	c.t.Logf("another allocator took over %s after the fault (Lease %s)", took.Round(100*time.Millisecond), clusterLease)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

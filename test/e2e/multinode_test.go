package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestManyNodesShareOneQuota runs a `gpuwarden controller` per simulated node (fake GPUs) against
// one API server, the way the Helm chart's DaemonSet does: each node's GPUs become GPU objects
// of that node, allocations bind on their own node only, and one quota shared across the nodes
// is never exceeded, however the requests are spread.
func TestManyNodesShareOneQuota(t *testing.T) {
	requireKubectl(t)
	dir := t.TempDir()
	s := startServer(t, dir, "mn-0", "--docker-host", "none")
	nodes := []string{"mn-1", "mn-2", "mn-3"}
	for _, n := range nodes {
		start(t, "controller", "--kubeconfig", s.kubeconfig, "--node-name", n, "--fake-gpus", "h100x8", "--docker-host", "none",
			"--install-crds=false", "--leader-elect=false", "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
			"--audit-log", filepath.Join(dir, n+"-audit.jsonl"))
	}
	testutil.Eventually(t, 60*time.Second, "8 GPUs on each node", func() (bool, string) {
		out := mustKubectl(t, s.kubeconfig, "get", "gpus", "-o", `jsonpath={range .items[*]}{.spec.nodeName}{"\n"}{end}`)
		for _, n := range nodes {
			if strings.Count(out, n+"\n") != 8 {
				return false, out
			}
		}
		return true, ""
	})
	// Alice may hold 5 GPU-equivalents in all, on any nodes; she asks for 4 on each of three.
	var b strings.Builder
	b.WriteString("apiVersion: gpuwarden.io/v1alpha1\nkind: GPUQuota\nmetadata: {name: mn-alice}\nspec: {subjects: [{kind: User, name: alice}], limits: {gpuEquivalents: \"5\", maxGPUsPerContainer: 1}}\n")
	for _, n := range nodes {
		for i := range 4 {
			fmt.Fprintf(&b, "---\napiVersion: gpuwarden.io/v1alpha1\nkind: GPUAllocation\nmetadata: {name: mn-%s-%d}\nspec: {user: alice, nodeName: %s, request: {gpus: 1}}\n", n, i, n)
		}
	}
	if out, err := kubectl(t, s.kubeconfig, b.String(), "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	type row struct{ name, node, phase, reason, uuid string }
	list := func() []row {
		out := mustKubectl(t, s.kubeconfig, "get", "ga", "-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase} {.status.reason} {.status.devices[0].uuid}{"\n"}{end}`)
		var rows []row
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(l + " - - - -")
			rows = append(rows, row{f[0], f[1], f[2], f[3], f[4]})
		}
		return rows
	}
	uuidsOf := map[string]string{}
	for _, n := range nodes {
		uuidsOf[n] = mustKubectl(t, s.kubeconfig, "get", "gpus", "-o", fmt.Sprintf(`jsonpath={range .items[?(@.spec.nodeName=="%s")]}{.status.uuid} {end}`, n))
	}
	// While they are decided, never more than the quota is Bound, each to its node's GPUs.
	var rows []row
	bound := 0
	testutil.Eventually(t, 60*time.Second, "every allocation decided", func() (bool, string) {
		rows, bound = list(), 0
		decided := 0
		for _, r := range rows {
			switch r.phase {
			case "Bound":
				bound++
				decided++
				if !strings.Contains(uuidsOf[r.node], r.uuid) {
					t.Fatalf("%s on %s is bound to %s, not one of that node's GPUs", r.name, r.node, r.uuid)
				}
			case "Rejected":
				decided++
			}
		}
		if bound > 5 {
			t.Fatalf("%d allocations Bound under a quota of 5 shared across nodes: %v", bound, rows)
		}
		return decided == len(rows) && len(rows) == 12, fmt.Sprint(rows)
	})
	if bound != 5 {
		t.Errorf("%d Bound, want the quota's 5: %v", bound, rows)
	}
	for _, r := range rows {
		if r.phase == "Rejected" && r.reason != "QuotaExceeded" {
			t.Errorf("%s rejected for %s, want QuotaExceeded", r.name, r.reason)
		}
	}
	// The quota's status counts alice's holdings across the nodes.
	testutil.Eventually(t, 30*time.Second, "the quota's usage across nodes", func() (bool, string) {
		out := mustKubectl(t, s.kubeconfig, "get", "gq", "mn-alice", "-o", `jsonpath={.status.usage[?(@.user=="alice")].gpuEquivalents}`)
		return out == "5", out
	})
}

// TestAllocatorKilledMidBurst: three `gpuwarden controller --cluster-allocator` elect one
// allocator (the API server's own `gpuwarden server` decides only for its node, which nobody
// asks for); the allocator is killed with SIGKILL in the middle of a burst, so its Lease is
// not given back. Another takes over once the Lease runs out, every request is decided, never
// more than the quota is Bound, and no allocation is decided twice in the audit logs (by
// event_id; what the killed process had not flushed is recorded again under the same IDs).
func TestAllocatorKilledMidBurst(t *testing.T) {
	requireKubectl(t)
	dir := t.TempDir()
	s := startServer(t, dir, "ak-0", "--docker-host", "none")
	nodes := []string{"ak-1", "ak-2", "ak-3"}
	procs := map[string]*process{}
	lease := 4 * time.Second
	for _, n := range nodes {
		procs[n] = start(t, "controller", "--kubeconfig", s.kubeconfig, "--node-name", n, "--fake-gpus", "h100x8", "--docker-host", "none",
			"--install-crds=false", "--leader-elect=false", "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
			"--cluster-allocator", "--allocator-lease-duration", lease.String(), "--audit-log", filepath.Join(dir, n+"-audit.jsonl"))
	}
	leader := func() string {
		out, _ := kubectl(t, s.kubeconfig, "", "-n", "kube-system", "get", "lease", "gpuwarden-allocator", "-o", "jsonpath={.spec.holderIdentity}")
		node, _, _ := strings.Cut(strings.TrimSpace(out), "_")
		return node
	}
	var first string
	testutil.Eventually(t, 60*time.Second, "24 GPUs and one allocator elected", func() (bool, string) {
		out := mustKubectl(t, s.kubeconfig, "get", "gpus", "-o", `jsonpath={range .items[*]}{.spec.nodeName}{"\n"}{end}`)
		first = leader()
		n := 0
		for _, node := range nodes {
			n += strings.Count(out, node+"\n")
		}
		return n == 24 && procs[first] != nil, fmt.Sprintf("%d GPUs, allocator %q", n, first)
	})

	// 20 GPU-equivalents shared by everyone, 24 requests, 8 on each node.
	var b strings.Builder
	b.WriteString("apiVersion: gpuwarden.io/v1alpha1\nkind: GPUQuota\nmetadata: {name: ak-pool}\nspec: {subjects: [{kind: Everyone}], scope: Shared, limits: {gpuEquivalents: \"20\"}}\n")
	for _, n := range nodes {
		for i := range 8 {
			fmt.Fprintf(&b, "---\napiVersion: gpuwarden.io/v1alpha1\nkind: GPUAllocation\nmetadata: {name: ak-%s-%d}\nspec: {user: user%d, nodeName: %s, request: {gpus: 1}}\n", n, i, i%4, n)
		}
	}
	applied := make(chan error, 1)
	go func() { _, err := kubectl(t, s.kubeconfig, b.String(), "apply", "-f", "-"); applied <- err }()
	phases := func() map[string]int {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "-o", `jsonpath={range .items[*]}{.status.phase}{"\n"}{end}`)
		n := map[string]int{}
		for _, p := range strings.Fields(out) {
			n[p]++
		}
		return n
	}
	testutil.Eventually(t, 60*time.Second, "the first binds", func() (bool, string) {
		n := phases()
		return n["Bound"] >= 2, fmt.Sprint(n)
	})
	killed, atKill := time.Now(), phases()
	if err := procs[first].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := <-applied; err != nil {
		t.Fatalf("kubectl apply: %v", err)
	}
	var next string
	testutil.Eventually(t, 60*time.Second, "another allocator", func() (bool, string) {
		next = leader()
		return next != "" && next != first, "the Lease holder: " + next
	})
	t.Logf("%s took over %s after %s was killed (lease %s); when it was killed: %v", next, time.Since(killed).Round(100*time.Millisecond), first, lease, atKill)
	testutil.Eventually(t, 90*time.Second, "every request decided: the quota's 20 Bound, 4 refused", func() (bool, string) {
		n := phases()
		if n["Bound"] > 20 {
			t.Fatalf("%d Bound under a shared quota of 20: %v", n["Bound"], n)
		}
		return n["Bound"] == 20 && n["Bound"]+n["Pending"]+n["Rejected"] == 24, fmt.Sprint(n)
	})

	// Each allocation decided once: one event_id for its gpu.allocate, whichever logs hold it.
	logs, _ := filepath.Glob(filepath.Join(dir, "ak-*-audit.jsonl"))
	ids := testutil.DecisionIDs("gpu.allocate", append(logs, filepath.Join(dir, "audit", "events.jsonl"))...)
	for name, set := range ids {
		if len(set) > 1 {
			t.Errorf("%s decided %d times in the audit logs: %v", name, len(set), set)
		}
	}
	if len(ids) < 20 {
		t.Errorf("gpu.allocate recorded for %d allocations, want the 20 Bound", len(ids))
	}
	t.Logf("gpu.allocate of %d allocations in %d audit logs, each under one event_id", len(ids), len(logs)+1)
}

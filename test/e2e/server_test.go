package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

var samples = filepath.Join("..", "..", "config", "samples")

type server struct {
	*process
	dataDir    string
	kubeconfig string
	probePort  int
	metricPort int
}

func startServer(t *testing.T, dataDir, node string, extra ...string) *server {
	t.Helper()
	s := &server{dataDir: dataDir, kubeconfig: filepath.Join(dataDir, "admin.kubeconfig"),
		probePort: testutil.FreePort(t), metricPort: testutil.FreePort(t)}
	args := append([]string{"server", "--data-dir", dataDir, "--api-port", "0", "--node-name", node,
		"--audit-log", filepath.Join(dataDir, "audit", "events.jsonl"),
		"--fake-gpus", "h100-mig",
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", s.metricPort),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", s.probePort)}, extra...)
	s.process = start(t, args...)
	return s
}

// TestServerServesAPIsAndKeepsDataAcrossRestart is the README's first command as an admin
// uses it: start, kubectl get and apply, stop with SIGTERM, start again, everything kept.
func TestServerServesAPIsAndKeepsDataAcrossRestart(t *testing.T) {
	requireKubectl(t)
	dir := t.TempDir()

	s := startServer(t, dir, "gpu01")
	t.Logf("cold start: ready after %s", s.readyAfter)
	testutil.Eventually(t, 5*time.Second, "the server says where the kubeconfig is", func() (bool, string) {
		return strings.Contains(s.out.String(), "export KUBECONFIG="+s.kubeconfig), s.out.String()
	})
	fi, err := os.Stat(s.kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode = %v, want 0600", fi.Mode().Perm())
	}

	out := mustKubectl(t, s.kubeconfig, "get", "gpuquotas,containerpolicies,gpuallocations,gpus")
	if !strings.Contains(out, "No resources found") {
		t.Errorf("kubectl get on a new server: %s", out)
	}
	if code, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/readyz", s.probePort)); code != 200 {
		t.Errorf("/readyz = %d %s", code, body)
	}
	// The inventory of the simulated h100-mig machine: 8 GPUs, 4 of them partitioned.
	testutil.Eventually(t, 30*time.Second, "8 GPU objects from the fake NVML", func() (bool, string) {
		out, err := kubectl(t, s.kubeconfig, "", "get", "gpus", "-o", `jsonpath={range .items[*]}{.spec.index}:{.status.migMode}:{.status.health}{" "}{end}`)
		want := "0:Disabled:Healthy 1:Disabled:Healthy 2:Disabled:Healthy 3:Disabled:Healthy 4:Enabled:Healthy 5:Enabled:Healthy 6:Enabled:Healthy 7:Enabled:Healthy "
		return err == nil && out == want, out
	})
	table := mustKubectl(t, s.kubeconfig, "get", "gpus")
	for _, col := range []string{"NODE", "INDEX", "MODEL", "MEMORY", "MIG", "HEALTH", "USER", "UTIL", "gpu01-gpu5", "NVIDIA H100 80GB HBM3", "80Gi"} {
		if !strings.Contains(table, col) {
			t.Errorf("kubectl get gpus lacks %q:\n%s", col, table)
		}
	}
	if wide := mustKubectl(t, s.kubeconfig, "get", "gpus", "-o", "wide"); strings.Contains(table, "HOLDER") || !strings.Contains(wide, "HOLDER") {
		t.Errorf("HOLDER (the allocations) belongs in kubectl get gpus -o wide only:\n%s\n%s", table, wide)
	}
	mustKubectl(t, s.kubeconfig, "apply", "-f", samples)

	// The controllers run: every quota and policy is marked Accepted.
	testutil.Eventually(t, 30*time.Second, "quotas and policies Accepted", func() (bool, string) {
		out, err := kubectl(t, s.kubeconfig, "", "get", "gpuquotas,containerpolicies", "-o",
			`jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Accepted")].status}{"\n"}{end}`)
		lines := strings.Fields(out)
		return err == nil && len(lines) >= 15 && strings.Count(out, "=True") == len(lines), out
	})
	// The counter is incremented just after the status write that made them Accepted.
	testutil.Eventually(t, 10*time.Second, "/metrics counts the quota reconciles", func() (bool, string) {
		code, metrics := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.metricPort))
		return code == 200 && reconciled(metrics, "gpuquota") >= 6, fmt.Sprintf("HTTP %d", code)
	})

	// What applies to alice, and where each value comes from.
	explain, err := exec.Command(binary(t), "explain", "user", "alice", "--groups", "student", "--kubeconfig", s.kubeconfig).CombinedOutput()
	for _, line := range []string{
		"gpuEquivalents       6      GPUQuota alice-thesis",
		"maxGPUsPerContainer  2      GPUQuota students",
		"idle.timeout                       30m0s                         ContainerPolicy docker",
		"idle.networkBytesPerSecond         1048576                       ContainerPolicy defaults",
	} {
		if err != nil || !strings.Contains(string(explain), line) {
			t.Errorf("gpuwarden explain user alice lacks %q: %v\n%s", line, err, explain)
		}
	}

	// Every quota and policy created is in the audit log, and `gpuwarden events` finds them.
	auditLog := filepath.Join(dir, "audit", "events.jsonl")
	testutil.Eventually(t, 10*time.Second, "quota and policy creations audited", func() (bool, string) {
		out, err := runEvents(t, "--file", auditLog, "--summary")
		return err == nil && strings.Contains(out, fmt.Sprintf("quota.create   %d", sampleCount(t, samples, "GPUQuota"))) &&
			strings.Contains(out, fmt.Sprintf("policy.create  %d", sampleCount(t, samples, "ContainerPolicy"))), out
	})
	out, err = runEvents(t, "--file", auditLog, "--type", "quota", "--json", "--limit", "0")
	if err != nil || strings.Count(out, `"event_type":"quota.create"`) != 6 || !strings.Contains(out, `"name":"alice-thesis"`) ||
		!strings.Contains(out, `"node":"gpu01"`) || !strings.Contains(out, `"manager":"kubectl-client-side-apply"`) {
		t.Errorf("gpuwarden events --type quota: %v\n%s", err, out)
	}

	// The everyday question: who holds what. alice-train-1 holds GPU 0.
	testutil.Eventually(t, 30*time.Second, "kubectl get gpus names alice on GPU 0", func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "gpus", "gpu01-gpu0")
		rows := tableRows(out)
		return len(rows) == 1 && rows[0]["USER"] == "alice", out
	})
	testutil.Eventually(t, 30*time.Second, "kubectl get ga -l gpuwarden.io/user=alice --field-selector status.phase!=Released", func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "-l", "gpuwarden.io/user=alice", "--field-selector", "status.phase!=Released")
		rows := tableRows(out)
		return len(rows) == 1 && rows[0]["NAME"] == "alice-train-1" && rows[0]["DEVICES"] == "0", out
	})
	testutil.Eventually(t, 30*time.Second, "kubectl get gq shows what its users hold", func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "gq")
		for _, r := range tableRows(out) {
			if r["NAME"] == "alice-thesis" {
				return r["USED"] == "1", out
			}
		}
		return false, out
	})

	// A bad manifest is refused with the field named.
	bad := "apiVersion: gpuwarden.io/v1alpha1\nkind: GPUAllocation\nmetadata: {name: greedy}\nspec:\n  user: bob\n  request: {gpus: 2, migProfile: 1g.10gb}\n"
	out, err = kubectl(t, s.kubeconfig, bad, "apply", "-f", "-")
	if err == nil || !strings.Contains(out, "spec.request") || !strings.Contains(out, "exactly one of gpus, migProfile or devices") {
		t.Errorf("kubectl apply of a bad allocation: err=%v\n%s", err, out)
	}
	// A 3g slice costs 3/7: kubectl shows 0.43, the Quantity stays exact.
	slice := "apiVersion: gpuwarden.io/v1alpha1\nkind: GPUAllocation\nmetadata: {name: slice-3g}\nspec:\n  user: carl\n  request: {migProfile: 3g.40gb}\n"
	if out, err := kubectl(t, s.kubeconfig, slice, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, "the slice bound", func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "slice-3g")
		return strings.Contains(out, "Bound") && strings.Contains(out, " 0.43 "), out
	})
	if exact := mustKubectl(t, s.kubeconfig, "get", "ga", "slice-3g", "-o", "jsonpath={.status.gpuEquivalents}"); exact != "428571429n" {
		t.Errorf("status.gpuEquivalents = %q, want the exact 428571429n", exact)
	}
	mustKubectl(t, s.kubeconfig, "delete", "ga", "slice-3g")
	wide := mustKubectl(t, s.kubeconfig, "get", "ga", "-o", "wide")
	for _, col := range []string{"USER", "PHASE", "DEVICES", "GPU-EQ", "CONTAINER", "AGE", "REASON", "CONTAINER-ID", "SOURCE", "alice-train-1", "alice"} {
		if !strings.Contains(wide, col) {
			t.Errorf("kubectl get ga -o wide lacks %q:\n%s", col, wide)
		}
	}

	if code := s.stop(t); code != 0 {
		t.Fatalf("SIGTERM: exit code %d, want 0:\n%s", code, s.out)
	}

	s = startServer(t, dir, "gpu01")
	t.Logf("warm start: ready after %s", s.readyAfter)
	for kind, want := range map[string]int{"gpuquotas": sampleCount(t, samples, "GPUQuota"), "containerpolicies": sampleCount(t, samples, "ContainerPolicy"), "gpuallocations": 1} {
		names := strings.Fields(mustKubectl(t, s.kubeconfig, "get", kind, "-o", "name"))
		if len(names) != want {
			t.Errorf("after a restart there are %d %s, want %d: %v", len(names), kind, want, names)
		}
	}
	user := mustKubectl(t, s.kubeconfig, "get", "ga", "alice-train-1", "-o", "jsonpath={.spec.user}")
	if user != "alice" {
		t.Errorf("alice-train-1 after a restart has user %q", user)
	}
	// Deleting a quota is an admin change too.
	mustKubectl(t, s.kubeconfig, "delete", "gq", "alice-thesis")
	testutil.Eventually(t, 10*time.Second, "the quota's deletion audited", func() (bool, string) {
		out, err := runEvents(t, "--file", auditLog, "--type", "quota.delete", "--json")
		return err == nil && strings.Contains(out, `"name":"alice-thesis"`), out
	})
	if code := s.stop(t); code != 0 {
		t.Errorf("second SIGTERM: exit code %d", code)
	}
}

// TestControllerRunsAgainstAnotherServer runs `gpuwarden controller` for a second node
// against the API server of a `gpuwarden server` process.
func TestControllerRunsAgainstAnotherServer(t *testing.T) {
	requireKubectl(t)
	s := startServer(t, t.TempDir(), "node-a")
	metricPort, probePort := testutil.FreePort(t), testutil.FreePort(t)
	c := start(t, "controller", "--kubeconfig", s.kubeconfig, "--node-name", "node-b",
		"--audit-log", filepath.Join(t.TempDir(), "events.jsonl"),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", metricPort),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probePort))
	if !strings.Contains(c.out.String(), "gpuwarden controller is ready: node node-b") {
		t.Errorf("controller ready line:\n%s", c.out)
	}
	if code, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort)); code != 200 {
		t.Errorf("controller /readyz = %d %s", code, body)
	}
	// Leader election is on in controller mode: the node's lease names this process.
	testutil.Eventually(t, 30*time.Second, "lease gpuwarden-node-b held", func() (bool, string) {
		out, err := kubectl(t, s.kubeconfig, "", "get", "lease", "-n", "kube-system", "gpuwarden-node-b", "-o", "jsonpath={.spec.holderIdentity}")
		return err == nil && out != "", out
	})

	policy := "apiVersion: gpuwarden.io/v1alpha1\nkind: ContainerPolicy\nmetadata: {name: exam-week}\nspec:\n  expires: \"2020-01-01T00:00:00Z\"\n  idle: {timeout: 2h}\n"
	if out, err := kubectl(t, s.kubeconfig, policy, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	// The controller process itself reconciled it (its own metrics count the reconcile).
	testutil.Eventually(t, 30*time.Second, "the controller process reconciles the policy", func() (bool, string) {
		_, metrics := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricPort))
		return reconciled(metrics, "containerpolicy") >= 1, "no containerpolicy reconcile in the controller's metrics"
	})
	testutil.Eventually(t, 30*time.Second, "expired policy marked inactive", func() (bool, string) {
		out, err := kubectl(t, s.kubeconfig, "", "get", "cpol", "exam-week", "-o", `jsonpath={.status.conditions[?(@.type=="Active")].reason}`)
		return err == nil && out == "Expired", out
	})

	if code := c.stop(t); code != 0 {
		t.Errorf("controller SIGTERM: exit code %d:\n%s", code, c.out)
	}
	// The lease is given up on the way out, so a replacement takes over at once.
	testutil.Eventually(t, 30*time.Second, "lease released", func() (bool, string) {
		out, err := kubectl(t, s.kubeconfig, "", "get", "lease", "-n", "kube-system", "gpuwarden-node-b", "-o", "jsonpath={.spec.holderIdentity}")
		return err == nil && out == "", out
	})
}

// reconciled returns the success count of a controller's reconcile counter in a scrape.
func reconciled(metrics, controller string) int {
	prefix := fmt.Sprintf(`controller_runtime_reconcile_total{controller=%q,result="success"} `, controller)
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// TestServerRefusesBadInput checks that mistakes an admin makes get clear errors.
func TestServerRefusesBadInput(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown fake GPU profile", []string{"server", "--data-dir", t.TempDir(), "--fake-gpus", "tpu"}, []string{"--fake-gpus", `"tpu"`, "dgxa100, h100x8, h100-mig"}},
		{"node name that is not a DNS name", []string{"server", "--data-dir", t.TempDir(), "--node-name", "GPU_01"}, []string{"--node-name", "GPU_01"}},
		{"port out of range", []string{"server", "--data-dir", t.TempDir(), "--api-port", "70000"}, []string{"--api-port", "70000"}},
		{"controller with a missing kubeconfig", []string{"controller", "--kubeconfig", "/nonexistent/kubeconfig", "--node-name", "n"}, []string{"--kubeconfig", "/nonexistent/kubeconfig"}},
		{"unknown flag", []string{"server", "--gpus", "3"}, []string{"unknown flag: --gpus"}},
		{"Docker host that is not a socket or TCP address", []string{"server", "--data-dir", t.TempDir(), "--docker-host", "/var/run/docker.sock"},
			[]string{"--docker-host", `"/var/run/docker.sock"`, "unix://"}},
		{"scan interval too short", []string{"server", "--data-dir", t.TempDir(), "--scan-interval", "1ms"}, []string{"--scan-interval", "at least 100ms"}},
		{"allocation retention too short", []string{"server", "--data-dir", t.TempDir(), "--allocation-retention", "5s"}, []string{"--allocation-retention", "at least 1m"}},
		{"event TTL too short", []string{"server", "--data-dir", t.TempDir(), "--event-ttl", "1s"}, []string{"--event-ttl", "at least 1m"}},
		{"sample interval too short", []string{"server", "--data-dir", t.TempDir(), "--sample-interval", "500ms"}, []string{"--sample-interval", "at least 1s"}},
		{"control file without fake GPUs", []string{"server", "--data-dir", t.TempDir(), "--fake-gpus-control", "/tmp/x.yaml"}, []string{"--fake-gpus-control", "give --fake-gpus too"}},
		{"control file that cannot be used", []string{"server", "--data-dir", t.TempDir(), "--fake-gpus", "h100x8", "--fake-gpus-control", "/etc/hostname"}, []string{"--fake-gpus-control"}},
		{"explain container at a bad server address", []string{"explain", "container", "x", "--server", "gpu01:9402"}, []string{`--server "gpu01:9402"`}},
		{"missing /proc root", []string{"controller", "--kubeconfig", "/dev/null", "--node-name", "n", "--proc-root", "/nonexistent"}, []string{"--proc-root", "/nonexistent"}},
		{"explain for an unknown container type", []string{"explain", "user", "alice", "--container-type", "vm"}, []string{`--container-type "vm"`, "devcontainer"}},
		{"explain without a user", []string{"explain", "user"}, []string{"accepts 1 arg(s), received 0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startNoWait(t, tc.args...)
			if code := p.wait(t); code == 0 {
				t.Fatalf("exit code 0, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(p.out.String(), w) {
					t.Errorf("error output lacks %q:\n%s", w, p.out)
				}
			}
		})
	}
}

// TestSecondServerOnOneDataDirIsRefused keeps two servers from sharing (and corrupting) one etcd.
func TestSecondServerOnOneDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, "gpu01")
	second := startNoWait(t, "server", "--data-dir", dir, "--api-port", "0", "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--audit-log", filepath.Join(dir, "second.jsonl"))
	if code := second.wait(t); code == 0 {
		t.Fatal("a second server on the same data dir started")
	}
	if !strings.Contains(second.out.String(), "is in use by another gpuwarden server") {
		t.Errorf("second server's error:\n%s", second.out)
	}
	if code, _ := httpGet(fmt.Sprintf("http://127.0.0.1:%d/readyz", s.probePort)); code != 200 {
		t.Errorf("the first server is no longer ready after the second was refused")
	}
	s.stop(t)
}

// runEvents runs `gpuwarden events` and returns its combined output.
func runEvents(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(binary(t), append([]string{"events"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestAuditLogOnFullDiskIsReportedAndCaughtUp puts the audit log on a full disk (a small
// tmpfs filled up: every write fails with ENOSPC): the server keeps working, reports the
// failure as a Warning Event and a metric, and writes every held event once there is space.
func TestAuditLogOnFullDiskIsReportedAndCaughtUp(t *testing.T) {
	requireKubectl(t)
	dir := t.TempDir()
	logDir := filepath.Join(dir, "auditfs")
	mountTmpfs(t, logDir, "size=1m,mode=0750")
	filler := filepath.Join(logDir, "filler")
	_ = exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=4k").Run() // fails when the disk is full, as meant
	auditLog := filepath.Join(logDir, "events.jsonl")
	s := startServer(t, dir, "gpu01", "--audit-log", auditLog)
	quota := "apiVersion: gpuwarden.io/v1alpha1\nkind: GPUQuota\nmetadata: {name: full-disk}\nspec:\n  subjects: [{kind: Everyone}]\n"
	if out, err := kubectl(t, s.kubeconfig, quota, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, "a Warning event for the audit log", func() (bool, string) {
		out, err := kubectl(t, s.kubeconfig, "", "get", "events", "-A", "--field-selector", "reason=AuditLogWriteFailed", "-o", "jsonpath={.items[*].message}")
		return err == nil && strings.Contains(out, "no space left on device"), out
	})
	_, metrics := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.metricPort))
	if !strings.Contains(metrics, "gpuwarden_audit_write_failing 1") {
		t.Errorf("metrics do not show the failing audit log")
	}

	if err := os.Remove(filler); err != nil { // space again
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "the held event written", func() (bool, string) {
		out, err := runEvents(t, "--file", auditLog, "--type", "quota", "--json")
		return err == nil && strings.Contains(out, `"name":"full-disk"`), out
	})
	_, metrics = httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.metricPort))
	if !strings.Contains(metrics, "gpuwarden_audit_write_failing 0") {
		t.Errorf("metrics still show the audit log failing after it recovered")
	}
	if code := s.stop(t); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}

// sampleCount is how many objects of kind the manifests in dir hold.
func sampleCount(t *testing.T, dir, kind string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("the samples in %s: %v", dir, err)
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(data), "\nkind: "+kind+"\n")
	}
	return n
}

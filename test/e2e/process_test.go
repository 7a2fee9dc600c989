package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPStopsCleanly: a hang-up (a closed terminal, a reload) stops the server as
// SIGTERM does — exit code 0, everything accepted kept — never an abrupt death.
func TestSIGHUPStopsCleanly(t *testing.T) {
	requireKubectl(t)
	dir := t.TempDir()
	s := startServer(t, dir, "hup01", "--docker-host", "none")
	mustKubectl(t, s.kubeconfig, "apply", "-f", filepath.Join(samples, "gpuquotas.yaml"))
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if code := s.wait(t); code != 0 {
		t.Fatalf("exit code after SIGHUP = %d, want 0:\n%s", code, s.out)
	}
	if !strings.Contains(s.out.String(), `"signal": "hangup"`) {
		t.Errorf("the log does not say which signal stopped it:\n%s", s.out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "audit", "events.jsonl"))
	if err != nil || !strings.Contains(string(data), `"event_type":"quota.create"`) {
		t.Errorf("the audit log lost what was accepted before the hang-up (%v):\n%s", err, data)
	}
}

// TestNodeNameOverALabelValueIsRefused: a node name longer than 63 characters cannot label
// the node's GPUs; the server refuses it at start with the reason.
func TestNodeNameOverALabelValueIsRefused(t *testing.T) {
	name := strings.Repeat("n", 64)
	p := startNoWait(t, "server", "--data-dir", t.TempDir(), "--api-port", "0", "--node-name", name, "--docker-host", "none")
	if code := p.wait(t); code == 0 {
		t.Fatalf("a 64-character node name was accepted:\n%s", p.out)
	}
	if !strings.Contains(p.out.String(), "at most 63") || !strings.Contains(p.out.String(), "--node-name") {
		t.Errorf("the error does not explain the limit:\n%s", p.out)
	}
}

// TestEtcdOutOfDiskFailsLoudly: when etcd's disk fills up, gpuwarden exits with the cause in
// its own log and the audit log (on another disk) keeps what was accepted.
func TestEtcdOutOfDiskFailsLoudly(t *testing.T) {
	requireKubectl(t)
	base := t.TempDir()
	dataDir := filepath.Join(base, "data")
	mountTmpfs(t, dataDir, "size=160m")
	auditLog := filepath.Join(base, "log", "events.jsonl")
	p := start(t, "server", "--data-dir", dataDir, "--api-port", "0", "--node-name", "full01", "--fake-gpus", "dgxa100",
		"--docker-host", "none", "--audit-log", auditLog, "--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	kubeconfig := filepath.Join(dataDir, "admin.kubeconfig")
	mustKubectl(t, kubeconfig, "apply", "-f", filepath.Join(samples, "gpuquotas.yaml"))

	// Fill the disk, then write until etcd can no longer store what it is given.
	_ = exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(dataDir, "filler"), "bs=1M").Run()
	payload := strings.Repeat("x", 900*1024)
	deadline := time.Now().Add(90 * time.Second)
	for i := 0; time.Now().Before(deadline) && !p.hasExited(); i++ {
		cm := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"fill-%d","namespace":"default"},"data":{"x":%q}}`, i, payload)
		_, _ = kubectl(t, kubeconfig, cm, "create", "-f", "-")
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("gpuwarden kept running with etcd's disk full:\n%s", tail(p.out.String(), 3000))
	}
	if code := p.cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("exit code 0 after etcd failed")
	}
	if log := p.out.String(); !strings.Contains(log, "no space left on device") || !strings.Contains(log, "fatal error in etcd") {
		t.Errorf("gpuwarden's log does not give the cause:\n%s", tail(log, 3000))
	}
	data, err := os.ReadFile(auditLog)
	if err != nil || !strings.Contains(string(data), `"event_type":"quota.create"`) {
		t.Errorf("the audit log lost what was accepted (%v):\n%s", err, data)
	}
	for _, l := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(l, "fatal error in etcd") {
			t.Logf("gpuwarden's log: %s", l)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

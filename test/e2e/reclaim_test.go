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

// TestIdleReclaimThroughTheBinary is a lab's idle notebook with the built binary: GPUs
// driven by --fake-gpus-control, samples every second, `explain container` saying why a
// busy container is left alone and when an idle one will be stopped, the Idle column of
// `kubectl get ga`, and the stop.
func TestIdleReclaimThroughTheBinary(t *testing.T) {
	requireKubectl(t)
	docker := dockerE2E(t)
	dir := t.TempDir()
	control := filepath.Join(dir, "gpus.yaml")
	if err := os.WriteFile(control, []byte(`devices: {"0": {utilization: 97}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir, "e2e-idle", "--docker-host", os.Getenv("DOCKER_HOST"),
		"--fake-gpus-control", control, "--sample-interval", "1s")
	audit := filepath.Join(dir, "audit", "events.jsonl")
	name, id := boundContainer(t, s, docker, "mia", "mia-nb", `apiVersion: gpuwarden.io/v1alpha1
kind: ContainerPolicy
metadata: {name: notebooks}
spec:
  selector: {users: [mia]}
  idle: {timeout: 10s, gpuUtilizationPercent: 5, cpuPercent: 10, consecutiveSamples: 2, warnAtFractions: ["0.5"]}
  stopGracePeriod: 1s
  notify: {file: /gpuwarden-notice}
---
apiVersion: gpuwarden.io/v1alpha1
kind: GPUAllocation
metadata: {name: mia-nb}
spec: {user: mia, nodeName: e2e-idle, request: {devices: ["0"]}}
`)
	server := fmt.Sprintf("--server=http://127.0.0.1:%d", s.metricPort)
	explain := func() string {
		out, err := exec.Command(binary(t), "explain", "container", name, server).CombinedOutput()
		if err != nil {
			return fmt.Sprintf("error %v: %s", err, out)
		}
		return string(out)
	}
	testutil.Eventually(t, 30*time.Second, "explain says the busy GPU keeps it active", func() (bool, string) {
		out := explain()
		return strings.Contains(out, "gpu% 97 ≥ 5 (active)") && strings.Contains(out, "Idle: active now"), out
	})
	// The control file makes the GPU idle.
	if err := os.WriteFile(control, []byte(`devices: {"0": {utilization: 0}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "explain says when it will be stopped", func() (bool, string) {
		out := explain()
		return strings.Contains(out, "Idle: idle since") && strings.Contains(out, "stop: at"), out
	})
	t.Logf("gpuwarden explain container %s:\n%s", name, explain())
	testutil.Eventually(t, 30*time.Second, "the Idle column", func() (bool, string) {
		out := mustKubectl(t, s.kubeconfig, "get", "ga", "mia-nb")
		return strings.Contains(out, "IDLE") && !strings.Contains(out, "<none>"), out
	})
	testutil.Eventually(t, 60*time.Second, "the idle container stopped", func() (bool, string) {
		state := docker("inspect", "-f", "{{.State.Status}}", id)
		return state == "exited", state
	})
	// The stop is recorded once the engine has said the container stopped, so the record
	// can trail what `docker inspect` shows by a moment.
	testutil.Eventually(t, 10*time.Second, "one idle warning and one idle stop in the audit log", func() (bool, string) {
		out, err := runEvents(t, "--file", audit, "--container", name, "--json", "--limit", "0")
		if err != nil {
			return false, out
		}
		for _, typ := range []string{"lifecycle.idle_warning", "lifecycle.idle_stop"} {
			if strings.Count(out, `"event_type":"`+typ+`"`) != 1 {
				return false, out
			}
		}
		return true, out
	})
	// The report counts the stop, the GPU time held and, once the sampler has let the
	// stopped container go, its idle time.
	testutil.Eventually(t, 20*time.Second, "gpuwarden report shows mia's idle stop and idle GPU time", func() (bool, string) {
		out, err := exec.Command(binary(t), "report", "--file", audit, "--since", "1h", "--csv").CombinedOutput()
		if err != nil {
			return false, string(out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Split(line, ",")
			if len(f) > 6 && f[0] == "mia" {
				allocated, _ := strconv.ParseFloat(f[1], 64)
				idle, _ := strconv.ParseFloat(f[4], 64)
				return allocated > 0 && idle > 0 && f[5] == "1", string(out) // idle stops
			}
		}
		return false, string(out)
	})
	if out, err := exec.Command(binary(t), "explain", "container", "no-such-container", server).CombinedOutput(); err == nil || !strings.Contains(string(out), `no container "no-such-container" on this node`) {
		t.Errorf("explain of a container that does not exist: %v\n%s", err, out)
	}
}

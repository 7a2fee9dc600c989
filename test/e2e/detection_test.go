package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestUnallocatedStartOnHeldGPUIsOneDetection is issue 24's first defect: a container
// started straight at the engine with --gpus 1 while GPU 0 is held by another allocation
// (the samples' alice-train-1) is one start without an allocation, so one
// detection.unmanaged_container record, not one from adoption and another from over-use.
func TestUnallocatedStartOnHeldGPUIsOneDetection(t *testing.T) {
	requireKubectl(t)
	docker := dockerE2E(t)
	dir := t.TempDir()
	s := startServer(t, dir, "e2e-detect", "--docker-host", os.Getenv("DOCKER_HOST"))
	auditLog := filepath.Join(dir, "audit", "events.jsonl")
	mustKubectl(t, s.kubeconfig, "apply", "-f", samples)
	testutil.Eventually(t, 30*time.Second, "alice-train-1 Bound on GPU 0", func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "alice-train-1", "-o", "jsonpath={.status.phase} {.status.devices[*].index}")
		return out == "Bound 0", out
	})

	id := docker("run", "-d", "--gpus", "1", "--label", "gpuwarden.io/user=alice", testutil.DockerImage(), "sleep", "3600")
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", id).Run() })
	detections := func() []string {
		out, err := runEvents(t, "--file", auditLog, "--type", "detection.unmanaged_container", "--container", id, "--json", "--limit", "0")
		if err != nil {
			t.Fatalf("gpuwarden events: %v\n%s", err, out)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
		return lines
	}
	testutil.Eventually(t, 30*time.Second, "a detection.unmanaged_container record for the container", func() (bool, string) {
		got := detections()
		return len(got) > 0, strings.Join(got, "\n")
	})
	// Its removal is recorded after everything said about its one start.
	docker("rm", "-f", id)
	testutil.Eventually(t, 30*time.Second, "container.remove recorded", func() (bool, string) {
		out, _ := runEvents(t, "--file", auditLog, "--type", "container.remove", "--container", id, "--json", "--limit", "0")
		return strings.Contains(out, id), out
	})
	if got := detections(); len(got) != 1 {
		t.Errorf("%d detection.unmanaged_container records for one start of container %s, want 1:\n%s", len(got), id[:12], strings.Join(got, "\n"))
	}
}

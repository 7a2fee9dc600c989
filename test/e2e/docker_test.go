package e2e

import (
	"testing"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestDockerEngineRunsGPUContainers checks what hack/docker-up.sh sets up for the Docker
// tests: a real engine, the local test image, and `--gpus` working through the hook double.
func TestDockerEngineRunsGPUContainers(t *testing.T) {
	docker := dockerE2E(t)
	got := docker("run", "--rm", "--gpus", `"device=GPU-1111,GPU-2222"`, testutil.DockerImage(), "sh", "-c", "echo $NVIDIA_VISIBLE_DEVICES")
	if got != "GPU-1111,GPU-2222" {
		t.Errorf("NVIDIA_VISIBLE_DEVICES = %q, want GPU-1111,GPU-2222", got)
	}
}

package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestDockerEngineRunsGPUContainers checks what hack/docker-up.sh sets up for the Docker
// tests: a real engine, the local test image, and `--gpus` working through the hook double.
func TestDockerEngineRunsGPUContainers(t *testing.T) {
	t.Setenv("DOCKER_HOST", testutil.DockerHost()) // hack/docker-up.sh's engine
	_, err := exec.LookPath("docker")
	testutil.Require(t, err == nil, "docker CLI: %v", err)
	err = exec.Command("docker", "version").Run()
	testutil.Require(t, err == nil, "a running Docker engine (hack/docker-up.sh): %v", err)
	image := testutil.DockerImage()
	out, err := exec.Command("docker", "run", "--rm", "--gpus", `"device=GPU-1111,GPU-2222"`, image,
		"sh", "-c", "echo $NVIDIA_VISIBLE_DEVICES").CombinedOutput()
	if err != nil {
		t.Fatalf("docker run --gpus: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "GPU-1111,GPU-2222" {
		t.Errorf("NVIDIA_VISIBLE_DEVICES = %q, want GPU-1111,GPU-2222", got)
	}
}

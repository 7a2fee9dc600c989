package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestGatewayGPUFormsAndResources: every way the docker CLI can ask for a GPU becomes one
// allocation bound to what was asked (or is refused), driver devices without GPUs are
// refused, a policy's resource defaults reach the container and its maxima refuse a create
// or an update asking for more, and docker attach streams.
func TestGatewayGPUFormsAndResources(t *testing.T) {
	alice := "gwalice"
	s, sock, _ := gatewayServer(t, "e2e-gwf", []string{alice})
	if _, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: gwf-alice}
spec:
  subjects: [{kind: User, name: gwalice}]
  limits: {gpuEquivalents: "2", maxGPUsPerContainer: 2}
---
apiVersion: gpuwarden.io/v1alpha1
kind: ContainerPolicy
metadata: {name: gwf-resources}
spec:
  selector: {users: [gwalice]}
  resources: {memory: 256Mi, maxMemory: 512Mi, pidsLimit: 100, shmSize: 64Mi}
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	image := testutil.DockerImage()
	uuid := func(index int) string {
		return mustKubectl(t, s.kubeconfig, "get", "gpu", "-o", fmt.Sprintf(`jsonpath={.items[?(@.spec.index==%d)].status.uuid}`, index))
	}
	testutil.Eventually(t, 30*time.Second, "the GPU inventory", func() (bool, string) {
		u := uuid(1)
		return strings.HasPrefix(u, "GPU-"), u
	})
	visible := "echo GPU=$NVIDIA_VISIBLE_DEVICES"
	for _, tc := range []struct {
		name string
		args []string
		want string // the container's NVIDIA_VISIBLE_DEVICES, or the refusal's words
		ok   bool
	}{
		{"--gpus 1", []string{"--gpus", "1"}, "GPU=GPU-", true},
		{"--gpus device=1", []string{"--gpus", "device=1"}, "GPU=" + uuid(1), true},
		{"--gpus device=UUID", []string{"--gpus", "device=" + uuid(2)}, "GPU=" + uuid(2), true},
		{"--gpus 2", []string{"--gpus", "2"}, "GPU=GPU-", true},
		{"--gpus all (over the cap of 2)", []string{"--gpus", "all"}, "gwf-alice", false},
		{"the nvidia runtime with NVIDIA_VISIBLE_DEVICES", []string{"--runtime", "nvidia", "-e", "NVIDIA_VISIBLE_DEVICES=3"}, "GPU=" + uuid(3), true},
		{"/dev/nvidia0", []string{"--device", "/dev/nvidia0"}, "GPU=" + uuid(0), true},
		{"/dev/nvidiactl without a GPU", []string{"--device", "/dev/nvidiactl"}, "without GPUs", false},
		{"two forms at once", []string{"--gpus", "1", "-e", "NVIDIA_VISIBLE_DEVICES=0"}, "2 ways", false},
		{"a GPU of another node's numbering", []string{"--gpus", "device=9"}, "gpuwarden", false},
	} {
		out, err := as(alice, sock, "", append(append([]string{"run", "--rm"}, tc.args...), image, "sh", "-c", visible)...)
		switch {
		case tc.ok && (err != nil || !strings.HasPrefix(out, tc.want) || strings.Contains(out, ",") && !strings.Contains(tc.name, "2")):
			t.Errorf("docker run %s: %v %q, want %q", tc.name, err, out, tc.want)
		case !tc.ok && (err == nil || !strings.Contains(out, tc.want)):
			t.Errorf("docker run %s: %v %q, want a refusal saying %q", tc.name, err, out, tc.want)
		}
	}
	// Every allocation those made is released once its container is gone.
	testutil.Eventually(t, 30*time.Second, "no allocation of alice's left Bound", func() (bool, string) {
		out := mustKubectl(t, s.kubeconfig, "get", "ga", "-o", `jsonpath={range .items[*]}{.spec.user} {.status.phase}{"\n"}{end}`)
		return !strings.Contains(out, alice+" Bound") && !strings.Contains(out, alice+" Pending"), out
	})

	// The policy's resource defaults, and its maxima on create and update.
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", "gwf-res").Run() })
	if out, err := as(alice, sock, "", "create", "--name", "gwf-res", image, "sleep", "60"); err != nil {
		t.Fatalf("docker create: %v %s", err, out)
	}
	if out, _ := as(alice, sock, "", "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.ShmSize}}", "gwf-res"); out != "268435456 100 67108864" {
		t.Errorf("memory, pids limit and shm size of a create that set none = %q, want the policy's 268435456 100 67108864", out)
	}
	if out, err := as(alice, sock, "", "run", "--rm", "-m", "1g", image, "true"); err == nil || !strings.Contains(out, "memory 1Gi is over the most a container may have, 512Mi, set by ContainerPolicy gwf-resources") {
		t.Errorf("docker run -m 1g over maxMemory: %v %s", err, out)
	}
	if out, err := as(alice, sock, "", "update", "-m", "1g", "--memory-swap", "2g", "gwf-res"); err == nil || !strings.Contains(out, "maxMemory") {
		t.Errorf("docker update -m 1g over maxMemory: %v %s", err, out)
	}
	if out, err := as(alice, sock, "", "run", "--rm", "-m", "300m", image, "true"); err != nil {
		t.Errorf("docker run -m 300m within maxMemory: %v %s", err, out)
	}

	// docker attach follows a running container's output.
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", "gwf-att").Run() })
	if out, err := as(alice, sock, "", "run", "-d", "--name", "gwf-att", image, "sh", "-c", "sleep 2; echo attached-ok"); err != nil {
		t.Fatalf("docker run -d: %v %s", err, out)
	}
	if out, err := as(alice, sock, "", "attach", "gwf-att"); err != nil || !strings.Contains(out, "attached-ok") {
		t.Errorf("docker attach: %v %q", err, out)
	}
}

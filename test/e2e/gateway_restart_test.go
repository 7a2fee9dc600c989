package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestGatewayStartNeverSharesAGPU is the "two users on one GPU" row of issue 23, as two
// unprivileged users against the real engine, with one whole GPU free: alice's GPU container
// is stopped and its hold passes; bob is given that GPU; alice's `docker start` through the
// gateway is refused naming bob's allocation, and a start straight at the engine (as an
// unless-stopped restart after an engine restart is) is stopped at once; once bob lets go,
// her start gets a new allocation for the same GPU. And the "allocations name only their
// own user's containers" row: bob's own allocation naming alice's container is refused by
// admission, and one made for him by an admin is never attached to it (alice's container runs
// on under onUnallocatedGPU: Stop).
func TestGatewayStartNeverSharesAGPU(t *testing.T) {
	alice, bob := "gwalice", "gwbob"
	s, sock, dir := gatewayServer(t, "e2e-gwstart", []string{alice, bob}, "--gateway-bind-wait", "8s")
	auditLog := filepath.Join(dir, "audit", "events.jsonl")
	image := testutil.DockerImage()
	const actr, bctr = "gw-st-a", "gw-st-b"
	t.Cleanup(func() {
		for _, n := range []string{actr, bctr} {
			_ = exec.Command("docker", "rm", "-f", n).Run()
		}
	})
	// Every whole GPU but one is held (h100-mig: 4 whole GPUs); stopped containers keep
	// their GPUs for a second; a GPU used outside an allocation stops its container.
	if _, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: gw-start-users}
spec:
  subjects: [{kind: User, name: gwalice}, {kind: User, name: gwbob}, {kind: User, name: gwstholder}]
  limits: {gpuEquivalents: "3", maxGPUsPerContainer: 3}
---
apiVersion: gpuwarden.io/v1alpha1
kind: ContainerPolicy
metadata: {name: gw-start-hold}
spec:
  selector: {users: [gwalice, gwbob]}
  gpuHoldAfterStop: 1s
  stopGracePeriod: 1s
  onUnallocatedGPU: Stop
---
apiVersion: gpuwarden.io/v1alpha1
kind: GPUAllocation
metadata: {name: gw-st-hold-three}
spec: {user: gwstholder, nodeName: e2e-gwstart, request: {gpus: 3}}
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	phase := func(name string) string {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", name, "-o", "jsonpath={.status.phase}")
		return out
	}
	testutil.Eventually(t, 30*time.Second, "gw-st-hold-three Bound", func() (bool, string) {
		out := phase("gw-st-hold-three")
		return out == "Bound", out
	})
	running := func(name string) string {
		out, _ := exec.Command("docker", "inspect", "-f", "{{.State.Running}}", name).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	devices := func(name string) string {
		out, _ := exec.Command("docker", "inspect", "-f", `{{range .HostConfig.DeviceRequests}}{{join .DeviceIDs ","}}{{end}}`, name).CombinedOutput()
		return strings.TrimSpace(string(out))
	}

	if out, err := as(alice, sock, "", "run", "-d", "--name", actr, "--gpus", "1", image, "sleep", "600"); err != nil {
		t.Fatalf("docker run -d --gpus 1 as %s: %v\n%s", alice, err, out)
	}
	gpu := devices(actr)
	if !strings.HasPrefix(gpu, "GPU-") || strings.Contains(gpu, ",") {
		t.Fatalf("alice's container was given %q", gpu)
	}
	aliceID, _ := exec.Command("docker", "inspect", "-f", "{{.Id}}", actr).Output()
	id := strings.TrimSpace(string(aliceID))
	out, _ := exec.Command("docker", "inspect", "-f", `{{index .Config.Labels "gpuwarden.io/allocation"}}`, actr).Output()
	first := strings.TrimSpace(string(out))
	testutil.Eventually(t, 30*time.Second, "alice's container attached to "+first, func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", first, "-o", "jsonpath={.status.phase} {.status.containerID}")
		return out == "Bound "+id, out
	})

	// Bob's own allocation may not name alice's container: admission refuses it.
	bobKC := filepath.Join(t.TempDir(), "bob.kubeconfig")
	if out, err := exec.Command(binary(t), "kubeconfig", "--user", bob, "--data-dir", dir, "-o", bobKC).CombinedOutput(); err != nil {
		t.Fatalf("gpuwarden kubeconfig --user %s: %v\n%s", bob, err, out)
	}
	naming := fmt.Sprintf("apiVersion: gpuwarden.io/v1alpha1\nkind: GPUAllocation\nmetadata: {name: NAME}\nspec: {user: gwbob, nodeName: e2e-gwstart, request: {gpus: 1}, containerID: %q}\n", id)
	if out, err := kubectl(t, bobKC, strings.Replace(naming, "NAME", "gw-st-bob-names-alice", 1), "create", "-f", "-"); err == nil ||
		!strings.Contains(out, "user gwbob may not name a container") {
		t.Errorf("bob's allocation naming alice's container: %v\n%s", err, out)
	}
	// One an admin made for bob is never attached to alice's container, which runs on.
	if out, err := kubectl(t, s.kubeconfig, strings.Replace(naming, "NAME", "gw-st-admin-names-alice", 1), "create", "-f", "-"); err != nil {
		t.Fatalf("an admin's allocation for bob naming alice's container: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, "a NotAttached Event on gw-st-admin-names-alice", func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "events", "-A", "--field-selector", "involvedObject.name=gw-st-admin-names-alice", "-o", "jsonpath={.items[*].reason}")
		return strings.Contains(out, "NotAttached"), out
	})
	if out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "gw-st-admin-names-alice", "-o", "jsonpath={.status.containerID}"); out != "" {
		t.Errorf("bob's allocation is attached to %s", out)
	}
	if got := running(actr); got != "true" {
		t.Errorf("alice's container running = %s after bob's allocation named it", got)
	}
	mustKubectl(t, s.kubeconfig, "delete", "ga", "gw-st-admin-names-alice")

	// Alice stops; her hold passes; bob is given the GPU.
	if out, err := as(alice, sock, "", "stop", "-t", "1", actr); err != nil {
		t.Fatalf("docker stop: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, first+" Released after its hold", func() (bool, string) {
		out := phase(first)
		return out == "Released", out
	})
	if out, err := as(bob, sock, "", "run", "-d", "--name", bctr, "--gpus", "1", image, "sleep", "600"); err != nil {
		t.Fatalf("docker run -d --gpus 1 as %s: %v\n%s", bob, err, out)
	}
	if got := devices(bctr); got != gpu {
		t.Fatalf("bob was given %q, not the GPU alice let go (%s)", got, gpu)
	}

	// Alice's start through the gateway is refused, naming bob's allocation.
	start := time.Now()
	out2, err := as(alice, sock, "", "start", actr)
	if err == nil || !strings.Contains(out2, "held by gwbob's allocation") || !strings.Contains(out2, "--gpus 1") || time.Since(start) > 20*time.Second {
		t.Errorf("alice's docker start on bob's GPU: %v after %s\n%s", err, time.Since(start), out2)
	}
	if got := running(actr); got != "false" {
		t.Fatalf("alice's container running = %s after a refused start", got)
	}

	// Straight at the engine (as its restart policy would after an engine restart): stopped
	// at once, a detection record for alice, an Event saying why.
	if out, err := exec.Command("docker", "start", actr).CombinedOutput(); err != nil {
		t.Fatalf("docker start at the engine: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, "alice's container stopped by gpuwarden", func() (bool, string) {
		got := running(actr)
		return got == "false", got
	})
	if got := running(bctr); got != "true" {
		t.Errorf("bob's container running = %s", got)
	}
	testutil.Eventually(t, 15*time.Second, "a detection.unmanaged_container record for alice", func() (bool, string) {
		events, err := runEvents(t, "--file", auditLog, "--type", "detection.unmanaged_container", "--user", alice, "--json", "--limit", "0")
		return err == nil && strings.Contains(events, gpu), events
	})
	testutil.Eventually(t, 15*time.Second, "a DeviceHeld Event", func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "events", "-A", "-o", `jsonpath={range .items[*]}{.message}{"\n"}{end}`)
		return strings.Contains(out, "DeviceHeld") && strings.Contains(out, actr), out
	})

	// Bob lets go: alice's start through the gateway gets her GPU again, a new allocation
	// naming her container.
	if out, err := as(bob, sock, "", "rm", "-f", bctr); err != nil {
		t.Fatalf("bob's docker rm -f: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, "alice's start after bob let go", func() (bool, string) {
		out, err := as(alice, sock, "", "start", actr)
		return err == nil, out
	})
	if got := running(actr); got != "true" {
		t.Errorf("alice's container running = %s after her start", got)
	}
	testutil.Eventually(t, 30*time.Second, "a Bound allocation of alice on "+gpu+" attached to her container", func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "-o",
			`jsonpath={range .items[*]}{.metadata.name} {.spec.user} {.status.phase} {.status.containerID} {.status.devices[*].uuid}{"\n"}{end}`)
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 5 && f[0] != first && f[1] == alice && f[2] == "Bound" && f[3] == id && f[4] == gpu {
				return true, out
			}
		}
		return false, out
	})
}

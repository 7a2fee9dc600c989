package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// dockerE2E returns the docker CLI runner for hack/docker-up.sh's engine, or skips (fails
// in CI) without one.
func dockerE2E(t *testing.T) func(args ...string) string {
	t.Helper()
	t.Setenv("DOCKER_HOST", testutil.DockerHost())
	_, err := exec.LookPath("docker")
	testutil.Require(t, err == nil, "docker CLI: %v", err)
	err = exec.Command("docker", "version").Run()
	testutil.Require(t, err == nil, "a running Docker engine (hack/docker-up.sh): %v", err)
	return func(args ...string) string {
		t.Helper()
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
}

// boundContainer applies manifests holding allocation alloc of user, waits until it is
// Bound and runs a container of user attached to it (removed when the test ends). It
// returns the container's name and ID.
func boundContainer(t *testing.T, s *server, docker func(...string) string, user, alloc, manifests string) (name, id string) {
	t.Helper()
	if _, err := kubectl(t, s.kubeconfig, manifests, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	var uuid string
	testutil.Eventually(t, 30*time.Second, alloc+" Bound", func() (bool, string) {
		uuid = mustKubectl(t, s.kubeconfig, "get", "ga", alloc, "-o", "jsonpath={.status.phase} {.status.devices[0].uuid}")
		return strings.HasPrefix(uuid, "Bound GPU-"), uuid
	})
	uuid = strings.TrimPrefix(uuid, "Bound ")
	name = fmt.Sprintf("%s-%d", alloc, time.Now().UnixNano())
	id = docker("run", "-d", "--name", name, "--label", "gpuwarden.io/user="+user, "--label", "gpuwarden.io/allocation="+alloc,
		"--gpus", "device="+uuid, testutil.DockerImage(), "sleep", "3600")
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", id).Run() })
	return name, id
}

// TestServerGovernsDockerContainers is an admin's and a researcher's day with the built
// binary: a GPU allocation used by a container, the container's life in `gpuwarden events`,
// its GPUs released the moment it is removed, and a GPU container started behind
// gpuwarden's back adopted.
func TestServerGovernsDockerContainers(t *testing.T) {
	requireKubectl(t)
	docker := dockerE2E(t)
	dir := t.TempDir()
	s := startServer(t, dir, "e2e-docker", "--docker-host", os.Getenv("DOCKER_HOST"))
	audit := filepath.Join(dir, "audit", "events.jsonl")
	name, id := boundContainer(t, s, docker, "lee", "lee-train", `apiVersion: gpuwarden.io/v1alpha1
kind: GPUAllocation
metadata: {name: lee-train}
spec: {user: lee, nodeName: e2e-docker, request: {gpus: 1}}
`)
	testutil.Eventually(t, 30*time.Second, "the container attached", func() (bool, string) {
		got := mustKubectl(t, s.kubeconfig, "get", "ga", "lee-train", "-o", "jsonpath={.status.containerID}")
		return got == id, got
	})
	docker("rm", "-f", id)
	testutil.Eventually(t, 30*time.Second, "lee-train Released", func() (bool, string) {
		got := mustKubectl(t, s.kubeconfig, "get", "ga", "lee-train", "-o", "jsonpath={.status.phase}: {.status.message}")
		return got == "Released: Devices given back: container removed", got
	})
	testutil.Eventually(t, 30*time.Second, "the container's life in gpuwarden events", func() (bool, string) {
		out, err := runEvents(t, "--file", audit, "--container", name, "--user", "lee", "--json", "--limit", "0")
		if err != nil {
			return false, out
		}
		for _, typ := range []string{"container.create", "container.start", "container.die", "container.remove"} {
			if !strings.Contains(out, `"event_type":"`+typ+`"`) {
				return false, out
			}
		}
		return true, out
	})

	// A GPU container started directly against the engine is adopted for what it uses.
	sneaky := docker("run", "-d", "--label", "ds01.user=mia", "--gpus", "device=1", testutil.DockerImage(), "sleep", "3600")
	defer exec.Command("docker", "rm", "-f", sneaky).Run()
	testutil.Eventually(t, 30*time.Second, "the adopted allocation", func() (bool, string) {
		got, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "adopted-"+sneaky[:12], "-o", "jsonpath={.spec.source} {.spec.user} {.status.phase} {.status.devices[*].index}")
		return got == "Adopted mia Bound 1", got
	})
	testutil.Eventually(t, 30*time.Second, "DockerReachable on the GPUs", func() (bool, string) {
		out := mustKubectl(t, s.kubeconfig, "get", "gpus", "-o", `jsonpath={.items[*].status.conditions[?(@.type=="DockerReachable")].status}`)
		return out == strings.TrimSpace(strings.Repeat("True ", 8)), out
	})
	testutil.Eventually(t, 30*time.Second, "Docker metrics", func() (bool, string) {
		_, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.metricPort))
		return strings.Contains(body, "gpuwarden_docker_up 1") && strings.Contains(body, `gpuwarden_docker_container_events_total{action="destroy"}`), body
	})
	s.stop(t)
}

package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// gatewayContainer runs `docker run -d --gpus 1 … sleep 600` as user through the gateway
// (extra before the image: --name, …) and returns the container's ID, name and the
// allocation its label names; the container is removed when the test ends.
func gatewayContainer(t *testing.T, user, sock string, extra ...string) (id, name, alloc string) {
	t.Helper()
	args := append(append([]string{"run", "-d", "--gpus", "1"}, extra...), testutil.DockerImage(), "sleep", "600")
	out, err := as(user, sock, "", args...)
	if err != nil {
		t.Fatalf("docker %s as %s: %v\n%s", strings.Join(args, " "), user, err, out)
	}
	id = strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", id).Run() })
	got, err := exec.Command("docker", "inspect", "-f", `{{.Name}} {{index .Config.Labels "gpuwarden.io/allocation"}}`, id).Output()
	f := strings.Fields(string(got))
	if err != nil || len(f) != 2 {
		t.Fatalf("docker inspect %s: %v %q", id, err, got)
	}
	return id, strings.TrimPrefix(f[0], "/"), f[1]
}

// gatewayRecordsServer starts a gateway server for user with a quota of two GPUs, and runs
// two GPU containers of user through it: one the engine names, one named gw-rec-named.
func gatewayRecordsServer(t *testing.T, node, user string) (s *server, auditLog string, containers []gwContainer) {
	t.Helper()
	s, sock, dir := gatewayServer(t, node, []string{user})
	if _, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: gw-records}
spec:
  subjects: [{kind: User, name: `+user+`}]
  limits: {gpuEquivalents: "2", maxGPUsPerContainer: 1}
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	for _, extra := range [][]string{nil, {"--name", "gw-rec-named"}} {
		var c gwContainer
		c.id, c.name, c.alloc = gatewayContainer(t, user, sock, extra...)
		c.sock = sock
		containers = append(containers, c)
	}
	return s, filepath.Join(dir, "audit", "events.jsonl"), containers
}

type gwContainer struct{ id, name, alloc, sock string }

// TestGatewayAllocationShowsItsContainer is issue 24's third defect: a Gateway allocation
// shows its container in `kubectl get ga` (the CONTAINER column) once the container exists,
// whether the user named it or the engine did; an allocation whose spec names a container
// shows that name before any container is attached.
func TestGatewayAllocationShowsItsContainer(t *testing.T) {
	s, _, containers := gatewayRecordsServer(t, "e2e-gwcol", "gwcolumn")
	if _, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: GPUAllocation
metadata: {name: gw-col-manual}
spec: {user: gwcolumn, request: {gpus: 1}, containerName: not-made-yet}
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	containers = append(containers, gwContainer{name: "not-made-yet", alloc: "gw-col-manual"})
	for _, c := range containers {
		testutil.Eventually(t, 30*time.Second, "kubectl get ga "+c.alloc+" shows container "+c.name, func() (bool, string) {
			table, _ := kubectl(t, s.kubeconfig, "", "get", "ga", c.alloc)
			lines := strings.Split(strings.TrimSpace(table), "\n")
			if len(lines) != 2 {
				return false, table
			}
			header, row := lines[0], lines[1]
			col := strings.Index(header, "CONTAINER")
			if col < 0 || len(row) <= col {
				return false, table
			}
			f := strings.Fields(row[col:])
			return len(f) > 0 && f[0] == c.name, table
		})
	}
}

// TestGPUDecisionsNameTheirContainer is issue 24's second defect: `gpuwarden events
// --container NAME|ID` shows the GPU decisions of a container made through the gateway: the
// gpu.allocate of its allocation and, once it is removed, its gpu.release.
func TestGPUDecisionsNameTheirContainer(t *testing.T) {
	const user = "gwdecisions"
	_, auditLog, containers := gatewayRecordsServer(t, "e2e-gwdec", user)
	// While it runs: its gpu.allocate, made before it existed.
	for _, c := range containers {
		for _, by := range []string{c.name, c.id[:12]} {
			testutil.Eventually(t, 30*time.Second, "gpuwarden events --container "+by+" shows the gpu.allocate of "+c.alloc, func() (bool, string) {
				out, _ := runEvents(t, "--file", auditLog, "--type", "gpu.allocate", "--container", by, "--json", "--limit", "0")
				return strings.Contains(out, `"allocation":"`+c.alloc+`"`), out
			})
		}
	}
	// Once removed: its gpu.allocate and its gpu.release.
	for _, c := range containers {
		if out, err := as(user, c.sock, "", "rm", "-f", c.id); err != nil {
			t.Fatalf("docker rm -f %s: %v\n%s", c.name, err, out)
		}
		testutil.Eventually(t, 30*time.Second, "the gpu.release of "+c.alloc, func() (bool, string) {
			out, _ := runEvents(t, "--file", auditLog, "--type", "gpu.release", "--json", "--limit", "0")
			return strings.Contains(out, `"allocation":"`+c.alloc+`"`), out
		})
	}
	for _, c := range containers {
		for _, by := range []string{c.name, c.id, c.id[:12]} {
			out, err := runEvents(t, "--file", auditLog, "--type", "gpu", "--container", by, "--json", "--limit", "0")
			if err != nil {
				t.Fatalf("gpuwarden events --container %s: %v\n%s", by, err, out)
			}
			for _, typ := range []string{"gpu.allocate", "gpu.release"} {
				if !strings.Contains(out, `"event_type":"`+typ+`","source":"gpuwarden","schema_version":"1","user":"`+user+`","details":{`) ||
					!strings.Contains(out, `"allocation":"`+c.alloc+`"`) {
					t.Errorf("gpuwarden events --type gpu --container %s lacks the %s of %s:\n%s", by, typ, c.alloc, out)
				}
			}
		}
	}
	if t.Failed() {
		out, _ := runEvents(t, "--file", auditLog, "--type", "gpu", "--json", "--limit", "0")
		t.Logf("every gpu record:\n%s", out)
	}
}

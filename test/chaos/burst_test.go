package chaos

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

// TestKilledMidBurst is TestControllerKilledMidBurst with a real crash: a burst of requests
// for more GPUs than the node has, gpuwarden killed with SIGKILL while it binds them, and
// restarted. After the restart every GPU is bound once, to one allocation each, the rest
// wait, and the audit log holds each bind exactly once (by event ID).
func TestKilledMidBurst(t *testing.T) {
	_, err := exec.LookPath("kubectl")
	testutil.Require(t, err == nil, "kubectl is not installed")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	auditLog := filepath.Join(dir, "audit", "events.jsonl")
	s := &server{t: t, kc: filepath.Join(data, "admin.kubeconfig"), args: []string{"server", "--web-bind-address", "0", "--data-dir", data, "--api-port", "0",
		"--node-name", "burst", "--fake-gpus", "h100x8", "--docker-host", "none", "--gateway-socket", "", "--audit-log", auditLog,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0"}}
	s.start()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.kill9()
		}
	})
	var b strings.Builder
	b.WriteString("apiVersion: gpuwarden.io/v1alpha1\nkind: GPUQuota\nmetadata: {name: burst}\nspec: {subjects: [{kind: Everyone}], limits: {gpuEquivalents: \"8\", maxGPUsPerContainer: 1}}\n")
	for i := range 40 {
		fmt.Fprintf(&b, "---\napiVersion: gpuwarden.io/v1alpha1\nkind: GPUAllocation\nmetadata: {name: burst-%02d}\nspec: {user: user%d, nodeName: burst, request: {gpus: 1}}\n", i, i%5)
	}
	go func() { _, _ = s.kubectl(b.String(), "apply", "-f", "-") }()
	testutil.Eventually(t, 60*time.Second, "some allocations bound", func() (bool, string) {
		allocs, err := s.allocations()
		n := 0
		for _, a := range allocs {
			if a.Status.Phase == "Bound" {
				n++
			}
		}
		return err == nil && n >= 2, fmt.Sprint(n)
	})
	s.kill9()
	s.start()
	// The requests the burst had not sent when the server died are sent again (apply is
	// idempotent: those that were created stay as they are).
	if out, err := s.kubectl(b.String(), "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply after the restart: %v %s", err, out)
	}
	testutil.Eventually(t, 90*time.Second, "all 40 requests in, every GPU bound once, the rest waiting", func() (bool, string) {
		allocs, err := s.allocations()
		if err != nil {
			return false, err.Error()
		}
		holder := map[string]string{}
		bound, pending := 0, 0
		for _, a := range allocs {
			switch a.Status.Phase {
			case "Bound":
				bound++
				for _, d := range a.Status.Devices {
					if other, ok := holder[d.UUID]; ok {
						t.Fatalf("GPU %s bound to %s and %s", d.UUID, other, a.Metadata.Name)
					}
					holder[d.UUID] = a.Metadata.Name
				}
			case "Pending":
				pending++
			}
		}
		return len(allocs) == 40 && bound == 8 && pending == 32, fmt.Sprintf("%d allocations, %d bound, %d pending", len(allocs), bound, pending)
	})
	testutil.Eventually(t, 30*time.Second, "each bind in the audit log once", func() (bool, string) {
		data, err := os.ReadFile(auditLog)
		if err != nil {
			return false, err.Error()
		}
		allocs, _ := s.allocations()
		for _, a := range allocs {
			if a.Status.Phase != "Bound" {
				continue
			}
			ids := map[string]bool{}
			for _, l := range strings.Split(string(data), "\n") {
				if strings.Contains(l, `"event_type":"gpu.allocate"`) && strings.Contains(l, `"allocation":"`+a.Metadata.Name+`"`) {
					i := strings.Index(l, `"event_id":"`)
					ids[l[i+12:i+44]] = true
				}
			}
			if len(ids) != 1 {
				return false, fmt.Sprintf("%s: %d distinct gpu.allocate records", a.Metadata.Name, len(ids))
			}
		}
		return true, ""
	})
}

package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestGatewayMIGSliceByProfile is the user guide's "Asking for a MIG slice" with the plain
// docker CLI on an h100-mig server: --gpus '"device=1g.10gb"' gets a Bound slice of that
// profile; the index of a partitioned GPU is refused with how to ask and what is free; a
// profile the node does not offer says what is free; a malformed one is named.
func TestGatewayMIGSliceByProfile(t *testing.T) {
	mia := "gwmia"
	s, sock, _ := gatewayServer(t, "e2e-gwmig", []string{mia}, "--gateway-bind-wait", "3s")
	image := testutil.DockerImage()
	testutil.Eventually(t, 30*time.Second, "GPU 4's MIG slices in the inventory", func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "gpu", "-o", `jsonpath={.items[?(@.spec.index==4)].status.migInstances[*].profile}`)
		return strings.Count(out, "1g.10gb") == 7, out
	})

	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", "gwmig-slice").Run() })
	if out, err := as(mia, sock, "", "run", "-d", "--name", "gwmig-slice", "--gpus", `"device=1g.10gb"`, image, "sleep", "600"); err != nil {
		t.Fatalf(`docker run --gpus '"device=1g.10gb"': %v %s`, err, out)
	}
	testutil.Eventually(t, 30*time.Second, "mia's allocation Bound to a 1g.10gb slice", func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "-o",
			`jsonpath={range .items[*]}{.spec.user} {.spec.request.migProfile} {.status.phase} {.status.devices[0].migProfile} {.status.devices[0].uuid}{"\n"}{end}`)
		return strings.Contains(out, mia+" 1g.10gb Bound 1g.10gb MIG-"), out
	})
	if out, _ := as(mia, sock, "", "exec", "gwmig-slice", "sh", "-c", "echo GPU=$NVIDIA_VISIBLE_DEVICES"); !strings.HasPrefix(out, "GPU=MIG-") || strings.Contains(out, ",") {
		t.Errorf("the container's NVIDIA_VISIBLE_DEVICES = %q, want one MIG UUID", out)
	}

	free := "free now: 1g.10gb ×6, 2g.20gb ×2, 3g.40gb ×2, 4g.40gb ×1, 7g.80gb ×1"
	for _, tc := range []struct{ name, gpus, want string }{
		{"the index of a partitioned GPU", "device=4", `GPU 4 is split into MIG slices: ask for a profile (--gpus '"device=1g.10gb"'), ` + free},
		{"a profile the node does not offer", `"device=2g.10gb"`, "offers MIG profile 2g.10gb (offered: 1g.10gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb) (Unsatisfiable); " + free},
		{"a malformed profile", `"device=1G.10GB"`, `device "1G.10GB" is not a MIG profile: a profile is written like 1g.10gb, 3g.40gb or 1g.10gb+me`},
		{"two profiles", `"device=1g.10gb,3g.40gb"`, "a container gets one MIG slice"},
	} {
		out, err := as(mia, sock, "", "run", "--rm", "--gpus", tc.gpus, image, "true")
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("docker run --gpus %s (%s): %v %q, want a refusal saying %q", tc.gpus, tc.name, err, out, tc.want)
		}
	}

	// The same by label: a slice, kept on the container; what is not a profile, one the node
	// does not offer, and a label beside --gpus are refused with the problem named.
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", "gwmig-label").Run() })
	if out, err := as(mia, sock, "", "run", "-d", "--name", "gwmig-label", "--label", "gpuwarden.io/mig-profile=3g.40gb", image, "sleep", "600"); err != nil {
		t.Fatalf("docker run --label gpuwarden.io/mig-profile=3g.40gb: %v %s", err, out)
	}
	if out, _ := as(mia, sock, "", "exec", "gwmig-label", "sh", "-c", "echo GPU=$NVIDIA_VISIBLE_DEVICES"); !strings.HasPrefix(out, "GPU=MIG-") || strings.Contains(out, ",") {
		t.Errorf("the labelled container's NVIDIA_VISIBLE_DEVICES = %q, want one MIG UUID", out)
	}
	if out, _ := as(mia, sock, "", "ps", "--filter", "label=gpuwarden.io/mig-profile=3g.40gb", "--format", "{{.Names}}"); out != "gwmig-label" {
		t.Errorf("docker ps --filter label=gpuwarden.io/mig-profile=3g.40gb: %q", out)
	}
	testutil.Eventually(t, 30*time.Second, "mia's labelled allocation Bound to a 3g.40gb slice", func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "-o", `jsonpath={range .items[*]}{.spec.user} {.spec.request.migProfile} {.status.phase}{"\n"}{end}`)
		return strings.Contains(out, mia+" 3g.40gb Bound"), out
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"not a profile", []string{"--label", "gpuwarden.io/mig-profile=all"}, `label gpuwarden.io/mig-profile="all" is not a MIG profile`},
		{"a profile the node does not offer", []string{"--label", "gpuwarden.io/mig-profile=2g.10gb"}, "offers MIG profile 2g.10gb (offered: 1g.10gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb) (Unsatisfiable); free now: 1g.10gb ×6, 2g.20gb ×2, 3g.40gb ×1"},
		{"a label beside --gpus", []string{"--label", "gpuwarden.io/mig-profile=1g.10gb", "--gpus", "all"}, "asks for GPUs another way too"},
	} {
		out, err := as(mia, sock, "", append(append([]string{"run", "--rm"}, tc.args...), image, "true")...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("docker run %v (%s): %v %q, want a refusal saying %q", tc.args, tc.name, err, out, tc.want)
		}
	}
}

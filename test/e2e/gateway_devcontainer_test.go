package e2e

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// devcontainerCLI is where hack/install-deps.sh puts the devcontainer CLI (what VS Code runs).
func devcontainerCLI(t *testing.T) string {
	dir := os.Getenv("GPUWARDEN_DEVCONTAINER_DIR")
	if dir == "" {
		dir = "/opt/gpuwarden-test/devcontainer-cli"
	}
	cli := filepath.Join(dir, "node_modules", ".bin", "devcontainer")
	_, err := os.Stat(cli)
	testutil.Require(t, err == nil, "the devcontainer CLI is not installed (run hack/install-deps.sh)")
	return cli
}

// TestGatewayDevcontainer is what VS Code does for a researcher opening a devcontainer with a
// GPU, run by the devcontainer CLI through the gateway as an unprivileged user: the image
// build, the container with the workspace mounted and a GPU, the post-create command, and an
// exec into it; the container is a devcontainer to gpuwarden and its allocation is Bound.
func TestGatewayDevcontainer(t *testing.T) {
	cli := devcontainerCLI(t)
	alice := "gwalice"
	s, sock, _ := gatewayServer(t, "e2e-gwdc", []string{alice})
	if _, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: gwdc}
spec:
  subjects: [{kind: User, name: gwalice}]
  limits: {gpuEquivalents: "1", maxGPUsPerContainer: 1}
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join("/home", alice, "gwdc-project")
	dc := filepath.Join(ws, ".devcontainer")
	if err := os.MkdirAll(dc, 0o755); err != nil {
		t.Fatal(err)
	}
	// The image the CLI builds: one left by an earlier run, which this server has no record of,
	// would be shared (an admin's), and a user may not build onto it.
	removeImages := func() {
		out, _ := exec.Command("docker", "images", "-q", "--filter", "reference=vsc-gwdc-project-*").Output()
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("docker", "rmi", "-f", id).Run()
		}
	}
	removeImages()
	t.Cleanup(func() {
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=devcontainer.local_folder="+ws).Output()
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("docker", "rm", "-f", id).Run()
		}
		removeImages()
		os.RemoveAll(ws)
	})
	// The test image has no /etc/passwd; the devcontainer CLI execs as a named user.
	files := map[string]string{
		"Dockerfile": "FROM " + testutil.DockerImage() + "\nRUN echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd && echo 'root:x:0:' > /etc/group && mkdir -p /root\n",
		"devcontainer.json": `{"name": "gwdc", "build": {"dockerfile": "Dockerfile"}, "runArgs": ["--gpus", "1"],
  "postCreateCommand": "echo post-create-ran > /tmp/post-create"}`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dc, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chown", "-R", alice, ws).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	devcontainer := func(args ...string) (string, error) {
		cmd := exec.Command("runuser", append([]string{"-u", alice, "--", "env", "DOCKER_HOST=unix://" + sock, "HOME=/home/" + alice, cli}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := devcontainer("up", "--workspace-folder", ws); err != nil || !strings.Contains(out, `"outcome":"success"`) {
		t.Fatalf("devcontainer up: %v\n%s", err, out)
	}
	// It runs as the researcher, not as root.
	u, err := user.Lookup(alice)
	if err != nil {
		t.Fatal(err)
	}
	out, err := devcontainer("exec", "--workspace-folder", ws, "sh", "-c", "echo GPU=$NVIDIA_VISIBLE_DEVICES; cat /tmp/post-create; ls /workspaces/gwdc-project/.devcontainer; echo uid=$(id -u)")
	if err != nil || !strings.Contains(out, "GPU=GPU-") || !strings.Contains(out, "post-create-ran") || !strings.Contains(out, "devcontainer.json") ||
		!strings.Contains(out, "uid="+u.Uid) {
		t.Errorf("devcontainer exec: %v\n%s", err, out)
	}
	id, err := exec.Command("docker", "ps", "-q", "--no-trunc", "--filter", "label=devcontainer.local_folder="+ws).Output()
	if err != nil || len(strings.Fields(string(id))) != 1 {
		t.Fatalf("the devcontainer: %v %q", err, id)
	}
	cid := strings.TrimSpace(string(id))
	if got, _ := exec.Command("docker", "inspect", "-f", `{{index .Config.Labels "gpuwarden.io/type"}} {{index .Config.Labels "gpuwarden.io/user"}}`, cid).Output(); strings.TrimSpace(string(got)) != "devcontainer "+alice {
		t.Errorf("the devcontainer's type and owner labels = %q", got)
	}
	testutil.Eventually(t, 30*time.Second, "the devcontainer's allocation Bound to it", func() (bool, string) {
		out := mustKubectl(t, s.kubeconfig, "get", "ga", "-o", `jsonpath={range .items[*]}{.status.phase} {.spec.containerType} {.status.containerID}{"\n"}{end}`)
		return strings.Contains(out, "Bound devcontainer "+cid), out
	})
}

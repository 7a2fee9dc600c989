package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// gatewayUser makes an unprivileged login with a home directory, once per machine.
func gatewayUser(t *testing.T, name string) { testutil.LinuxUser(t, name) }

// as runs the real docker CLI as user against the gateway; stdin may be empty.
func as(user, sock, stdin string, args ...string) (string, error) {
	return asEnv(user, sock, stdin, nil, args...)
}

// gatewayServer starts gpuwarden server with the gateway on a socket anyone may reach, for
// the named users (made once per machine); it returns the server, the socket and its dir.
func gatewayServer(t *testing.T, node string, users []string, args ...string) (*server, string, string) {
	t.Helper()
	requireKubectl(t)
	dockerE2E(t)
	testutil.Require(t, os.Geteuid() == 0, "the gateway test creates Linux users and needs root")
	_, err := exec.LookPath("runuser")
	testutil.Require(t, err == nil, "runuser (util-linux) is not installed")
	for _, u := range users {
		gatewayUser(t, u)
	}
	sockDir, err := os.MkdirTemp("", "gpuwarden-gw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	if err := os.Chmod(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir, "docker.sock")
	dir := t.TempDir()
	s := startServer(t, dir, node, append([]string{"--docker-host", os.Getenv("DOCKER_HOST"), "--gateway-socket", sock}, args...)...)
	return s, sock, dir
}

// TestGatewayAsTwoUsers is two researchers on one server with the plain docker CLI and no
// docker group: GPUs through --gpus, the quota's refusal at once, owner labels that cannot
// be spoofed, each seeing and touching only their own containers, what would reach the
// host refused, and streams that work.
func TestGatewayAsTwoUsers(t *testing.T) {
	alice, bob := "gwalice", "gwbob"
	s, sock, dir := gatewayServer(t, "e2e-gw", []string{alice, bob}, "--gateway-bind-wait", "8s")
	auditLog := filepath.Join(dir, "audit", "events.jsonl")
	if _, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: gw-users}
spec:
  subjects: [{kind: User, name: gwalice}, {kind: User, name: gwbob}]
  limits: {gpuEquivalents: "1", maxGPUsPerContainer: 1}
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	image := testutil.DockerImage()
	t.Cleanup(func() {
		for _, n := range []string{"gw-a-nb", "gw-b-nb"} {
			_ = exec.Command("docker", "rm", "-f", n).Run()
		}
	})

	// A GPU through --gpus: an allocation bound to alice, its UUID in the container.
	out, err := as(alice, sock, "", "run", "--rm", "--gpus", "1", image, "sh", "-c", "echo GPU=$NVIDIA_VISIBLE_DEVICES")
	if err != nil || !strings.HasPrefix(out, "GPU=GPU-") {
		t.Fatalf("docker run --gpus 1 as %s: %v\n%s", alice, err, out)
	}
	// Over the per-container cap: refused at once, saying why.
	start := time.Now()
	out, err = as(alice, sock, "", "run", "--rm", "--gpus", "2", image, "true")
	if err == nil || !strings.Contains(out, "no GPU for you") || !strings.Contains(out, "gw-users") || time.Since(start) > 20*time.Second {
		t.Errorf("docker run --gpus 2 over the cap: %v after %s\n%s", err, time.Since(start), out)
	}
	// When every whole GPU is held, a request waits: it gives up after --gateway-bind-wait
	// with its place in the queue, and succeeds when a GPU frees meanwhile.
	if _, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: gw-holder}
spec:
  subjects: [{kind: User, name: gwholder}]
  limits: {gpuEquivalents: "8", maxGPUsPerContainer: 8}
---
apiVersion: gpuwarden.io/v1alpha1
kind: GPUAllocation
metadata: {name: gw-hold-all}
spec: {user: gwholder, nodeName: e2e-gw, request: {gpus: 4}}
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "gw-hold-all Bound", func() (bool, string) {
		out := mustKubectl(t, s.kubeconfig, "get", "ga", "gw-hold-all", "-o", "jsonpath={.status.phase}")
		return out == "Bound", out
	})
	out, err = as(alice, sock, "", "run", "--rm", "--gpus", "1", image, "true")
	if err == nil || !strings.Contains(out, "no GPU free after waiting 8s") || !strings.Contains(out, "number 1 of 1") {
		t.Errorf("a request while every GPU is held: %v\n%s", err, out)
	}
	waited := make(chan string, 1)
	go func() {
		out, err := as(alice, sock, "", "run", "--rm", "--gpus", "1", image, "sh", "-c", "echo GPU=$NVIDIA_VISIBLE_DEVICES")
		waited <- fmt.Sprintf("%v %s", err, out)
	}()
	// The request waits once its allocation is seen waiting for capacity; then a GPU frees.
	testutil.Eventually(t, 30*time.Second, alice+"'s request waiting for a GPU", func() (bool, string) {
		out := mustKubectl(t, s.kubeconfig, "get", "ga", "-o", fmt.Sprintf(
			`jsonpath={range .items[?(@.spec.user=="%s")]}{.status.reason}/{.metadata.deletionTimestamp}{"\n"}{end}`, alice))
		return slices.Contains(strings.Split(out, "\n"), "NoCapacity/"), out
	})
	mustKubectl(t, s.kubeconfig, "delete", "ga", "gw-hold-all")
	if got := <-waited; !strings.HasPrefix(got, "<nil> GPU=GPU-") {
		t.Errorf("a request that waited for a GPU to free: %s", got)
	}
	// Spoofed owner labels are overwritten.
	if out, err := as(alice, sock, "", "run", "-d", "--name", "gw-a-nb", "--label", "gpuwarden.io/user="+bob, image, "sleep", "600"); err != nil {
		t.Fatalf("docker run -d: %v\n%s", err, out)
	}
	if out, _ := as(alice, sock, "", "inspect", "-f", `{{index .Config.Labels "gpuwarden.io/user"}}`, "gw-a-nb"); out != alice {
		t.Errorf("owner label of alice's container = %q, want %s", out, alice)
	}
	if out, err := as(bob, sock, "", "run", "-d", "--name", "gw-b-nb", image, "sleep", "600"); err != nil {
		t.Fatalf("bob's docker run -d: %v\n%s", err, out)
	}
	// Each sees only their own.
	if out, _ := as(bob, sock, "", "ps", "-a", "--format", "{{.Names}}"); strings.Contains(out, "gw-a-nb") || !strings.Contains(out, "gw-b-nb") {
		t.Errorf("bob's docker ps:\n%s", out)
	}
	// Bob's every operation on alice's container is refused, naming the owner, and audited.
	for _, op := range [][]string{{"inspect", "gw-a-nb"}, {"logs", "gw-a-nb"}, {"exec", "gw-a-nb", "id"}, {"stop", "gw-a-nb"},
		{"rm", "-f", "gw-a-nb"}, {"cp", "gw-a-nb:/etc/hostname", "/tmp/x"}, {"export", "gw-a-nb"}} {
		out, err := as(bob, sock, "", op...)
		if err == nil || !strings.Contains(out, "belongs to "+alice) {
			t.Errorf("bob: docker %s: %v\n%s", strings.Join(op, " "), err, out)
		}
	}
	// The audit log is group-committed: the last refusal's record follows within moments.
	testutil.Eventually(t, 10*time.Second, "an auth.denied record of each of bob's refusals", func() (bool, string) {
		events, err := runEvents(t, "--file", auditLog, "--type", "auth.denied", "--user", bob, "--json", "--limit", "0")
		return err == nil && strings.Count(events, `"event_type":"auth.denied"`) >= 7, events
	})
	// What would reach the host is refused.
	for _, args := range [][]string{{"--privileged"}, {"--pid", "host"}, {"--network", "host"}, {"-v", "/etc:/host-etc"}, {"--cap-add", "SYS_ADMIN"}} {
		out, err := as(alice, sock, "", append(append([]string{"run", "--rm"}, args...), image, "true")...)
		if err == nil || !strings.Contains(out, "gpuwarden:") {
			t.Errorf("docker run %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := as(alice, sock, "", "run", "--rm", "-v", "/home/"+alice+":/work", image, "ls", "/work"); err != nil {
		t.Errorf("a bind mount of the caller's home: %v\n%s", err, out)
	}
	// Streams: stdin's end reaches the container (half-close), logs, attach-style run.
	if out, err := as(alice, sock, "line one\nline two\n", "exec", "-i", "gw-a-nb", "cat"); err != nil || out != "line one\nline two" {
		t.Errorf("docker exec -i with stdin piped: %v %q", err, out)
	}
	if out, err := as(alice, sock, "", "run", "--rm", image, "sh", "-c", "echo out; echo err >&2"); err != nil || !strings.Contains(out, "out") || !strings.Contains(out, "err") {
		t.Errorf("docker run attached: %v %q", err, out)
	}
	if out, err := as(alice, sock, "", "logs", "gw-a-nb"); err != nil {
		t.Errorf("docker logs: %v %q", err, out)
	}
	// docker logs -f follows until the container ends; docker exec -it on a terminal.
	if out, err := as(alice, sock, "", "run", "-d", "--name", "gw-a-talk", image, "sh", "-c", "echo first; sleep 1; echo second"); err != nil {
		t.Fatalf("docker run -d: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", "gw-a-talk").Run() })
	if out, err := as(alice, sock, "", "logs", "-f", "gw-a-talk"); err != nil || out != "first\nsecond" {
		t.Errorf("docker logs -f: %v %q", err, out)
	}
	tty := exec.Command("runuser", "-u", alice, "--", "env", "DOCKER_HOST=unix://"+sock, "HOME=/home/"+alice,
		"script", "-qec", "docker exec -it gw-a-nb sh -c 'test -t 0 && echo tty-ok'", "/dev/null")
	if out, err := tty.CombinedOutput(); err != nil || !strings.Contains(string(out), "tty-ok") {
		t.Errorf("docker exec -it on a terminal: %v %q", err, out)
	}
	// docker-compose (Debian's) with a GPU service: compose's device reservation becomes an
	// allocation, and the network it makes is alice's.
	compose, err := exec.LookPath("docker-compose")
	testutil.Require(t, err == nil, "docker-compose is not installed (run hack/install-deps.sh)")
	proj := filepath.Join("/home", alice, "gwproj")
	if err := os.MkdirAll(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proj, "docker-compose.yml"), []byte(`version: "3.8"
services:
  train:
    image: `+image+`
    command: sh -c 'echo GPU=$$NVIDIA_VISIBLE_DEVICES'
    deploy:
      resources:
        reservations:
          devices: [{capabilities: [gpu], count: 1}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = exec.Command("chown", "-R", alice, proj).Run()
	composeAs := func(args ...string) (string, error) {
		cmd := exec.Command("runuser", append([]string{"-u", alice, "--", "env", "DOCKER_HOST=unix://" + sock, "HOME=/home/" + alice, compose}, args...)...)
		cmd.Dir = proj
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() { _, _ = composeAs("down") })
	if out, err := composeAs("up", "--no-color"); err != nil || !strings.Contains(out, "GPU=GPU-") {
		t.Errorf("docker-compose up with a GPU service: %v\n%s", err, out)
	}
	if out, err := composeAs("down"); err != nil {
		t.Errorf("docker-compose down: %v\n%s", err, out)
	}
	// An image build (the classic builder: this docker CLI has no buildx), and its image run.
	ctxDir := filepath.Join("/home", alice, "gwimage")
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM "+image+"\nRUN echo built > /built\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = exec.Command("chown", "-R", alice, ctxDir).Run()
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", "gwalice/built:e2e").Run() })
	if out, err := as(alice, sock, "", "build", "-t", "gwalice/built:e2e", ctxDir); err != nil {
		t.Errorf("docker build: %v\n%s", err, out)
	} else if out, err := as(alice, sock, "", "run", "--rm", "gwalice/built:e2e", "cat", "/built"); err != nil || out != "built" {
		t.Errorf("running the built image: %v %q", err, out)
	}
	if out, err := as(alice, sock, "", "build", "--network", "host", "-t", "gwalice/host:e2e", ctxDir); err == nil || !strings.Contains(out, "gpuwarden:") {
		t.Errorf("docker build --network host: %v\n%s", err, out)
	}
	// Events: bob's stream holds none of alice's containers.
	since := time.Now().Add(-5 * time.Minute).Unix()
	if out, err := as(bob, sock, "", "events", "--since", fmt.Sprint(since), "--until", fmt.Sprint(time.Now().Unix()), "--format", "{{.Actor.Attributes.name}}"); err != nil ||
		strings.Contains(out, "gw-a-nb") || !strings.Contains(out, "gw-b-nb") {
		t.Errorf("bob's docker events: %v\n%s", err, out)
	}
}

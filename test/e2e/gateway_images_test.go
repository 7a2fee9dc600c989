package e2e

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// asEnv runs the real docker CLI as user against the gateway with extra environment; stdin may be empty.
func asEnv(user, sock, stdin string, env []string, args ...string) (string, error) {
	full := append([]string{"-u", user, "--", "env", "DOCKER_HOST=unix://" + sock, "HOME=/home/" + user}, env...)
	cmd := exec.Command("runuser", append(append(full, "docker"), args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return string(out), fmt.Errorf("docker %s as %s: no answer after 90s", strings.Join(args, " "), user)
	}
	return strings.TrimSpace(string(out)), err
}

// rootfsTar is a filesystem of one file, for docker import.
func rootfsTar(t *testing.T) string {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	body := []byte("imported\n")
	if err := tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(body)
	_ = tw.Close()
	return b.String()
}

// TestGatewayImagesAsTwoUsers: each image verb of bob on alice's names is refused, alice's
// own verbs work, the admin's image is runnable but not overwritable, a remote build
// context on the loopback is refused, and a small image builds.
func TestGatewayImagesAsTwoUsers(t *testing.T) {
	alice, bob := "gwimalice", "gwimbob"
	_, sock, dir := gatewayServer(t, "e2e-gw-img", []string{alice, bob})
	image := testutil.DockerImage() // the admin's: shared
	run := fmt.Sprintf("%d", time.Now().UnixNano()%1_000_000)
	tool := alice + "/tool-" + run + ":1"   // alice's tag of the shared image
	model := alice + "/model-" + run + ":1" // alice's build
	snap := alice + "/snap-" + run + ":1"   // alice's commit
	rootfs := alice + "/rootfs-" + run + ":1"
	ct := "gwim-a-" + run
	t.Cleanup(func() {
		_ = exec.Command("docker", "rm", "-f", ct, "gwim-b-"+run).Run()
		for _, n := range []string{tool, model, snap, rootfs, alice + "/model-" + run + ":2", bob + "/mine-" + run + ":1"} {
			_ = exec.Command("docker", "rmi", "-f", n).Run()
		}
	})
	classic := []string{"DOCKER_BUILDKIT=0"}
	dockerfile := "FROM " + image + "\nRUN echo built > /built.txt\n"

	must := func(who string, stdin string, args ...string) string {
		t.Helper()
		out, err := asEnv(who, sock, stdin, classic, args...)
		if err != nil {
			t.Fatalf("docker %s as %s: %v\n%s", strings.Join(args, " "), who, err, out)
		}
		return out
	}
	refused := func(who, stdin, says string, args ...string) {
		t.Helper()
		out, err := asEnv(who, sock, stdin, classic, args...)
		if err == nil || !strings.Contains(out, "gpuwarden: ") || !strings.Contains(out, says) {
			t.Errorf("docker %s as %s: want refused with %q, got %v\n%s", strings.Join(args, " "), who, says, err, out)
		}
	}

	// alice makes names of her own: a tag of the shared image, a build, a commit, an import.
	must(alice, "", "tag", image, tool)
	if out := must(alice, dockerfile, "build", "-t", model, "-"); !strings.Contains(out, "Successfully") {
		t.Errorf("alice's build:\n%s", out)
	}
	if out := must(alice, "", "run", "--rm", model, "cat", "/built.txt"); out != "built" {
		t.Errorf("running alice's build: %q", out)
	}
	must(alice, "", "run", "-d", "--name", ct, image, "sleep", "600")
	must(alice, "", "commit", ct, snap)
	must(alice, rootfsTar(t), "import", "-", rootfs)
	must(alice, "", "tag", model, alice+"/model-"+run+":2")
	must(alice, "", "rmi", alice+"/model-"+run+":2")
	savePath := filepath.Join("/home", alice, "model-"+run+".tar")
	must(alice, "", "save", "-o", savePath, model)
	_ = os.Remove(savePath)

	// bob: every verb onto or of alice's names refused.
	refused(bob, "", "belongs to "+alice, "tag", image, tool)
	refused(bob, dockerfile, "belongs to "+alice, "build", "-t", model, "-")
	refused(bob, rootfsTar(t), "belongs to "+alice, "import", "-", rootfs)
	refused(bob, "", "belongs to "+alice, "pull", snap)
	refused(bob, "", "belongs to "+alice, "rmi", model)
	refused(bob, "", "belongs to "+alice, "rmi", tool)
	refused(bob, "", "belongs to "+alice, "push", snap)
	refused(bob, "", "belongs to "+alice, "save", "-o", "/tmp/gwimbob-"+run+".tar", model)
	refused(bob, "", "belongs to "+alice, "tag", model, bob+"/mine-"+run+":1")
	must(bob, "", "run", "-d", "--name", "gwim-b-"+run, image, "sleep", "600")
	refused(bob, "", "belongs to "+alice, "commit", "gwim-b-"+run, snap)
	refused(bob, "", "belongs to "+alice, "commit", ct, bob+"/mine-"+run+":1")
	refused(bob, rootfsTar(t), "docker load is for admins", "load")
	// Nor run it: a container from another user's image is refused.
	refused(bob, "", "belongs to "+alice, "run", "--rm", model, "true")
	// The names are still alice's images.
	if out := must(alice, "", "run", "--rm", model, "cat", "/built.txt"); out != "built" {
		t.Errorf("alice's build after bob's attempts: %q", out)
	}

	// The admin's image: runnable by bob, never overwritten or removed by him.
	must(bob, "", "run", "--rm", image, "true")
	refused(bob, "", "is shared", "tag", image, image)
	refused(bob, dockerfile, "is shared", "build", "-t", image, "-")
	refused(bob, "", "is shared", "rmi", image)
	refused(bob, "", "is shared", "push", image)
	refused(bob, "", "by force", "rmi", "-f", tool)
	// bob's own name of the shared image is his.
	must(bob, "", "tag", image, bob+"/mine-"+run+":1")
	refused(alice, "", "belongs to "+bob, "rmi", bob+"/mine-"+run+":1")
	must(bob, "", "rmi", bob+"/mine-"+run+":1")

	// A remote build context on this machine's loopback: refused before the engine fetches it.
	out, err := exec.Command("runuser", "-u", bob, "--", "curl", "-s", "--unix-socket", sock, "-X", "POST",
		"http://gpuwarden/v1.41/build?remote=http://127.0.0.1:9402/metrics").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "loopback, link-local or private") {
		t.Errorf("a remote build context on 127.0.0.1: %v %s", err, out)
	}
	// BuildKit's session is the admins'.
	out, err = exec.Command("runuser", "-u", bob, "--", "curl", "-s", "--unix-socket", sock, "-X", "POST",
		"http://gpuwarden/v1.41/build?version=2").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "BuildKit") {
		t.Errorf("a BuildKit build: %v %s", err, out)
	}

	// alice removes what she made; the record of owners is in the server's data dir.
	must(alice, "", "rm", "-f", ct)
	must(alice, "", "rmi", snap, rootfs, tool)
	if b, err := os.ReadFile(filepath.Join(dir, "gateway-images.json")); err != nil || !strings.Contains(string(b), model) {
		t.Errorf("the record of image owners: %v\n%s", err, b)
	}
	must(alice, "", "rmi", model)
}

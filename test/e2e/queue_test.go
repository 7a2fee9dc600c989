package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestWaitingForAGPU is two researchers without root on a full server: bob holds every GPU;
// alice's `docker run --gpus 1 --label gpuwarden.io/wait=1h` waits, and while it does she
// (and the admin) sees its place, its estimated and latest start, the holder it waits for
// and why it waits; a second request she gives up with Ctrl-C leaves the queue at once and
// creates nothing; when bob removes his container hers starts, and she is told by e-mail at
// a REAL SMTP server.
func TestWaitingForAGPU(t *testing.T) {
	alice, bob := "qalice", "qbob"
	mailFlags, mail := smtpSink(t)
	s, sock, _ := gatewayServer(t, "e2e-queue", []string{alice, bob}, append([]string{"--fake-gpus", "h100x8", "--gateway-notice-after", "2s"}, mailFlags...)...)
	if _, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: ContainerPolicy
metadata: {name: queue-limits}
spec:
  selector: {users: [`+alice+`, `+bob+`]}
  maxRuntime: 2h
  stopGracePeriod: 10s
  gpuHoldAfterStop: 5m
  queue: {maxWait: 2h}
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	image := os.Getenv("GPUWARDEN_TEST_IMAGE")
	bin := binary(t)

	if out, err := as(bob, sock, "", "run", "-d", "--name", "qb-all", "--gpus", "all", image, "sleep", "3600"); err != nil {
		t.Fatalf("bob takes every GPU: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = as(bob, sock, "", "rm", "-f", "qb-all") })
	if out, err := as(alice, sock, "", "run", "--rm", "--gpus", "1", "--label", "gpuwarden.io/wait=3h", image, "true"); err == nil ||
		!strings.Contains(out, "asks to wait longer than the 2h allowed (queue.maxWait, ContainerPolicy queue-limits)") {
		t.Errorf("a wait beyond the policy's: %v\n%s", err, out)
	}

	// Alice's two requests wait: docker run blocks in its create.
	waitFor := func(name string) (*exec.Cmd, *testutil.SyncBuffer) {
		out := &testutil.SyncBuffer{}
		cmd := exec.Command("runuser", "-u", alice, "--", "env", "DOCKER_HOST=unix://"+sock, "HOME=/home/"+alice,
			"docker", "run", "-d", "--name", name, "--gpus", "1", "--label", "gpuwarden.io/wait=1h", image, "sleep", "600")
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's Ctrl-C reaches its process group
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_, _ = as(alice, sock, "", "rm", "-f", name)
		})
		return cmd, out
	}
	train, trainOut := waitFor("qa-train")
	pending := func(container string) map[string]string {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "-l", "gpuwarden.io/user="+alice, "--field-selector", "status.phase=Pending")
		for _, r := range tableRows(out) {
			if r["CONTAINER"] == container {
				return r
			}
		}
		return nil
	}
	testutil.Eventually(t, 30*time.Second, "kubectl get ga shows alice's waiting request first, with its estimate and latest start", func() (bool, string) {
		r := pending("qa-train")
		return r != nil && r["PLACE"] == "1" && strings.HasPrefix(r["ESTIMATE"], "20") && strings.HasPrefix(r["LATEST"], "20"), fmt.Sprint(r)
	})
	// Creation times are to the second, and requests of one second go by name: the second
	// request comes a second later.
	time.Sleep(time.Second)
	cancelled, cancelledOut := waitFor("qa-cancel")
	testutil.Eventually(t, 30*time.Second, "her second request second in the queue", func() (bool, string) {
		r := pending("qa-cancel")
		return r != nil && r["PLACE"] == "2", fmt.Sprint(r)
	})
	name := pending("qa-train")["NAME"]

	// What she sees: the queue, and why it waits.
	if out, err := exec.Command(bin, "queue", "--kubeconfig", s.kubeconfig).CombinedOutput(); err != nil ||
		!all(string(out), "e2e-queue", name, alice, "1 GPU", "capacity: until gateway-") {
		t.Errorf("gpuwarden queue: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "explain", "allocation", name, "--kubeconfig", s.kubeconfig).CombinedOutput(); err != nil ||
		!all(string(out), "Number 1 of 2 waiting for capacity on e2e-queue", "at the latest, when gateway-", "Nothing is ahead of it") {
		t.Errorf("gpuwarden explain allocation %s: %v\n%s", name, err, out)
	}

	// Ctrl-C of the second: it leaves the queue at once, and nothing is created.
	if err := syscall.Kill(-cancelled.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cancelled.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("docker run did not end on Ctrl-C:\n%s", cancelledOut.String())
	}
	testutil.Eventually(t, 15*time.Second, "the withdrawn request gone from the queue", func() (bool, string) {
		r := pending("qa-train")
		return pending("qa-cancel") == nil && r != nil && r["PLACE"] == "1", fmt.Sprint(r)
	})
	if out, _ := as(alice, sock, "", "ps", "-a", "--filter", "name=qa-cancel", "--format", "{{.Names}}"); strings.Contains(out, "qa-cancel") {
		t.Errorf("a container was created for the request withdrawn: %s", out)
	}

	// Bob's container goes: alice's starts, and she is told by e-mail.
	if out, err := as(bob, sock, "", "rm", "-f", "qb-all"); err != nil {
		t.Fatalf("bob removes his container: %v\n%s", err, out)
	}
	trainDone := make(chan error, 1)
	go func() { trainDone <- train.Wait() }()
	select {
	case err := <-trainDone:
		if err != nil {
			t.Fatalf("alice's docker run: %v\n%s", err, trainOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("alice's docker run did not start once bob's GPUs were free:\n%s", trainOut.String())
	}
	if out, err := as(alice, sock, "", "inspect", "-f", "{{.State.Running}} {{index .Config.Labels \"gpuwarden.io/wait\"}}", "qa-train"); err != nil || out != "true 1h" {
		t.Errorf("qa-train: %v %q, want running with the wait it was granted", err, out)
	}
	testutil.Eventually(t, 30*time.Second, "the start e-mailed to alice", func() (bool, string) {
		m := mail.String()
		return strings.Contains(m, "To: <"+alice+"@lab.test>") && strings.Contains(m, "Subject: gpuwarden STARTED: container qa-train on e2e-queue") &&
			strings.Contains(m, "Your request got GPU"), m
	})
}

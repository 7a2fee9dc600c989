package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestBorrowingIdleGPUsAndGivingThemBack is two researchers without root, through the
// gateway, on fake GPUs: alice's quota is 2 GPUs and she may borrow 6 more while they are
// free; she runs on 2 of her own and 6 borrowed (kubectl shows which). Bob asks for 2
// within his quota: alice is told by e-mail, her borrowing container's checkpoint hook runs
// (what it saved is in the container, its record in her audit records), it is stopped and
// released, and bob's docker run gets its GPUs. Her own container runs on.
func TestBorrowingIdleGPUsAndGivingThemBack(t *testing.T) {
	alice, bob := "bwalice", "bwbob"
	mailFlags, mail := smtpSink(t)
	s, sock, _ := gatewayServer(t, "e2e-borrow", []string{alice, bob}, append([]string{"--fake-gpus", "h100x8"}, mailFlags...)...)
	if out, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: borrower}
spec:
  subjects: [{kind: User, name: `+alice+`}]
  limits: {gpuEquivalents: "2"}
  borrowing: {gpuEquivalents: "6"}
---
apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: owner}
spec:
  subjects: [{kind: User, name: `+bob+`}]
  limits: {gpuEquivalents: "4"}
---
apiVersion: gpuwarden.io/v1alpha1
kind: ContainerPolicy
metadata: {name: borrowing}
spec:
  selector: {users: [`+alice+`, `+bob+`]}
  stopGracePeriod: 3s
  checkpointTimeout: 20s
`, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	image := os.Getenv("GPUWARDEN_TEST_IMAGE")
	if out, err := as(alice, sock, "", "run", "-d", "--name", "bw-own", "--gpus", "2", image, "sleep", "3600"); err != nil {
		t.Fatalf("alice's own 2 GPUs: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = as(alice, sock, "", "rm", "-f", "bw-own") })
	if out, err := as(alice, sock, "", "run", "-d", "--name", "bw-borrow", "--gpus", "6",
		"--label", "gpuwarden.io/checkpoint=echo saved-at-step-42 > /tmp/ckpt", image, "sleep", "3600"); err != nil {
		t.Fatalf("alice borrows 6 more: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = as(alice, sock, "", "rm", "-f", "bw-borrow") })
	if out, err := as(alice, sock, "", "run", "--rm", "--gpus", "1", image, "true"); err == nil || !strings.Contains(out, "beyond the 6 they may borrow (GPUQuota borrower)") {
		t.Errorf("beyond quota and borrowing: %v\n%s", err, out)
	}
	out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "-l", "gpuwarden.io/user="+alice, "--field-selector", "status.phase=Bound")
	borrowed := map[string]string{}
	for _, r := range tableRows(out) {
		borrowed[r["CONTAINER"]] = r["BORROWED"]
	}
	if borrowed["bw-borrow"] != "true" || borrowed["bw-own"] == "true" {
		t.Errorf("kubectl get ga BORROWED: %v\n%s", borrowed, out)
	}

	// Bob asks for 2 within his quota: every GPU is held, 6 of them borrowed.
	asked := time.Now()
	if out, err := as(bob, sock, "", "run", "-d", "--name", "bw-bob", "--gpus", "2", "--label", "gpuwarden.io/wait=5m", image, "sleep", "600"); err != nil {
		t.Fatalf("bob's request within his quota: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = as(bob, sock, "", "rm", "-f", "bw-bob") })
	t.Logf("bob's request bound %s after it was made (hook + grace 3s + a pass)", time.Since(asked).Round(100*time.Millisecond))

	if out, err := as(alice, sock, "", "inspect", "-f", "{{.State.Running}}", "bw-borrow"); err != nil || out != "false" {
		t.Errorf("alice's borrowing container: running %q %v; want stopped", out, err)
	}
	if out, err := as(alice, sock, "", "inspect", "-f", "{{.State.Running}}", "bw-own"); err != nil || out != "true" {
		t.Errorf("alice's own container: running %q %v; want running", out, err)
	}
	if out, err := as(alice, sock, "", "cp", "bw-borrow:/tmp/ckpt", "-"); err != nil || !strings.Contains(out, "saved-at-step-42") {
		t.Errorf("what the checkpoint hook saved in the container: %v\n%s", err, out)
	}
	bin := binary(t)
	events := func(user string, args ...string) (string, error) {
		out, err := exec.Command("runuser", append([]string{"-u", user, "--", "env", "HOME=/home/" + user, bin, "events", "--gateway-socket", sock}, args...)...).CombinedOutput()
		return string(out), err
	}
	testutil.Eventually(t, 30*time.Second, "the hook's record and the give-back in alice's records", func() (bool, string) {
		out, err := events(alice, "--container", "bw-borrow")
		return err == nil && all(out, "container.checkpoint", "exit_code=0", "lifecycle.give_back", "ran for"), out
	})
	testutil.Eventually(t, 30*time.Second, "alice told by e-mail", func() (bool, string) {
		m := mail.String()
		return strings.Contains(m, "To: <"+alice+"@lab.test>") && strings.Contains(m, "Subject: gpuwarden GIVING BACK: container bw-borrow") &&
			strings.Contains(m, "Its checkpoint hook runs first"), m
	})
	out, _ = kubectl(t, s.kubeconfig, "", "get", "ga", "-l", "gpuwarden.io/user="+alice, "-o", `jsonpath={range .items[*]}{.status.containerName} {.status.phase}: {.status.message}{"\n"}{end}`)
	if !strings.Contains(out, "bw-borrow Released: Devices given back: borrowed beyond "+alice+"'s quota") {
		t.Errorf("alice's allocations do not say why the borrowed GPUs went:\n%s", out)
	}
}

// TestABudgetRefusesTheRequestPastIt is a researcher without root, through the gateway: a
// budget of 0.001 gpu-hours (3.6 GPU-seconds) is used up by a container that runs a few
// seconds; the next docker run is refused with BudgetExceeded, naming the use, the budget,
// the quota and when enough frees up; she is told by e-mail of 80 % once and of 100 %.
func TestABudgetRefusesTheRequestPastIt(t *testing.T) {
	alice := "bgalice"
	mailFlags, mail := smtpSink(t)
	s, sock, _ := gatewayServer(t, "e2e-budget", []string{alice}, append([]string{"--fake-gpus", "h100x8"}, mailFlags...)...)
	if out, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: tiny-budget}
spec:
  subjects: [{kind: User, name: `+alice+`}]
  budget: {gpuHours: "0.001", window: Month}
`, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	image := os.Getenv("GPUWARDEN_TEST_IMAGE")
	if out, err := as(alice, sock, "", "run", "-d", "--name", "bg-run", "--gpus", "1", image, "sleep", "600"); err != nil {
		t.Fatalf("within the budget: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = as(alice, sock, "", "rm", "-f", "bg-run") })
	var out string
	testutil.Eventually(t, 60*time.Second, "a request refused once 3.6 GPU-seconds are used", func() (bool, string) {
		var err error
		out, err = as(alice, sock, "", "run", "--rm", "--gpus", "1", image, "true")
		return err != nil && strings.Contains(out, "BudgetExceeded"), out
	})
	if !all(out, alice+" used 0.00", "of a budget of 0.001 gpu-hours in this month (UTC) (GPUQuota tiny-budget); enough frees up at 20") {
		t.Errorf("the refusal: %s", out)
	}
	testutil.Eventually(t, 90*time.Second, "alice told of 80 % and of 100 % by e-mail", func() (bool, string) {
		m := mail.String()
		return strings.Contains(m, "Subject: gpuwarden BUDGET: "+alice) && strings.Contains(m, "past 80 %") &&
			strings.Contains(m, "You used your whole 0.001 gpu-hour budget"), m
	})
	if n := strings.Count(mail.String(), "past 80 %"); n != 1 {
		t.Errorf("the 80 %% notice sent %d times", n)
	}
}

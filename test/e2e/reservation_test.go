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

// TestAReservationStartsOnTime is three researchers without root, through the gateway, on
// fake GPUs, and an admin with kubectl. Bob runs on GPU 0 with a checkpoint hook and no
// runtime limit; the admin books GPU 0 for alice from a few seconds ahead, stopping what
// crosses the start. Bob is told by e-mail at once; at the start his hook runs, he is
// stopped and released; carol's request then goes to another GPU, and alice's binds GPU 0
// at once, and carol's for GPU 0 by name is refused saying why; at the end GPU 0 is
// everyone's again. An overlapping booking of GPU 0 is
// rejected naming the one in the way, and alice's own booking beyond her allowance is
// refused naming the limit.
func TestAReservationStartsOnTime(t *testing.T) {
	alice, bob, carol := "rvalice", "rvbob", "rvcarol"
	mailFlags, mail := smtpSink(t)
	s, sock, dir := gatewayServer(t, "e2e-rsv", []string{alice, bob, carol}, append([]string{"--fake-gpus", "h100x8"}, mailFlags...)...)
	if out, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: ContainerPolicy
metadata: {name: reservations}
spec:
  selector: {users: [`+alice+`, `+bob+`, `+carol+`]}
  stopGracePeriod: 3s
  checkpointTimeout: 5s
---
apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: alice-books}
spec:
  subjects: [{kind: User, name: `+alice+`}]
  limits: {reservedGPUHours: "0.5"}
`, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	image := os.Getenv("GPUWARDEN_TEST_IMAGE")
	devicesOf := func(user, container string) string {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "-l", "gpuwarden.io/user="+user, "-o",
			`jsonpath={range .items[*]}{.status.containerName}={.status.phase}:{.status.devicesSummary};{end}`)
		for _, f := range strings.Split(out, ";") {
			if name, rest, ok := strings.Cut(f, "="); ok && name == container && strings.HasPrefix(rest, "Bound:") {
				return strings.TrimPrefix(rest, "Bound:")
			}
		}
		return "not bound: " + out
	}
	if out, err := as(bob, sock, "", "run", "-d", "--name", "rv-bob", "--gpus", "1",
		"--label", "gpuwarden.io/checkpoint=echo saved-before-the-reservation > /tmp/ckpt", image, "sleep", "3600"); err != nil {
		t.Fatalf("bob's run: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = as(bob, sock, "", "rm", "-f", "rv-bob") })
	if d := devicesOf(bob, "rv-bob"); d != "0" {
		t.Fatalf("bob's container holds GPU %s; want 0", d)
	}

	start := time.Now().Add(25 * time.Second).UTC().Truncate(time.Second)
	end := start.Add(40 * time.Second)
	book := func(name, devices, subjects, displace string, from, to time.Time) string {
		return fmt.Sprintf(`apiVersion: gpuwarden.io/v1alpha1
kind: GPUReservation
metadata: {name: %s}
spec:
  subjects: %s
  nodeName: e2e-rsv
  request: {devices: [%s]}
  start: %q
  end: %q
  displace: %s
`, name, subjects, devices, from.Format(time.RFC3339), to.Format(time.RFC3339), displace)
	}
	// Seconds after the API server starts, its admission may not know the kind yet (a
	// retryable ServiceUnavailable): kubectl is asked again, as a script would.
	testutil.Eventually(t, 30*time.Second, "the admin's booking made", func() (bool, string) {
		out, err := kubectl(t, s.kubeconfig, book("rv-deadline", `"0"`, "[{kind: User, name: "+alice+"}]", "Stop", start, end), "create", "-f", "-")
		return err == nil, out
	})
	status := func(name string) string {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "rsv", name, "-o", `jsonpath={.status.phase} {.status.reason}: {.status.message}`)
		return out
	}
	testutil.Eventually(t, 30*time.Second, "the booking accepted", func() (bool, string) {
		out := status("rv-deadline")
		return strings.HasPrefix(out, "Accepted"), out
	})

	// An overlapping booking of GPU 0 cannot be met.
	if out, err := kubectl(t, s.kubeconfig, book("rv-overlap", `"0"`, "[{kind: User, name: "+carol+"}]", "Wait", start.Add(10*time.Second), end.Add(time.Hour)), "create", "-f", "-"); err != nil {
		t.Fatalf("the overlapping booking: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, "the overlapping booking rejected", func() (bool, string) {
		out := status("rv-overlap")
		return strings.HasPrefix(out, "Rejected DevicesConflict") && strings.Contains(out, "rv-deadline"), out
	})

	// Alice books for herself with kubectl: beyond her allowance it is refused, naming it.
	bin := binary(t)
	kc := filepath.Join("/home", alice, ".kube", "gpuwarden-rsv")
	t.Cleanup(func() { os.Remove(kc) })
	if out, err := exec.Command("runuser", "-u", alice, "--", bin, "kubeconfig", "--gateway-socket", sock, "--days", "1", "-o", kc).CombinedOutput(); err != nil {
		t.Fatalf("alice's kubeconfig: %v\n%s", err, out)
	}
	asAlice := kubectlAs(alice, kc)
	later := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Hour)
	if out, err := asAlice(book("rv-alice-own", `"1"`, "[{kind: User, name: "+alice+"}]", "Wait", later, later.Add(time.Hour)), "create", "-f", "-"); err != nil {
		t.Fatalf("alice's own booking: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, "alice's booking beyond her allowance refused", func() (bool, string) {
		out := status("rv-alice-own")
		return strings.HasPrefix(out, "Rejected AllowanceExceeded") && strings.Contains(out, "limits.reservedGPUHours is 0.5") &&
			strings.Contains(out, "GPUQuota alice-books"), out
	})
	if out, err := asAlice(book("rv-alice-stop", `"2"`, "[{kind: User, name: "+alice+"}]", "Stop", later, later.Add(10*time.Minute)), "create", "-f", "-"); err == nil {
		t.Errorf("a user's booking that stops others' work was let in:\n%s", out)
	}

	// Bob crosses the start: told by e-mail at once.
	testutil.Eventually(t, 30*time.Second, "bob told by e-mail", func() (bool, string) {
		m := mail.String()
		return strings.Contains(m, "To: <"+bob+"@lab.test>") && strings.Contains(m, "Subject: gpuwarden RESERVED: container rv-bob") &&
			strings.Contains(m, "its checkpoint hook runs"), m
	})
	if time.Now().After(start) {
		t.Fatalf("the set-up took past the start (%s); the test's window is too short for this machine", start)
	}

	// The start: bob is stopped (his hook first) and released, so that GPU 0 is free then;
	// carol goes elsewhere; alice binds GPU 0 at once.
	testutil.Eventually(t, time.Until(start)+30*time.Second, "bob stopped by the start", func() (bool, string) {
		out, err := as(bob, sock, "", "inspect", "-f", "{{.State.Running}}", "rv-bob")
		return err == nil && out == "false" && !strings.HasPrefix(devicesOf(bob, "rv-bob"), "0"), out
	})
	stoppedAt := time.Now()
	if out, err := as(bob, sock, "", "cp", "rv-bob:/tmp/ckpt", "-"); err != nil || !strings.Contains(out, "saved-before-the-reservation") {
		t.Errorf("what bob's checkpoint hook saved: %v\n%s", err, out)
	}
	testutil.Eventually(t, time.Until(start)+15*time.Second, "the window begun", func() (bool, string) {
		out := status("rv-deadline")
		return strings.HasPrefix(out, "Active"), out
	})
	if out, err := as(carol, sock, "", "run", "-d", "--name", "rv-carol", "--gpus", "1", image, "sleep", "600"); err != nil {
		t.Fatalf("carol's run: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = as(carol, sock, "", "rm", "-f", "rv-carol") })
	if d := devicesOf(carol, "rv-carol"); d == "0" || strings.HasPrefix(d, "not bound") {
		t.Errorf("carol's container holds GPU %s; want another than the reserved 0", d)
	}
	if out, err := as(alice, sock, "", "run", "-d", "--name", "rv-alice", "--gpus", "1", image, "sleep", "600"); err != nil {
		t.Fatalf("alice's run within her reservation: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = as(alice, sock, "", "rm", "-f", "rv-alice") })
	if d := devicesOf(alice, "rv-alice"); d != "0" {
		t.Errorf("alice's container holds GPU %s; want the reserved 0", d)
	}
	if stoppedAt.After(start.Add(5 * time.Second)) {
		t.Errorf("bob's GPU was free %s after the start; want by the start (within a pass)", stoppedAt.Sub(start).Round(100*time.Millisecond))
	}
	t.Logf("bob's GPU free %s before the start; alice bound %s after it", start.Sub(stoppedAt).Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))

	// Within the window GPU 0 is alice's alone: carol asking for it by name is refused
	// (after the 2 seconds she said she would wait), saying why.
	if out, err := as(alice, sock, "", "rm", "-f", "rv-alice"); err != nil {
		t.Fatalf("alice's rm: %v\n%s", err, out)
	}
	if out, err := as(carol, sock, "", "run", "--rm", "--gpus", "device=0", "--label", "gpuwarden.io/wait=2s", image, "true"); err == nil || !strings.Contains(out, "GPUReservation rv-deadline") {
		t.Errorf("carol asking for the reserved GPU 0 within the window: %v\n%s", err, out)
	}

	// The end: the devices go back to everyone; carol's request for GPU 0 binds.
	testutil.Eventually(t, time.Until(end)+30*time.Second, "the reservation ended", func() (bool, string) {
		out := status("rv-deadline")
		return strings.HasPrefix(out, "Ended"), out
	})
	if out, err := as(carol, sock, "", "run", "--rm", "--gpus", "device=0", image, "sh", "-c", "echo GPU=$NVIDIA_VISIBLE_DEVICES"); err != nil || !strings.HasPrefix(out, "GPU=GPU-") {
		t.Errorf("carol asking for GPU 0 after the end: %v\n%s", err, out)
	}
	// Each step is in the audit log (written just after the status that shows it).
	testutil.Eventually(t, 30*time.Second, "every step in the audit log", func() (bool, string) {
		log, err := os.ReadFile(filepath.Join(dir, "audit", "events.jsonl"))
		if err != nil {
			return false, err.Error()
		}
		var missing []string
		for _, want := range []string{"reservation.accepted", "reservation.rejected", "reservation.displaced", "reservation.active", "lifecycle.reservation_stop",
			"container.checkpoint", "reservation.ended"} {
			if !strings.Contains(string(log), `"event_type":"`+want+`"`) {
				missing = append(missing, want)
			}
		}
		return len(missing) == 0, fmt.Sprint("missing ", missing)
	})
}

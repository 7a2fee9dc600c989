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

// seeing is a full server as a lab sees it: bob holds seven GPUs, alice the eighth, alice's
// second request waits in the queue, and the admin has booked GPU 3 for alice two days
// ahead.
type seeing struct {
	s          *server
	sock, dir  string
	alice, bob string
	// webURL is the status page's address; metricsURL the node's /metrics.
	webURL, metricsURL string
	// bobContainer and aliceContainer hold GPUs 0–6 and 7; waiting is alice's queued
	// request's container, and waitingAllocation its GPUAllocation.
	bobContainer, aliceContainer, waiting, waitingAllocation string
	reservation                                              string
}

// TestSeeingIt is what everyone with a shell and an admin with a browser see of that
// server: `gpuwarden top` in a real terminal (tmux), its --once and -o json against
// kubectl, and the status page in a real headless browser, which follows alice's
// container's removal without a reload.
func TestSeeingIt(t *testing.T) {
	w := newSeeing(t)
	t.Run("top", func(t *testing.T) { checkTop(t, w) })
	// Last: it removes alice's container.
	t.Run("page", func(t *testing.T) { checkPage(t, w) })
}

func newSeeing(t *testing.T) *seeing {
	t.Helper()
	w := &seeing{alice: "sialice", bob: "sibob", bobContainer: "see-bob", aliceContainer: "see-alice", waiting: "see-wait", reservation: "see-rsv"}
	webPort := testutil.FreePort(t)
	w.s, w.sock, w.dir = gatewayServer(t, "e2e-see", []string{w.alice, w.bob}, "--fake-gpus", "h100x8",
		"--web-bind-address", fmt.Sprintf("127.0.0.1:%d", webPort))
	w.webURL = fmt.Sprintf("http://127.0.0.1:%d/", webPort)
	w.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", w.s.metricPort)
	image := os.Getenv("GPUWARDEN_TEST_IMAGE")

	run := func(user, name, gpus string) {
		if out, err := as(user, w.sock, "", "run", "-d", "--name", name, "--gpus", gpus, image, "sleep", "3600"); err != nil {
			t.Fatalf("%s's run of %s: %v\n%s", user, name, err, out)
		}
		t.Cleanup(func() { _, _ = as(user, w.sock, "", "rm", "-f", name) })
	}
	run(w.bob, w.bobContainer, "7")
	run(w.alice, w.aliceContainer, "1")

	// Alice's next request waits: docker run blocks in its create.
	out := &testutil.SyncBuffer{}
	cmd := exec.Command("runuser", "-u", w.alice, "--", "env", "DOCKER_HOST=unix://"+w.sock, "HOME=/home/"+w.alice,
		"docker", "run", "-d", "--name", w.waiting, "--gpus", "1", "--label", "gpuwarden.io/wait=1h", image, "sleep", "600")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_, _ = as(w.alice, w.sock, "", "rm", "-f", w.waiting)
	})
	testutil.Eventually(t, 30*time.Second, "alice's request first in the queue", func() (bool, string) {
		out, _ := kubectl(t, w.s.kubeconfig, "", "get", "ga", "-l", "gpuwarden.io/user="+w.alice, "--field-selector", "status.phase=Pending")
		for _, r := range tableRows(out) {
			if r["CONTAINER"] == w.waiting && r["PLACE"] == "1" {
				w.waitingAllocation = r["NAME"]
				return true, out
			}
		}
		return false, out
	})

	start := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Hour)
	booking := fmt.Sprintf(`apiVersion: gpuwarden.io/v1alpha1
kind: GPUReservation
metadata: {name: %s}
spec:
  subjects: [{kind: User, name: %s}]
  nodeName: e2e-see
  request: {devices: ["3"]}
  start: %q
  end: %q
`, w.reservation, w.alice, start.Format(time.RFC3339), start.Add(4*time.Hour).Format(time.RFC3339))
	testutil.Eventually(t, 30*time.Second, "the admin's booking made", func() (bool, string) {
		out, err := kubectl(t, w.s.kubeconfig, booking, "create", "-f", "-")
		return err == nil, out
	})
	testutil.Eventually(t, 30*time.Second, "the booking accepted", func() (bool, string) {
		out, _ := kubectl(t, w.s.kubeconfig, "", "get", "rsv", w.reservation, "-o", "jsonpath={.status.phase}")
		return out == "Accepted", out
	})
	return w
}

// lacks are those of wants that s does not contain.
func lacks(s string, wants ...string) []string {
	var out []string
	for _, w := range wants {
		if !strings.Contains(s, w) {
			out = append(out, w)
		}
	}
	return out
}

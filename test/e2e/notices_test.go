package e2e

import (
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestAUserIsToldByMailAndChat follows the user guide as two researchers without root: alice
// sets a Slack-format webhook of her own with `gpuwarden notifications set` (bob's settings
// stay his, and his kubeconfig may not write hers), her idle container is warned, stopped
// and its removal announced, and each notice reaches her by e-mail at a REAL SMTP server
// (python3-aiosmtpd, at the address the admin's template makes of her login) and at her
// webhook; `notifications test` says how each channel took a test notice. She then finds out
// why with `gpuwarden events` and `explain container`, as herself; bob reads none of it.
func TestAUserIsToldByMailAndChat(t *testing.T) {
	alice, bob := "ntalice", "ntbob"
	python := "/usr/bin/python3" // Debian's, which python3-aiosmtpd installs into
	testutil.Require(t, exec.Command(python, "-c", "import aiosmtpd").Run() == nil, "python3-aiosmtpd is not installed (run hack/install-deps.sh)")
	smtpPort := testutil.FreePort(t)
	mail := daemon(t, python, "-u", "-m", "aiosmtpd", "-n", "-l", fmt.Sprintf("127.0.0.1:%d", smtpPort), "-c", "aiosmtpd.handlers.Debugging")
	hook := &webhookSink{}
	hooks := httptest.NewServer(hook)
	t.Cleanup(hooks.Close)

	control := filepath.Join(t.TempDir(), "gpus.yaml")
	if err := os.WriteFile(control, []byte(`devices: {"0": {utilization: 0}, "1": {utilization: 0}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, sock, _ := gatewayServer(t, "e2e-notices", []string{alice, bob}, "--fake-gpus-control", control, "--sample-interval", "1s",
		"--smtp-server", fmt.Sprintf("127.0.0.1:%d", smtpPort), "--smtp-from", "gpuwarden@e2e.test", "--notify-email-template", "{user}@lab.test",
		"--allow-local-webhooks")
	bin := binary(t)
	notifications := func(user string, args ...string) (string, error) {
		out, err := exec.Command("runuser", append([]string{"-u", user, "--", bin, "notifications", "--gateway-socket", sock}, args...)...).CombinedOutput()
		return string(out), err
	}

	// Alice reads and sets her own; bob's stay his.
	out, err := notifications(alice)
	if err != nil || !strings.Contains(out, alice+"@lab.test (your admin's rule)") || !strings.Contains(out, "WEBHOOKS  none") {
		t.Fatalf("alice's notifications before she sets any: %v\n%s", err, out)
	}
	if out, err := notifications(alice, "set", "--webhook", "Slack="+hooks.URL+"/alice"); err != nil || !strings.Contains(out, "Slack http://127.0.0.1") {
		t.Fatalf("alice sets her webhook: %v\n%s", err, out)
	}
	if out, err := notifications(alice, "set", "--webhook", "IRC=http://chat.example.org/x"); err == nil || !strings.Contains(out, "none of Slack, Mattermost, Teams, JSON") {
		t.Errorf("an unknown format: %v\n%s", err, out)
	}
	if out, err := notifications(bob); err != nil || strings.Contains(out, "/alice") || !strings.Contains(out, bob+"@lab.test") {
		t.Errorf("bob sees alice's webhook or not his own address: %v\n%s", err, out)
	}
	kc := filepath.Join(t.TempDir(), bob+".kubeconfig")
	if out, err := exec.Command(bin, "kubeconfig", "--user", bob, "--data-dir", s.dataDir, "-o", kc).CombinedOutput(); err != nil {
		t.Fatalf("bob's kubeconfig: %v\n%s", err, out)
	}
	if out, err := kubectl(t, kc, `apiVersion: gpuwarden.io/v1alpha1
kind: NotificationProfile
metadata: {name: steal}
spec: {user: `+alice+`, email: bob@evil.test}
`, "create", "-f", "-"); err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("bob writes a NotificationProfile for alice with his kubeconfig: %v\n%s", err, out)
	}
	if out, err := kubectl(t, kc, "", "get", "notificationprofiles"); err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("bob lists everyone's webhooks: %v\n%s", err, out)
	}

	// A test notice: each channel says how it took it.
	if out, err := notifications(alice, "test"); err != nil || !strings.Contains(out, "email   "+alice+"@lab.test: sent") || !strings.Contains(out, "chat    Slack http://127.0.0.1") {
		t.Fatalf("alice's test notice: %v\n%s", err, out)
	}
	if out, err := notifications(alice, "test"); err == nil || !strings.Contains(out, "one a minute") {
		t.Errorf("a second test at once: %v\n%s", err, out)
	}

	// Her idle notebook is warned, stopped, and its removal announced.
	if _, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: ContainerPolicy
metadata: {name: notices}
spec:
  selector: {users: [`+alice+`]}
  idle: {timeout: 8s, gpuUtilizationPercent: 5, cpuPercent: 50, consecutiveSamples: 2, warnAtFractions: ["0.5"], startupGrace: 1s}
  stopGracePeriod: 1s
  removeAfterStop: 1h
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	image := os.Getenv("GPUWARDEN_TEST_IMAGE")
	if out, err := as(alice, sock, "", "run", "-d", "--name", "nt-nb", "--gpus", "1", image, "sleep", "600"); err != nil {
		t.Fatalf("alice's notebook: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = as(alice, sock, "", "rm", "-f", "nt-nb") })
	mailed := func(subject string) bool {
		return strings.Contains(mail.String(), "To: <"+alice+"@lab.test>") && strings.Contains(mail.String(), "Subject: gpuwarden "+subject+": container nt-nb")
	}
	posted := func(words ...string) bool {
		hook.mu.Lock()
		defer hook.mu.Unlock()
		for _, b := range hook.bodies {
			if all(b, words...) {
				return true
			}
		}
		return false
	}
	testutil.Eventually(t, 90*time.Second, "the warning, the stop and the announced removal by mail and at alice's webhook", func() (bool, string) {
		return mailed("WARNING") && mailed("STOPPED") && mailed("NOTICE") &&
				posted(`"text"`, "WARNING", "nt-nb", "will be stopped at") && posted("STOPPED", "nt-nb") && posted("It will be removed at"),
			mail.String()
	})

	// Alice finds out why, as herself: her audit records through the gateway and explain;
	// bob's records hold nothing of hers.
	as := func(user string, args ...string) (string, error) {
		out, err := exec.Command("runuser", append([]string{"-u", user, "--", "env", "HOME=/home/" + user, bin}, args...)...).CombinedOutput()
		return string(out), err
	}
	// The audit log is written in groups: the stop's record may follow its notices.
	testutil.Eventually(t, 30*time.Second, "alice's gpuwarden events --container nt-nb", func() (bool, string) {
		out, err := as(alice, "events", "--gateway-socket", sock, "--container", "nt-nb", "--type", "lifecycle")
		return err == nil && all(out, "lifecycle.idle_warning", "lifecycle.idle_stop", "nt-nb", "policy=notices"), out
	})
	if out, err := as(alice, "explain", "container", "nt-nb", fmt.Sprintf("--server=http://127.0.0.1:%d", s.metricPort)); err != nil ||
		!all(out, "Stopped by gpuwarden at", "idle", "removed at") {
		t.Errorf("alice's gpuwarden explain container nt-nb: %v\n%s", err, out)
	}
	if out, err := as(bob, "events", "--gateway-socket", sock, "--limit", "0"); err != nil || strings.Contains(out, "nt-nb") || strings.Contains(out, alice) {
		t.Errorf("bob's gpuwarden events shows alice's: %v\n%s", err, out)
	}
	if out, err := as(bob, "events", "--gateway-socket", sock, "--user", alice); err == nil || !strings.Contains(out, "only your own") {
		t.Errorf("bob asks for alice's records: %v\n%s", err, out)
	}

	hook.mu.Lock()
	defer hook.mu.Unlock()
	for _, b := range hook.bodies {
		if !strings.HasPrefix(b, `{"text":`) {
			t.Errorf("a body alice's Slack webhook would not take: %s", b)
		}
	}
}

func all(s string, words ...string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

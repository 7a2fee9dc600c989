package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestUsersReadTheirOwnRecords: why it stopped, for the user. The audit log is root's; a
// researcher reads her own records and report as herself, through the gateway (asked first,
// or once the file is denied her), sees none of another user's, is refused another user's
// by name, and reads her allocations' Events with kubectl, and not the node's, which name
// other users' refusals.
func TestUsersReadTheirOwnRecords(t *testing.T) {
	alice, bob := "gwalice", "gwbob"
	s, sock, dir := gatewayServer(t, "e2e-userrec", []string{alice, bob})
	auditLog := filepath.Join(dir, "audit", "events.jsonl")
	bin := binary(t)
	if _, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: gw-userrec}
spec:
  subjects: [{kind: User, name: gwalice}, {kind: User, name: gwbob}]
  limits: {gpuEquivalents: "2", maxGPUsPerContainer: 1}
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	image := testutil.DockerImage()
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", "gw-rec-a", "gw-rec-b").Run() })
	for _, run := range []struct{ user, name string }{{alice, "gw-rec-a"}, {bob, "gw-rec-b"}} {
		if out, err := as(run.user, sock, "", "run", "-d", "--gpus", "1", "--name", run.name, image, "sleep", "600"); err != nil {
			t.Fatalf("docker run as %s: %v\n%s", run.user, err, out)
		}
	}
	// Bob is refused alice's container: his auth.denied, and an AccessDenied Event.
	if out, err := as(bob, sock, "", "inspect", "gw-rec-a"); err == nil {
		t.Fatalf("bob inspected alice's container:\n%s", out)
	}
	testutil.Eventually(t, 20*time.Second, "both users' gpu.allocate and bob's auth.denied in the log", func() (bool, string) {
		out, err := runEvents(t, "--file", auditLog, "--json", "--limit", "0")
		return err == nil && strings.Contains(out, `"user":"gwalice"`) && strings.Contains(out, `"user":"gwbob"`) &&
			strings.Count(out, `"event_type":"gpu.allocate"`) >= 2 && strings.Contains(out, `"event_type":"auth.denied"`), out
	})
	// The file is root's: alice cannot read it herself.
	if out, err := exec.Command("runuser", "-u", alice, "--", "cat", auditLog).CombinedOutput(); err == nil {
		t.Fatalf("%s reads the audit log herself; the test proves nothing:\n%s", alice, out)
	}

	gw := func(user string, args ...string) (string, error) {
		cmd := exec.Command("runuser", append([]string{"-u", user, "--", "env", "HOME=/home/" + user, bin}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	users := func(out string) map[string]int {
		got := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var e struct{ User string }
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("not a record: %q", line)
			}
			got[e.User]++
		}
		return got
	}
	// The gateway asked first (--gateway-socket), and once the file is denied her (--file).
	for _, args := range [][]string{
		{"events", "--gateway-socket", sock, "--json", "--limit", "0"},
		{"events", "--file", auditLog, "--gateway-socket", sock, "--json", "--limit", "0"},
		{"events", "--gateway-socket", sock, "--json", "--limit", "0", "--user", alice},
	} {
		out, err := gw(alice, args...)
		if err != nil {
			t.Errorf("gpuwarden %s as %s: %v\n%s", strings.Join(args, " "), alice, err, out)
			continue
		}
		if u := users(out); len(u) != 1 || u[alice] == 0 || !strings.Contains(out, `"event_type":"gpu.allocate"`) || !strings.Contains(out, "gw-rec-a") {
			t.Errorf("gpuwarden %s as %s: the records of %v:\n%s", strings.Join(args, " "), alice, u, out)
		}
	}
	// The table, as she reads it.
	if out, err := gw(alice, "events", "--gateway-socket", sock, "--type", "gpu"); err != nil || !strings.Contains(out, "TIMESTAMP") ||
		!strings.Contains(out, "gpu.allocate") || strings.Contains(out, bob) {
		t.Errorf("gpuwarden events --type gpu as %s: %v\n%s", alice, err, out)
	}
	// Bob's container by its name: nothing of bob's for alice.
	if out, err := gw(alice, "events", "--gateway-socket", sock, "--container", "gw-rec-b", "--json"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("gpuwarden events --container gw-rec-b as %s: %v\n%s", alice, err, out)
	}
	// Her report, asked first and after the file was denied her.
	for _, args := range [][]string{
		{"report", "--gateway-socket", sock, "--user", alice},
		{"report", "--file", auditLog, "--gateway-socket", sock, "--user", alice},
		{"report", "--gateway-socket", sock, "--csv"},
	} {
		out, err := gw(alice, args...)
		if err != nil || !strings.Contains(out, alice) || strings.Contains(out, bob) {
			t.Errorf("gpuwarden %s as %s: %v\n%s", strings.Join(args, " "), alice, err, out)
		}
	}
	// Bob asks for alice's by name: refused, saying why, not answered with his own.
	for _, args := range [][]string{
		{"events", "--gateway-socket", sock, "--user", alice},
		{"report", "--gateway-socket", sock, "--user", alice},
		{"events", "--file", auditLog, "--gateway-socket", sock, "--user", alice},
	} {
		out, err := gw(bob, args...)
		if err == nil || !strings.Contains(out, "user="+alice+": you may read only your own audit records, and you are "+bob) {
			t.Errorf("gpuwarden %s as %s: %v\n%s", strings.Join(args, " "), bob, err, out)
		}
	}
	// Root reads the file as before: everyone's.
	if out, err := runEvents(t, "--file", auditLog, "--json", "--limit", "0"); err != nil || users(out)[alice] == 0 || users(out)[bob] == 0 {
		t.Errorf("gpuwarden events as root: %v\n%s", err, out)
	}

	// kubectl get events with her own kubeconfig: her allocation's Events (in default),
	// not the node's (bob's refusal, in kube-system), and no other namespace.
	kc := filepath.Join("/home", alice, ".kube", "gpuwarden-e2e-events")
	t.Cleanup(func() { os.Remove(kc) })
	if out, err := gw(alice, "kubeconfig", "--gateway-socket", sock, "-o", kc); err != nil {
		t.Fatalf("gpuwarden kubeconfig as %s: %v\n%s", alice, err, out)
	}
	kubectlAlice := func(args ...string) (string, error) {
		out, err := exec.Command("runuser", append([]string{"-u", alice, "--", "kubectl", "--kubeconfig", kc}, args...)...).CombinedOutput()
		return withoutSkewWarning(string(out)), err
	}
	testutil.Eventually(t, 30*time.Second, alice+"'s allocation's Bound Event through kubectl", func() (bool, string) {
		out, err := kubectlAlice("get", "events", "-o", `jsonpath={range .items[*]}{.involvedObject.kind}/{.reason}/{.message}{"\n"}{end}`)
		return err == nil && strings.Contains(out, "GPUAllocation/Bound/") && strings.Contains(out, alice), out
	})
	if out, _ := kubectlAlice("get", "events", "-o", `jsonpath={range .items[*]}{.reason}{"\n"}{end}`); strings.Contains(out, "AccessDenied") {
		t.Errorf("%s reads the gateway's refusals of others:\n%s", alice, out)
	}
	for _, args := range [][]string{{"get", "events", "-n", "kube-system"}, {"get", "events", "-A"}} {
		if out, err := kubectlAlice(args...); err == nil || !strings.Contains(out, "forbidden") {
			t.Errorf("kubectl %s as %s: %v\n%s", strings.Join(args, " "), alice, err, out)
		}
	}
	// The admin reads the refusal where it went.
	testutil.Eventually(t, 30*time.Second, "bob's refusal as an AccessDenied Event in kube-system", func() (bool, string) {
		out, err := kubectl(t, s.kubeconfig, "", "get", "events", "-n", "kube-system", "--field-selector", "reason=AccessDenied", "-o", "jsonpath={.items[*].message}")
		return err == nil && strings.Contains(out, "to "+bob), out
	})
}

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestManualAllocationKeepsItsWord follows the user guide's "Reserving a GPU for a container
// you will name" as two researchers would: alice makes an allocation with her own kubeconfig
// and runs a container on it through the gateway (exactly its GPU); bob cannot use it, by
// name or with her owner label, and is answered as for a name that does not exist; two
// containers raced onto one allocation get it once; removing the container gives the GPU
// back; and bob's reservation that no container uses is released after releaseUnusedAfter,
// with an Event and a record.
func TestManualAllocationKeepsItsWord(t *testing.T) {
	alice, bob := "gwalice", "gwbob"
	s, sock, dir := gatewayServer(t, "e2e-manual", []string{alice, bob}, "--gateway-bind-wait", "8s")
	auditLog := filepath.Join(dir, "audit", "events.jsonl")
	bin := binary(t)
	image := testutil.DockerImage()
	if out, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: manual-users}
spec:
  subjects: [{kind: User, name: gwalice}, {kind: User, name: gwbob}]
  limits: {gpuEquivalents: "3", maxGPUsPerContainer: 1}
---
apiVersion: gpuwarden.io/v1alpha1
kind: ContainerPolicy
metadata: {name: bob-short-reservations}
spec:
  selector: {users: [gwbob]}
  releaseUnusedAfter: 3s
`, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		for _, n := range []string{"gw-m-train", "gw-m-second", "gw-m-race-0", "gw-m-race-1", "gw-m-bob"} {
			_ = exec.Command("docker", "rm", "-f", n).Run()
		}
	})
	kubeconfigOf := func(user string) func(stdin string, args ...string) (string, error) {
		kc := filepath.Join("/home", user, ".kube", "gpuwarden-e2e-manual")
		t.Cleanup(func() { os.Remove(kc) })
		if out, err := exec.Command("runuser", "-u", user, "--", bin, "kubeconfig", "--gateway-socket", sock, "-o", kc).CombinedOutput(); err != nil {
			t.Fatalf("gpuwarden kubeconfig as %s: %v\n%s", user, err, out)
		}
		return func(stdin string, args ...string) (string, error) {
			cmd := exec.Command("runuser", append([]string{"-u", user, "--", "kubectl", "--kubeconfig", kc}, args...)...)
			cmd.Stdin = strings.NewReader(stdin)
			out, err := cmd.CombinedOutput()
			return strings.TrimSpace(withoutSkewWarning(string(out))), err
		}
	}
	kubectlAlice, kubectlBob := kubeconfigOf(alice), kubeconfigOf(bob)
	reserve := func(kc func(string, ...string) (string, error), user, name string) {
		t.Helper()
		manifest := fmt.Sprintf("apiVersion: gpuwarden.io/v1alpha1\nkind: GPUAllocation\nmetadata: {name: %s}\nspec: {user: %s, request: {gpus: 1}}\n", name, user)
		if out, err := kc(manifest, "create", "-f", "-"); err != nil {
			t.Fatalf("%s creates %s: %v\n%s", user, name, err, out)
		}
	}
	phase := func(name string) string {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "ga", name, "-o", "jsonpath={.status.phase}|{.status.containerName}|{.status.message}")
		return strings.TrimSpace(withoutSkewWarning(out))
	}

	// alice reserves a GPU with kubectl, and her container runs on exactly it.
	reserve(kubectlAlice, alice, "gwalice-train")
	testutil.Eventually(t, 30*time.Second, "gwalice-train Bound", func() (bool, string) {
		out, _ := kubectlAlice("", "get", "ga", "gwalice-train", "-o", "jsonpath={.status.phase}")
		return out == "Bound", out
	})
	uuid, _ := kubectlAlice("", "get", "ga", "gwalice-train", "-o", "jsonpath={.status.devices[0].uuid}")
	out, err := as(alice, sock, "", "run", "-d", "--name", "gw-m-train", "--label", "gpuwarden.io/allocation=gwalice-train", image,
		"sh", "-c", "echo GPU=$NVIDIA_VISIBLE_DEVICES; sleep 600")
	if err != nil {
		t.Fatalf("alice's docker run on her allocation: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, "the container sees the allocation's GPU", func() (bool, string) {
		out, _ := as(alice, sock, "", "logs", "gw-m-train")
		return out == "GPU="+uuid, out
	})
	testutil.Eventually(t, 30*time.Second, "gwalice-train used by gw-m-train", func() (bool, string) {
		out := phase("gwalice-train")
		return strings.HasPrefix(out, "Bound|gw-m-train|"), out
	})
	// The same allocation for a second container: refused, naming the first.
	if out, err := as(alice, sock, "", "create", "--name", "gw-m-second", "--label", "gpuwarden.io/allocation=gwalice-train", image, "true"); err == nil ||
		!strings.Contains(out, "GPU allocation gwalice-train is used by container gw-m-train") {
		t.Errorf("a second container on gwalice-train: %v\n%s", err, out)
	}

	// bob naming alice's allocation is answered as for one that does not exist.
	missing, err := as(bob, sock, "", "run", "--rm", "--label", "gpuwarden.io/allocation=gwalice-nosuch", image, "true")
	if err == nil || !strings.Contains(missing, "No such GPU allocation: gwalice-nosuch") {
		t.Fatalf("bob naming an allocation that does not exist: %v\n%s", err, missing)
	}
	for _, args := range [][]string{
		{"--label", "gpuwarden.io/allocation=gwalice-train"},
		{"--label", "gpuwarden.io/user=" + alice, "--label", "gpuwarden.io/allocation=gwalice-train", "--gpus", "1"},
	} {
		out, err := as(bob, sock, "", append(append([]string{"run", "--rm", "--name", "gw-m-bob"}, args...), image, "true")...)
		if err == nil || strings.ReplaceAll(out, "gwalice-train", "X") != strings.ReplaceAll(missing, "gwalice-nosuch", "X") {
			t.Errorf("bob naming alice's allocation (%v): %v\n%s\nwant what a missing one gets:\n%s", args, err, out, missing)
		}
	}

	// Two containers raced onto one allocation: one is made, the other told it is used.
	reserve(kubectlAlice, alice, "gwalice-race")
	testutil.Eventually(t, 30*time.Second, "gwalice-race Bound", func() (bool, string) {
		out := phase("gwalice-race")
		return strings.HasPrefix(out, "Bound|"), out
	})
	var wg sync.WaitGroup
	results := make([]string, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := as(alice, sock, "", "create", "--name", fmt.Sprintf("gw-m-race-%d", i), "--label", "gpuwarden.io/allocation=gwalice-race", image, "true")
			results[i] = fmt.Sprintf("%v|%s", err, out)
		}()
	}
	wg.Wait()
	made := 0
	for _, r := range results {
		switch {
		case strings.HasPrefix(r, "<nil>|"):
			made++
		case !strings.Contains(r, "GPU allocation gwalice-race is used by container gw-m-race-"):
			t.Errorf("a raced create: %s", r)
		}
	}
	if made != 1 {
		t.Errorf("two creates raced onto gwalice-race made %d containers: %q", made, results)
	}

	// Removing the container gives the GPU back at once.
	if out, err := as(alice, sock, "", "rm", "-f", "gw-m-train"); err != nil {
		t.Fatalf("docker rm: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, "gwalice-train Released when its container is removed", func() (bool, string) {
		out := phase("gwalice-train")
		return strings.HasPrefix(out, "Released|") && strings.Contains(out, "container removed"), out
	})

	// bob's reservation that no container uses goes back after his policy's 3s; the release
	// is an Event and a gpu.release record with its reason.
	reserve(kubectlBob, bob, "gwbob-idle")
	testutil.Eventually(t, 60*time.Second, "gwbob-idle Released unused", func() (bool, string) {
		out := phase("gwbob-idle")
		return strings.HasPrefix(out, "Released||") && strings.Contains(out, "unused: no container used it") &&
			strings.Contains(out, "releaseUnusedAfter is 3s (ContainerPolicy bob-short-reservations)"), out
	})
	testutil.Eventually(t, 30*time.Second, "the Events of gwbob-idle", func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "events", "-A", "--field-selector", "involvedObject.name=gwbob-idle", "-o",
			`jsonpath={range .items[*]}{.reason}{"\n"}{end}`)
		// 3s is shorter than a sweep: it is due when first seen, so not announced before
		// (the announcement is the unit tests'); the release is an Event.
		return strings.Contains(out, "ReleasedUnused"), out
	})
	testutil.Eventually(t, 30*time.Second, "gwbob-idle's gpu.release record", func() (bool, string) {
		out, _ := runEvents(t, "--file", auditLog, "--type", "gpu.release", "--user", bob, "--json", "--limit", "0")
		return strings.Contains(out, "gwbob-idle") && strings.Contains(out, "unused: no container used it"), out
	})
	// alice's reservation, by the default (1h), is not released meanwhile.
	if out := phase("gwalice-race"); !strings.HasPrefix(out, "Bound|gw-m-race-") {
		t.Errorf("gwalice-race after bob's was released: %s", out)
	}
}

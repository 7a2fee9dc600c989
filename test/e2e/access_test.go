package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsersOwnKubeconfigs: a researcher asks the gateway for a kubeconfig of her own (the
// kernel says who she is), and with it kubectl lists allocations and creates her own, and is
// refused one for another user and any change to quotas; an admin issues one for another
// user from the CA.
func TestUsersOwnKubeconfigs(t *testing.T) {
	alice, bob := "gwalice", "gwbob"
	s, sock, dir := gatewayServer(t, "e2e-access", []string{alice, bob})
	bin := binary(t)
	kc := filepath.Join("/home", alice, ".kube", "gpuwarden-e2e")
	t.Cleanup(func() { os.Remove(kc) })
	out, err := exec.Command("runuser", "-u", alice, "--", bin, "kubeconfig", "--gateway-socket", sock, "--days", "2", "-o", kc).CombinedOutput()
	if err != nil {
		t.Fatalf("gpuwarden kubeconfig as %s: %v\n%s", alice, err, out)
	}
	if fi, err := os.Stat(kc); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the kubeconfig file: %v %v, want mode 0600", err, fi)
	}
	asAlice := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command("runuser", append([]string{"-u", alice, "--", "kubectl", "--kubeconfig", kc}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return withoutSkewWarning(string(out)), err
	}
	if out, err := asAlice("", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"); err != nil || out != `gwalice ["gpuwarden:users","system:authenticated"]` {
		t.Errorf("kubectl auth whoami: %v %q", err, out)
	}
	if out, err := asAlice("", "get", "gpuallocations,gpuquotas,gpus"); err != nil {
		t.Errorf("kubectl get as %s: %v\n%s", alice, err, out)
	}
	own := "apiVersion: gpuwarden.io/v1alpha1\nkind: GPUAllocation\nmetadata: {name: NAME}\nspec: {user: USER, request: {gpus: 1}}\n"
	if out, err := asAlice(strings.NewReplacer("NAME", "alice-own", "USER", alice).Replace(own), "create", "-f", "-"); err != nil {
		t.Errorf("creating her own allocation: %v\n%s", err, out)
	}
	if out, err := asAlice(strings.NewReplacer("NAME", "alice-for-bob", "USER", bob).Replace(own), "create", "-f", "-"); err == nil || !strings.Contains(out, "user gwalice may create only their own GPUAllocations; alice-for-bob is for gwbob") {
		t.Errorf("creating one for %s: %v\n%s", bob, err, out)
	}
	if out, err := asAlice("apiVersion: gpuwarden.io/v1alpha1\nkind: GPUQuota\nmetadata: {name: alice-unlimited}\nspec: {subjects: [{kind: User, name: gwalice}], unlimited: [gpuEquivalents]}\n", "create", "-f", "-"); err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("creating a quota: %v\n%s", err, out)
	}
	if out, err := asAlice("", "delete", "ga", "alice-own"); err != nil {
		t.Errorf("deleting her own allocation: %v\n%s", err, out)
	}
	// An admin issues bob's from the CA in the data dir.
	bobKC := filepath.Join(t.TempDir(), "bob.kubeconfig")
	if out, err := exec.Command(bin, "kubeconfig", "--user", bob, "--data-dir", dir, "-o", bobKC).CombinedOutput(); err != nil {
		t.Fatalf("gpuwarden kubeconfig --user %s: %v\n%s", bob, err, out)
	}
	if out, err := exec.Command("kubectl", "--kubeconfig", bobKC, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").CombinedOutput(); err != nil || withoutSkewWarning(string(out)) != bob {
		t.Errorf("bob's kubeconfig: %v %s", err, out)
	}
	// A user cannot issue one for someone else: the CA is root's.
	if out, err := exec.Command("runuser", "-u", alice, "--", bin, "kubeconfig", "--user", bob, "--data-dir", dir).CombinedOutput(); err == nil {
		t.Errorf("%s issued a kubeconfig for %s:\n%s", alice, bob, out)
	}
	_ = s
}

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// userID is a local user's uid.
func userID(t *testing.T, name string) string {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u.Uid
}

// kubectlAs runs kubectl as user with the kubeconfig kc; stdin may be empty.
func kubectlAs(user, kc string) func(stdin string, args ...string) (string, error) {
	return func(stdin string, args ...string) (string, error) {
		cmd := exec.Command("runuser", append([]string{"-u", user, "--", "kubectl", "--kubeconfig", kc}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return withoutSkewWarning(string(out)), err
	}
}

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
	asAlice := kubectlAs(alice, kc)
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
	// Nor may she hold the cluster's allocator Lease (and starve everyone of decisions) or
	// write the ledger.
	lease := "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: gpuwarden-allocator, namespace: kube-system}\nspec: {holderIdentity: gwalice, leaseDurationSeconds: 999999}\n"
	if out, err := asAlice(lease, "create", "-f", "-"); err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("taking the allocator's Lease: %v\n%s", err, out)
	}
	for _, verb := range []string{"update leases/gpuwarden-allocator", "update configmaps/gpuwarden-ledger", "get configmaps/gpuwarden-ledger"} {
		if out, err := asAlice("", append([]string{"auth", "can-i"}, append(strings.Fields(verb), "-n", "kube-system")...)...); err == nil || strings.TrimSpace(out) != "no" {
			t.Errorf("kubectl auth can-i %s -n kube-system: %v %q, want no", verb, err, out)
		}
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
	// Into bob's home, root leaves bob a file (0600) and a directory (0700) of his own; a link
	// bob planted where the directory goes is not followed, and root's file behind it is
	// neither written nor given away.
	victim := filepath.Join(t.TempDir(), "root-only")
	if err := os.MkdirAll(victim, 0o700); err != nil {
		t.Fatal(err)
	}
	kube := filepath.Join("/home", bob, fmt.Sprintf(".kube-e2e-%d", time.Now().UnixNano()))
	t.Cleanup(func() { os.RemoveAll(kube) })
	if out, err := exec.Command("runuser", "-u", bob, "--", "ln", "-s", victim, kube).CombinedOutput(); err != nil {
		t.Fatalf("bob plants a link: %v %s", err, out)
	}
	if out, err := exec.Command(bin, "kubeconfig", "--user", bob, "--data-dir", dir, "-o", filepath.Join(kube, "config")).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "not followed") {
		t.Errorf("root writing through bob's link: %v %s; want it refused", err, out)
	}
	if names, _ := os.ReadDir(victim); len(names) != 0 {
		t.Errorf("written behind bob's link: %v", names)
	}
	if fi, err := os.Stat(victim); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("root's directory behind bob's link: %v %v", err, fi)
	}
	if err := os.Remove(kube); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "kubeconfig", "--user", bob, "--data-dir", dir, "-o", filepath.Join(kube, "config")).CombinedOutput(); err != nil {
		t.Fatalf("gpuwarden kubeconfig --user %s into his home: %v\n%s", bob, err, out)
	}
	for p, mode := range map[string]os.FileMode{kube: os.ModeDir | 0o700, filepath.Join(kube, "config"): 0o600} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode() != mode || fmt.Sprint(fi.Sys().(*syscall.Stat_t).Uid) != userID(t, bob) {
			t.Errorf("%s: %v %v; want %s's, %v", p, err, fi, bob, mode)
		}
	}
	if out, err := exec.Command("runuser", "-u", bob, "--", "kubectl", "--kubeconfig", filepath.Join(kube, "config"), "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").CombinedOutput(); err != nil ||
		withoutSkewWarning(string(out)) != bob {
		t.Errorf("bob reading the kubeconfig root wrote into his home: %v %s", err, out)
	}
	// A user cannot issue one for someone else: the CA is root's.
	if out, err := exec.Command("runuser", "-u", alice, "--", bin, "kubeconfig", "--user", bob, "--data-dir", dir).CombinedOutput(); err == nil {
		t.Errorf("%s issued a kubeconfig for %s:\n%s", alice, bob, out)
	}
	_ = s
}

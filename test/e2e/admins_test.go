package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gpuwarden/gpuwarden/internal/access"
	"github.com/gpuwarden/gpuwarden/internal/controlplane"
	"github.com/gpuwarden/gpuwarden/internal/controlplane/pki"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestAdminRightsFollowTheGroup: a member of the host's admin group gets a kubeconfig from
// the gateway and is cluster-admin with it; removed from the group (gpasswd -d), they are
// refused as admin within a minute, with that kubeconfig and with an old-style certificate
// that still carries the group gpuwarden:admins; their kubeconfig names them only and lasts
// at most a day.
func TestAdminRightsFollowTheGroup(t *testing.T) {
	adm, group := "gwadmin", "gwadmins"
	for _, tool := range []string{"groupadd", "gpasswd", "groupdel"} {
		_, err := exec.LookPath(tool)
		testutil.Require(t, err == nil, "%s (the shadow utilities) is not installed", tool)
	}
	testutil.Require(t, os.Geteuid() == 0, "the test changes the host's groups and needs root")
	_ = exec.Command("groupdel", group).Run()
	if out, err := exec.Command("groupadd", group).CombinedOutput(); err != nil {
		t.Fatalf("groupadd %s: %v\n%s", group, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("groupdel", group).Run() })
	testutil.LinuxUser(t, adm)
	if out, err := exec.Command("gpasswd", "-a", adm, group).CombinedOutput(); err != nil {
		t.Fatalf("gpasswd -a %s %s: %v\n%s", adm, group, err, out)
	}
	// The full pass is every 20s here (30s by default); the group file is watched besides.
	s, sock, dir := gatewayServer(t, "e2e-admins", []string{adm}, "--gateway-admin-group", group, "--admin-sync-interval", "20s")
	bin := binary(t)
	kc := filepath.Join("/home", adm, ".kube", "gpuwarden-e2e-admin")
	t.Cleanup(func() { os.Remove(kc) })
	if out, err := exec.Command("runuser", "-u", adm, "--", bin, "kubeconfig", "--gateway-socket", sock, "-o", kc).CombinedOutput(); err != nil {
		t.Fatalf("gpuwarden kubeconfig as %s: %v\n%s", adm, err, out)
	}
	kubectlAs := func(kubeconfig string, stdin string, args ...string) (string, error) {
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(withoutSkewWarning(string(out))), err
	}
	// canI answers kubectl auth can-i's verdict (yes or no), without its warnings.
	canI := func(kubeconfig string, args ...string) string {
		out, _ := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig, "auth", "can-i"}, args...)...).Output()
		return strings.TrimSpace(string(out))
	}

	// The kubeconfig names the user in gpuwarden:users only, and lasts at most a day.
	if out, err := kubectlAs(kc, "", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"); err != nil || out != adm+` ["gpuwarden:users","system:authenticated"]` {
		t.Errorf("kubectl auth whoami as %s: %v %q", adm, err, out)
	}
	if left := certificateLife(t, kc, adm); left > access.AdminValidity {
		t.Errorf("the admin's certificate lasts %s, want at most %s", left, access.AdminValidity)
	}
	// An old-style certificate, signed by the same CA, carrying the admins' group.
	oldKC := filepath.Join(t.TempDir(), "old.kubeconfig")
	writeOldStyleKubeconfig(t, dir, kc, adm, oldKC)

	// In the group: cluster-admin, with either.
	if out := canI(kc, "create", "gpuquotas"); out != "yes" {
		t.Fatalf("as a member of %s, kubectl auth can-i create gpuquotas: %q", group, out)
	}
	quota := "apiVersion: gpuwarden.io/v1alpha1\nkind: GPUQuota\nmetadata: {name: NAME}\nspec: {subjects: [{kind: User, name: someone}], limits: {gpuEquivalents: \"1\"}}\n"
	if out, err := kubectlAs(kc, strings.ReplaceAll(quota, "NAME", "by-admin"), "create", "-f", "-"); err != nil {
		t.Errorf("as an admin, creating a quota: %v\n%s", err, out)
	}
	// An admin may make an allocation for someone else (the own-allocations rule is for users).
	other := "apiVersion: gpuwarden.io/v1alpha1\nkind: GPUAllocation\nmetadata: {name: NAME}\nspec: {user: someone, request: {gpus: 1}}\n"
	if out, err := kubectlAs(kc, strings.ReplaceAll(other, "NAME", "admin-for-someone"), "create", "-f", "-"); err != nil {
		t.Errorf("as an admin, creating an allocation for another user: %v\n%s", err, out)
	}

	// Through the gateway, an admin-only verb from a process that holds the group.
	g, err := user.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	holdingGroup := func(args ...string) (string, error) {
		cmd := exec.Command("setpriv", append([]string{"--reuid=" + adm, "--regid=" + adm, "--groups=" + g.Gid, "--",
			"env", "DOCKER_HOST=unix://" + sock, "HOME=/home/" + adm, "docker"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := holdingGroup("system", "df"); err != nil {
		t.Errorf("docker system df through the gateway as a member of %s: %v\n%s", group, err, out)
	}

	// Out of the group: refused as admin within a minute, whatever certificate.
	if out, err := exec.Command("gpasswd", "-d", adm, group).CombinedOutput(); err != nil {
		t.Fatalf("gpasswd -d %s %s: %v\n%s", adm, group, err, out)
	}
	removed := time.Now()
	testutil.Eventually(t, time.Minute, "the removed admin refused as admin", func() (bool, string) {
		out := canI(kc, "create", "gpuquotas")
		return out == "no", out
	})
	t.Logf("admin rights gone %s after gpasswd -d", time.Since(removed).Round(100*time.Millisecond))
	for name, k := range map[string]string{"the gateway's kubeconfig": kc, "an old-style certificate in gpuwarden:admins": oldKC} {
		if out, err := kubectlAs(k, strings.ReplaceAll(quota, "NAME", "after-removal"), "create", "-f", "-"); err == nil || !strings.Contains(out, "forbidden") {
			t.Errorf("with %s, creating a quota after removal: %v\n%s", name, err, out)
		}
		if out, err := kubectlAs(k, strings.ReplaceAll(other, "NAME", "after-removal"), "create", "-f", "-"); err == nil || !strings.Contains(out, "may create only their own GPUAllocations") {
			t.Errorf("with %s, creating an allocation for another user after removal: %v\n%s", name, err, out)
		}
		// Still a user: reads work.
		if out, err := kubectlAs(k, "", "get", "gpuquotas"); err != nil {
			t.Errorf("with %s, reading quotas as a user: %v\n%s", name, err, out)
		}
	}
	// A refused request whose path carries a terminal escape sequence, CR and LF: the
	// Kubernetes Event that records the refusal carries them escaped. (The first refusal: the
	// events library folds later ones of the same reason into its series.)
	if out, err := exec.Command("runuser", "-u", adm, "--", "curl", "-sg", "--unix-socket", sock, "--path-as-is",
		"http://gpuwarden/v1.41/swarm/leave%1B%5B2J%1B]0;pwned%07%0D%0Afake-line").CombinedOutput(); err != nil || !strings.Contains(string(out), "gpuwarden") {
		t.Errorf("a refused request with control characters in its path: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, "the refusal's Event, escaped", func() (bool, string) {
		out, _ := kubectlAs(s.kubeconfig, "", "get", "events", "-A", "--field-selector", "reason=AccessDenied", "-o", "jsonpath={.items[*].message}")
		return strings.Contains(out, `swarm/leave\x1b[2J\x1b]0;pwned\a\r\nfake-line`) && !strings.ContainsAny(out, "\x1b\r\a"), out
	})
	// A process started in the group keeps it (setpriv, as a shell opened before gpasswd -d):
	// the gateway asks the group database too.
	if out, err := holdingGroup("system", "df"); err == nil || !strings.Contains(out, "is for gpuwarden admins") {
		t.Errorf("docker system df through the gateway from a process still holding %s after removal: %v\n%s", group, err, out)
	}
}

// certificateLife is how long the client certificate of user in kubeconfig lasts from now.
func certificateLife(t *testing.T, kubeconfig, user string) time.Duration {
	t.Helper()
	kc, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(kc.AuthInfos[user].ClientCertificateData)
	if block == nil {
		t.Fatalf("no client certificate for %s", user)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("the client certificate of %s: %v", user, err)
	}
	return time.Until(cert.NotAfter)
}

// writeOldStyleKubeconfig writes, from the server's CA, a kubeconfig for user whose
// certificate carries gpuwarden:admins, as admins' kubeconfigs did before.
func writeOldStyleKubeconfig(t *testing.T, dataDir, like, user, path string) {
	t.Helper()
	p := pki.PKI{Dir: filepath.Join(dataDir, controlplane.PKIDir)}
	cert, key, err := p.IssueClient(time.Now(), user, []string{access.UsersGroup, access.AdminsGroup}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.LoadFromFile(like)
	if err != nil {
		t.Fatal(err)
	}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
}

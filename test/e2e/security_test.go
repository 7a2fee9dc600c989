package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// probeUser is the unprivileged local user the security tests act as; created when missing.
const probeUser = "gpuwarden-probe"

// probeEnv tells the test binary, re-run as probeUser, what to try (see TestMain).
const probeEnv = "GPUWARDEN_E2E_PROBE"

// TestMain lets the test binary act as the unprivileged probe when re-run with probeEnv set.
func TestMain(m *testing.M) {
	if spec := os.Getenv(probeEnv); spec != "" {
		os.Exit(runProbe(spec))
	}
	os.Exit(m.Run())
}

// TestLocalUserReachesNeitherEtcdNorSecrets runs the server as root and, as an unprivileged
// local user, tries every way into its state: etcd on every TCP port the server listens on
// (read and write, over etcd's HTTP gateway), etcd's socket, the PKI, the admin kubeconfig
// and the audit log. Every attempt must be refused.
func TestLocalUserReachesNeitherEtcdNorSecrets(t *testing.T) {
	testutil.Require(t, os.Geteuid() == 0, "root, to create an unprivileged user and act as it")
	uid, gid := ensureProbeUser(t)

	// Parents anyone may traverse, and a data dir an admin left world-readable: the server
	// must close it itself.
	base, err := os.MkdirTemp("", "gpuwarden-sec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dataDir, logDir := filepath.Join(base, "data"), filepath.Join(base, "log")
	for _, d := range []string{base, dataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	auditLog := filepath.Join(logDir, "events.jsonl")
	s := start(t, "server", "--data-dir", dataDir, "--api-port", "0", "--node-name", "sec01",
		"--fake-gpus", "dgxa100", "--docker-host", "none", "--audit-log", auditLog,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	testutil.Eventually(t, 10*time.Second, "the audit log exists", func() (bool, string) {
		_, err := os.Stat(auditLog)
		return err == nil, fmt.Sprint(err)
	})

	ports := listeningPorts(t, s.cmd.Process.Pid)
	if len(ports) == 0 {
		t.Fatalf("found no TCP port the server listens on (the API server has one)")
	}
	targets := []string{"socket:" + filepath.Join(dataDir, "etcd.sock")}
	for _, p := range ports {
		targets = append(targets, "etcd:"+strconv.Itoa(p))
	}
	for _, f := range []string{"pki/ca.key", "pki/admin.key", "pki/apiserver.key", "pki/sa.key", "admin.kubeconfig", "etcd.log"} {
		targets = append(targets, "read:"+filepath.Join(dataDir, f))
	}
	targets = append(targets, "read:"+auditLog)

	bin := copyTestBinary(t, base)
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), probeEnv+"="+strings.Join(targets, ","))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the probe failed to run as %s: %v\n%s", probeUser, err, out)
	}
	results := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if target, verdict, ok := strings.Cut(sc.Text(), " => "); ok {
			results[target] = verdict
		}
	}
	for _, target := range targets {
		verdict, ok := results[target]
		switch {
		case !ok:
			t.Errorf("%s: the probe said nothing\n%s", target, out)
		case !strings.HasPrefix(verdict, "refused"):
			t.Errorf("%s as %s: %s", target, probeUser, verdict)
		default:
			t.Logf("%s as %s: %s", target, probeUser, verdict)
		}
	}
	if fi, err := os.Stat(dataDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode: %v %v, want 0700", fi.Mode().Perm(), err)
	}
}

// runProbe tries each target of spec and prints "target => refused: why" or "target => REACHED: what".
func runProbe(spec string) int {
	for _, target := range strings.Split(spec, ",") {
		kind, arg, _ := strings.Cut(target, ":")
		var reached string
		var err error
		switch kind {
		case "read":
			var data []byte
			data, err = os.ReadFile(arg)
			reached = fmt.Sprintf("read %d bytes", len(data))
		case "socket":
			var c net.Conn
			c, err = net.DialTimeout("unix", arg, 2*time.Second)
			if err == nil {
				c.Close()
				reached = "connected to etcd's socket"
			}
		case "etcd":
			reached, err = probeEtcd(arg)
		default:
			err = fmt.Errorf("unknown probe %q", kind)
		}
		if err != nil {
			fmt.Printf("%s => refused: %v\n", target, err)
		} else {
			fmt.Printf("%s => REACHED: %s\n", target, reached)
		}
	}
	return 0
}

// probeEtcd tries to read and to write keys through etcd's JSON gateway on a loopback port.
func probeEtcd(port string) (string, error) {
	c := http.Client{Timeout: 3 * time.Second}
	base := "http://127.0.0.1:" + port
	var reached []string
	for _, call := range []struct{ path, body, what string }{
		{"/v3/kv/range", `{"key":"Lw==","range_end":"MA=="}`, "read every key"},                  // "/" to "0": all of /registry
		{"/v3/kv/put", `{"key":"L3JlZ2lzdHJ5L3B3bmVk","value":"eA=="}`, "wrote /registry/pwned"}, // "/registry/pwned"
	} {
		resp, err := c.Post(base+call.path, "application/json", strings.NewReader(call.body))
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.Contains(string(body), "cluster_id") {
			reached = append(reached, call.what)
		}
	}
	if len(reached) == 0 {
		return "", fmt.Errorf("no etcd answered on port %s", port)
	}
	return strings.Join(reached, ", "), nil
}

// ensureProbeUser creates the unprivileged probe user when missing and returns its IDs.
func ensureProbeUser(t *testing.T) (uint32, uint32) {
	t.Helper()
	u, err := user.Lookup(probeUser)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", probeUser).CombinedOutput()
		testutil.Require(t, err == nil, "useradd %s: %v %s", probeUser, err, out)
		if u, err = user.Lookup(probeUser); err != nil {
			t.Fatalf("looking up %s after useradd: %v", probeUser, err)
		}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	if uid == 0 {
		t.Fatalf("%s has uid 0", probeUser)
	}
	return uint32(uid), uint32(gid)
}

// copyTestBinary copies this test binary where the probe user may run it.
func copyTestBinary(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "probe.test")
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// listeningPorts returns the TCP ports process pid listens on, from /proc.
func listeningPorts(t *testing.T, pid int) []int {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil {
				ports = append(ports, int(p))
			}
		}
	}
	return ports
}

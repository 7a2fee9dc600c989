package e2e

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestInstallIntoAScratchRoot: hack/install.sh puts the binary, the unit, the directories,
// the samples and the profile script in place with their modes; systemd-analyze verify finds
// nothing to say about the unit; --uninstall removes it all but the data, --purge the data.
func TestInstallIntoAScratchRoot(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	testutil.Require(t, err == nil, "systemd-analyze is not installed (Debian's systemd; run hack/install-deps.sh)")
	root := t.TempDir()
	install := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("../../hack/install.sh", append([]string{"--root", root, "--bin", binary(t)}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("hack/install.sh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	install()
	install() // idempotent
	for path, mode := range map[string]os.FileMode{
		"/usr/local/bin/gpuwarden":                      0o755,
		"/etc/systemd/system/gpuwarden.service":         0o644,
		"/etc/profile.d/gpuwarden.sh":                   0o644,
		"/etc/default/gpuwarden":                        0o644,
		"/etc/gpuwarden/samples/gpuquotas.yaml":         0o644,
		"/etc/gpuwarden/samples/containerpolicies.yaml": 0o644,
		"/var/lib/gpuwarden":                            0o700 | os.ModeDir,
		"/var/log/gpuwarden":                            0o750 | os.ModeDir,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil || fi.Mode() != mode {
			t.Errorf("%s: %v %v, want mode %v", path, err, fi, mode)
		}
	}
	// The unit as installed, with ExecStart pointing into the scratch root; any word from
	// systemd-analyze (a warning too) is a failure.
	unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/gpuwarden.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "Restart=always", "TimeoutStopSec=", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	check := filepath.Join(t.TempDir(), "gpuwarden.service")
	if err := os.WriteFile(check, bytes.ReplaceAll(unit, []byte("/usr/local/bin/gpuwarden"), []byte(filepath.Join(root, "usr/local/bin/gpuwarden"))), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", check).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The profile script is valid sh and leaves a root shell's settings alone.
	if out, err := exec.Command("sh", "-n", filepath.Join(root, "etc/profile.d/gpuwarden.sh")).CombinedOutput(); err != nil {
		t.Errorf("sh -n of the profile script: %v %s", err, out)
	}
	// The admin's own flags survive a reinstall.
	defaults := filepath.Join(root, "etc/default/gpuwarden")
	if err := os.WriteFile(defaults, []byte("GPUWARDEN_ARGS=\"--fake-gpus h100\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	install()
	if b, _ := os.ReadFile(defaults); !strings.Contains(string(b), "h100") {
		t.Errorf("a reinstall overwrote /etc/default/gpuwarden: %s", b)
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/gpuwarden/state"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	install("--uninstall")
	for _, gone := range []string{"usr/local/bin/gpuwarden", "etc/systemd/system/gpuwarden.service", "etc/profile.d/gpuwarden.sh", "etc/gpuwarden"} {
		if _, err := os.Stat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("after --uninstall %s is still there (%v)", gone, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/gpuwarden/state")); err != nil {
		t.Errorf("--uninstall removed the data: %v", err)
	}
	install("--uninstall", "--purge")
	if _, err := os.Stat(filepath.Join(root, "var/lib/gpuwarden")); !os.IsNotExist(err) {
		t.Errorf("after --purge the data dir is still there (%v)", err)
	}
}

// freezableProxy passes connections to the Docker engine until frozen; frozen, it holds
// every byte (a wedged engine).
type freezableProxy struct {
	mu     sync.Mutex
	frozen bool
	thawed *sync.Cond
}

func (p *freezableProxy) wait() {
	p.mu.Lock()
	for p.frozen {
		p.thawed.Wait()
	}
	p.mu.Unlock()
}

func (p *freezableProxy) set(frozen bool) {
	p.mu.Lock()
	p.frozen = frozen
	p.mu.Unlock()
	p.thawed.Broadcast()
}

func (p *freezableProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if c, ok := dst.(interface{ CloseWrite() error }); ok {
				_ = c.CloseWrite()
			}
			return
		}
	}
}

func startFreezableProxy(t *testing.T, engine string) (*freezableProxy, string) {
	p := &freezableProxy{}
	p.thawed = sync.NewCond(&p.mu)
	sock := filepath.Join(t.TempDir(), "engine.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); p.set(false) })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				p.wait()
				up, err := net.Dial("unix", engine)
				if err != nil {
					c.Close()
					return
				}
				go p.pipe(up, c)
				p.pipe(c, up)
			}()
		}
	}()
	return p, "unix://" + sock
}

// TestSystemdNotifyAndWatchdog runs the server under a stand-in for systemd's notify socket:
// READY once it is up, WATCHDOG pings while its parts answer, none once the Docker engine
// stops answering (so systemd would restart it), pings again when it answers again, and
// STOPPING on SIGTERM.
func TestSystemdNotifyAndWatchdog(t *testing.T) {
	dockerE2E(t)
	notify := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var mu sync.Mutex
	type msg struct {
		at    time.Time
		state string
	}
	var got []msg
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			for _, s := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
				got = append(got, msg{time.Now(), s})
			}
			mu.Unlock()
		}
	}()
	states := func(since time.Time) []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, m := range got {
			if !m.at.Before(since) {
				out = append(out, m.state)
			}
		}
		return out
	}
	count := func(since time.Time, state string) int {
		n := 0
		for _, s := range states(since) {
			if s == state {
				n++
			}
		}
		return n
	}
	engine := strings.TrimPrefix(os.Getenv("DOCKER_HOST"), "unix://")
	proxy, host := startFreezableProxy(t, engine)
	t.Setenv("NOTIFY_SOCKET", notify)
	t.Setenv("WATCHDOG_USEC", "2000000") // a ping each second
	begin := time.Now()
	s := startServer(t, t.TempDir(), "e2e-notify", "--docker-host", host)
	testutil.Eventually(t, 10*time.Second, "READY, then watchdog pings", func() (bool, string) {
		st := states(begin)
		return len(st) > 2 && st[0] == "READY=1" && count(begin, "WATCHDOG=1") >= 2, strings.Join(st, " ")
	})
	proxy.set(true)
	testutil.Eventually(t, 30*time.Second, "the wedged engine seen", func() (bool, string) {
		return strings.Contains(s.out.String(), "A part of gpuwarden is wedged"), ""
	})
	if !strings.Contains(s.out.String(), "docker: no answer in time") {
		t.Errorf("the log does not name the wedged part:\n%s", s.out.String())
	}
	quiet := time.Now()
	testutil.Consistently(t, 5*time.Second, "no watchdog pings while the Docker engine does not answer (five ping intervals)", func() (bool, string) {
		return count(quiet, "WATCHDOG=1") == 0, strings.Join(states(quiet), " ")
	})
	proxy.set(false)
	thawed := time.Now()
	testutil.Eventually(t, 30*time.Second, "pings again once the engine answers", func() (bool, string) {
		return count(thawed, "WATCHDOG=1") >= 1, strings.Join(states(thawed), " ")
	})
	stopped := time.Now()
	if code := s.stop(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	if c := count(stopped, "STOPPING=1"); c != 1 {
		t.Errorf("STOPPING=1 sent %d times on SIGTERM: %v", c, states(stopped))
	}
}

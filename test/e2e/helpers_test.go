// Package e2e drives the built bin/gpuwarden the way people do: start it, use kubectl
// against it, stop it with a signal. Build it first (`make build`); GPUWARDEN_BIN points
// at it.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

const (
	startTimeout = 90 * time.Second
	stopTimeout  = 30 * time.Second
)

func binary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("GPUWARDEN_BIN")
	if bin == "" {
		bin = filepath.Join("..", "..", "bin", "gpuwarden")
	}
	_, err := os.Stat(bin)
	testutil.Require(t, err == nil, "gpuwarden binary %s (run `make build`): %v", bin, err)
	abs, _ := filepath.Abs(bin)
	return abs
}

func requireKubectl(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath("kubectl")
	testutil.Require(t, err == nil, "kubectl on PATH: %v", err)
}

// process is a running gpuwarden command.
type process struct {
	cmd     *exec.Cmd
	out     *testutil.SyncBuffer
	ready   chan struct{}
	exited  chan struct{}
	started time.Time
	// readyAfter is how long the command took to print its ready line.
	readyAfter time.Duration
}

// start runs gpuwarden with args and waits until it prints its "… is ready" line.
func start(t *testing.T, args ...string) *process {
	t.Helper()
	p := startNoWait(t, args...)
	select {
	case <-p.ready:
	case <-p.exited:
		t.Fatalf("gpuwarden %s exited before it was ready (%v):\n%s", strings.Join(args, " "), p.cmd.ProcessState, p.out)
	case <-time.After(startTimeout):
		t.Fatalf("gpuwarden %s was not ready after %s:\n%s", strings.Join(args, " "), startTimeout, p.out)
	}
	return p
}

func startNoWait(t *testing.T, args ...string) *process {
	t.Helper()
	if len(args) > 0 && (args[0] == "server" || args[0] == "controller") && !slices.Contains(args, "--gateway-socket") {
		// Each server its own gateway socket: the default one is the machine's.
		args = append(args, "--gateway-socket", filepath.Join(t.TempDir(), "docker.sock"))
	}
	if len(args) > 0 && args[0] == "server" && !slices.ContainsFunc(args, func(a string) bool { return a == "--web-bind-address" || strings.HasPrefix(a, "--web-bind-address=") }) {
		// Servers run side by side: none takes the status page's default port unless asked.
		args = append(args, "--web-bind-address", "0")
	}
	cmd := exec.Command(binary(t), args...)
	pr, pw := io.Pipe()
	p := &process{cmd: cmd, out: &testutil.SyncBuffer{}, ready: make(chan struct{}), exited: make(chan struct{})}
	cmd.Stdout = pw
	cmd.Stderr = pw
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting gpuwarden: %v", err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.out, line)
			if strings.Contains(line, " is ready") {
				once.Do(func() {
					p.readyAfter = time.Since(p.started)
					close(p.ready)
				})
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		<-scanned // all output is in p.out before anyone learns that the process exited
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("output of gpuwarden %s:\n%s", strings.Join(args, " "), p.out)
		}
	})
	return p
}

// stop sends SIGTERM and returns the exit code.
func (p *process) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signalling gpuwarden: %v", err)
	}
	return p.wait(t)
}

func (p *process) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(stopTimeout):
		t.Fatalf("gpuwarden did not exit within %s:\n%s", stopTimeout, p.out)
		return -1
	}
}

// kubectl runs kubectl against kubeconfig and returns its combined output.
func kubectl(t *testing.T, kubeconfig, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return withoutSkewWarning(string(out)), err
}

func mustKubectl(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	out, err := kubectl(t, kubeconfig, "", args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// withoutSkewWarning drops kubectl's version-skew warning (kubectl 1.32 against a 1.37 server).
func withoutSkewWarning(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "WARNING: version difference") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func httpGet(url string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// mountTmpfs mounts a tmpfs of the given options (size=…) on dir, made if missing, until the
// test ends: a small disk that fills up for real. It needs root.
func mountTmpfs(t *testing.T, dir, options string) {
	t.Helper()
	testutil.Require(t, os.Geteuid() == 0, "root, to mount a small tmpfs")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", options, "tmpfs", dir).CombinedOutput()
	testutil.Require(t, err == nil, "mounting a tmpfs on %s: %v %s", dir, err, out)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

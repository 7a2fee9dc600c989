package chaos

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

type rigOptions struct {
	// prefix names the rig's users and containers (two rigs may share an engine).
	prefix string
	// ownEngine starts a Docker engine for the rig alone (one it may restart).
	ownEngine bool
	// metrics is the server's metrics address ("0": none).
	metrics string
	// idle puts the users under an idle policy with a short timeout, GPUs 0–busyGPUs-1
	// busy and the rest idle, so that idle containers are stopped during the run and
	// the check can tell whether a busy one ever was.
	idle bool
	// serverArgs are more flags for gpuwarden server.
	serverArgs []string
}

// busyGPUs are the GPUs (by index) the fake reports busy in a rig with idle set.
const busyGPUs = 4

// rig is a gpuwarden server with fake GPUs, its gateway, three users and a quota, against
// a real Docker engine, and what the suite counted.
type rig struct {
	t        *testing.T
	prefix   string
	s        *server
	users    []string
	sock     string // the gateway
	engine   string // DOCKER_HOST of the engine
	engineUp func()
	state    string // the own engine's state dir
	auditDir string
	auditLog string
	control  string
	counts   counts
	// lastFailure is what the last create that failed (gpuwarden down) said.
	lastFailure atomic.Value
	idle        bool
}

func newRig(t *testing.T, o rigOptions) *rig {
	for _, tool := range []string{"kubectl", "runuser", "docker", "mount"} {
		_, err := exec.LookPath(tool)
		testutil.Require(t, err == nil, "%s is not installed", tool)
	}
	testutil.Require(t, os.Geteuid() == 0, "the chaos suite creates Linux users and mounts a tmpfs: it needs root")
	r := &rig{t: t, prefix: o.prefix, engine: os.Getenv("DOCKER_HOST"), idle: o.idle}
	if o.ownEngine {
		r.startOwnEngine()
	}
	testutil.Require(t, r.docker("version").Run() == nil, "no Docker engine at %s (hack/docker-up.sh)", r.engine)
	for _, s := range []string{"a", "b", "c"} {
		r.users = append(r.users, o.prefix+s)
	}
	for _, u := range r.users {
		testutil.LinuxUser(t, u)
	}
	// Under /tmp itself: the users must reach the gateway socket (t.TempDir's parent is 0700).
	dir, err := os.MkdirTemp("", "gpuwarden-"+o.prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	gw := filepath.Join(dir, "gw")
	r.auditDir = filepath.Join(dir, "audit")
	for _, d := range []string{gw, r.auditDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The audit log on a small disk of its own, to fill.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m,mode=0750", "tmpfs", r.auditDir).CombinedOutput(); err != nil {
		testutil.Require(t, false, "mounting a tmpfs for the audit log: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", r.auditDir).Run() })
	r.control = filepath.Join(dir, "gpus.yaml")
	r.writeControl(-1)
	r.sock = filepath.Join(gw, "docker.sock")
	r.auditLog = filepath.Join(r.auditDir, "events.jsonl")
	data := filepath.Join(dir, "data")
	metrics := o.metrics
	if metrics == "" {
		metrics = "0"
	}
	r.s = &server{t: t, kc: filepath.Join(data, "admin.kubeconfig"), args: []string{"server", "--web-bind-address", "0", "--data-dir", data, "--api-port", "0",
		"--node-name", o.prefix, "--fake-gpus", "h100x8", "--fake-gpus-control", r.control, "--docker-host", r.engine,
		"--gateway-socket", r.sock, "--gateway-bind-wait", "2s", "--audit-log", r.auditLog,
		"--metrics-bind-address", metrics, "--health-probe-bind-address", "0", "--sample-interval", "1s"}}
	r.s.args = append(r.s.args, o.serverArgs...)
	r.s.start()
	t.Cleanup(func() {
		select {
		case <-r.s.done:
		default:
			r.s.kill9()
		}
		if t.Failed() {
			t.Logf("gpuwarden's last output:\n%s", r.s.out)
		}
	})
	quota := fmt.Sprintf("apiVersion: gpuwarden.io/v1alpha1\nkind: GPUQuota\nmetadata: {name: chaos}\nspec: {subjects: [{kind: Everyone}], limits: {gpuEquivalents: \"%d\", maxGPUsPerContainer: 1}}\n", quotaPerUser)
	if o.idle {
		quota += fmt.Sprintf(`---
apiVersion: gpuwarden.io/v1alpha1
kind: ContainerPolicy
metadata: {name: chaos-idle}
spec:
  selector: {users: [%s]}
  idle: {timeout: 6s, gpuUtilizationPercent: 5, cpuPercent: 50, consecutiveSamples: 2}
  stopGracePeriod: 1s
`, strings.Join(r.users, ", "))
	}
	if out, err := r.s.kubectl(quota, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v %s", err, out)
	}
	t.Cleanup(func() {
		out, _ := r.docker("ps", "-aq", "--filter", "name="+r.prefix+"-").Output()
		for _, id := range strings.Fields(string(out)) {
			_ = r.docker("rm", "-f", id).Run()
		}
	})
	return r
}

// writeControl writes the fake GPUs' control file: GPU lost (-1: none) gone from NVML,
// and in a rig with idle set the first busyGPUs GPUs busy.
func (r *rig) writeControl(lost int) {
	var devices []string
	for i := range 8 {
		var fields []string
		if r.idle && i < busyGPUs {
			fields = append(fields, "utilization: 97")
		}
		if i == lost {
			fields = append(fields, "lost: true")
		}
		if len(fields) > 0 {
			devices = append(devices, fmt.Sprintf("%q: {%s}", strconv.Itoa(i), strings.Join(fields, ", ")))
		}
	}
	if err := os.WriteFile(r.control, []byte("devices: {"+strings.Join(devices, ", ")+"}\n"), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// docker is a docker command at the rig's engine, as root.
func (r *rig) docker(args ...string) *exec.Cmd {
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+r.engine)
	return cmd
}

// startOwnEngine starts (or reuses) an engine of the rig's own with hack/docker-up.sh.
func (r *rig) startOwnEngine() {
	t := r.t
	root, _ := filepath.Abs("../..")
	sock := "/run/gpuwarden-test/" + r.prefix + ".sock"
	r.state = "/var/lib/gpuwarden-test/" + r.prefix
	r.engine = "unix://" + sock
	r.engineUp = func() {
		cmd := exec.Command(filepath.Join(root, "hack/docker-up.sh"))
		cmd.Env = append(os.Environ(), "GPUWARDEN_TEST_DOCKER_SOCK="+sock, "GPUWARDEN_DOCKER_STATE="+r.state)
		out, err := cmd.CombinedOutput()
		testutil.Require(t, err == nil, "starting the rig's own Docker engine: %v\n%s", err, out)
	}
	r.engineUp()
	t.Cleanup(func() { r.stopOwnEngine() })
}

// stopOwnEngine stops the rig's engine as `systemctl stop docker` would (SIGTERM: the engine
// stops its containers and exits).
func (r *rig) stopOwnEngine() {
	data, err := os.ReadFile(filepath.Join(r.state, "dockerd.pid"))
	if err != nil {
		return
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid <= 0 || syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	testutil.Eventually(r.t, 60*time.Second, fmt.Sprintf("the rig's dockerd (pid %d) exited", pid), func() bool {
		return syscall.Kill(pid, 0) != nil
	})
}

// restartEngine stops the engine, checks that gpuwarden releases nothing while it is down
// (an outage is not a removal), and starts it again.
func (r *rig) restartEngine(when string) {
	t := r.t
	t.Helper()
	testutil.Require(t, r.engineUp != nil, "restarting dockerd needs the rig's own engine")
	bound := func() map[string]bool {
		allocs, err := r.s.allocations()
		if err != nil {
			t.Fatalf("%s: listing allocations: %v", when, err)
		}
		out := map[string]bool{}
		for _, a := range allocs {
			if a.Status.Phase == "Bound" {
				out[a.Metadata.Name] = true
			}
		}
		return out
	}
	releases := func() int {
		data, _ := os.ReadFile(r.auditLog)
		return strings.Count(string(data), `"event_type":"gpu.release"`)
	}
	r.stopOwnEngine()
	// Down: what is Bound now stays Bound, and no release is recorded, however long it lasts.
	before, released := bound(), releases()
	testutil.Consistently(t, 5*time.Second, when+": nothing released while the Docker engine is down", func() (bool, string) {
		after := bound()
		for name := range before {
			if !after[name] {
				return false, name + " was released"
			}
		}
		if n := releases() - released; n > 0 {
			return false, fmt.Sprintf("%d gpu.release records written", n)
		}
		return true, ""
	})
	r.counts.add("invariant: nothing released during a Docker outage (allocations checked)", len(before))
	r.engineUp()
}

// churn has each user create GPU containers through the gateway and remove them, until
// the returned stop is called (more than once is fine).
func (r *rig) churn(seed int64) (stop func()) {
	image := testutil.DockerImage()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var seq atomic.Int64
	c := &r.counts
	for i, u := range r.users {
		wg.Add(1)
		rng := rand.New(rand.NewSource(seed + int64(i)))
		go func() {
			defer wg.Done()
			var mine []string
			docker := func(args ...string) (string, error) {
				cmd := exec.Command("runuser", append([]string{"-u", u, "--", "env", "DOCKER_HOST=unix://" + r.sock, "HOME=/home/" + u, "docker"}, args...)...)
				out, err := cmd.CombinedOutput()
				return strings.TrimSpace(string(out)), err
			}
			for {
				select {
				case <-done:
					return
				default:
				}
				if len(mine) < 3 && rng.Intn(3) > 0 {
					name := fmt.Sprintf("%s-%s-%d", r.prefix, u, seq.Add(1))
					out, err := docker("run", "-d", "--gpus", "1", "--name", name, image, "sleep", "600")
					switch {
					case err == nil:
						mine = append(mine, name)
						c.add("churn: GPU containers created", 1)
					default:
						why := refusal(out)
						c.add("churn: creates not done: "+why, 1)
						if strings.HasPrefix(why, "down") {
							r.lastFailure.Store(out)
						}
						_ = r.docker("rm", "-f", name).Run()
					}
				} else if len(mine) > 0 {
					k := rng.Intn(len(mine))
					if _, err := docker("rm", "-f", mine[k]); err == nil {
						c.add("churn: containers removed", 1)
						mine = append(mine[:k], mine[k+1:]...)
					}
				}
				time.Sleep(time.Duration(200+rng.Intn(800)) * time.Millisecond)
			}
		}()
	}
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// refusal is why a create was not done, for the counts: gpuwarden's refusal (quota,
// capacity), gpuwarden or the engine down, or the message's last line.
func refusal(out string) string {
	for _, k := range []string{"QuotaExceeded", "NoCapacity", "MaxContainers"} {
		if strings.Contains(out, k) {
			return "refused, " + k
		}
	}
	for _, k := range []string{"Cannot connect", "unreachable", "error during connect", "connection refused", "EOF"} {
		if strings.Contains(out, k) {
			return "down (gpuwarden or the engine)"
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if len(last) > 100 {
		last = last[:100]
	}
	return "other: " + last
}

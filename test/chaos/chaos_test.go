// Package chaos runs gpuwarden under a churn of users' GPU containers through the gateway
// (a real Docker engine, fake GPUs) while faults are injected — gpuwarden killed with
// SIGKILL at random moments and restarted, a GPU lost from NVML, the audit log's disk full —
// and checks from the outside, after each fault and at the end, what gpuwarden promises.
//
// TestChaosClusterAllocator is its mode for a cluster (cluster_test.go).
//
// GPUWARDEN_CHAOS_ROUNDS sets the number of fault rounds (default 4, as CI runs it; `make
// test-chaos` runs 20); GPUWARDEN_CHAOS_SEED replays a run.
package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

const quotaPerUser = 2 // gpu-equivalents each user may hold

func binary(t *testing.T) string {
	b := os.Getenv("GPUWARDEN_BIN")
	if b == "" {
		b, _ = filepath.Abs("../../bin/gpuwarden")
	}
	_, err := os.Stat(b)
	testutil.Require(t, err == nil, "bin/gpuwarden is not built (make build)")
	return b
}

// server is one gpuwarden server process, restarted on the same data dir.
type server struct {
	t    *testing.T
	args []string
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer
	done chan struct{}
	kc   string
}

func (s *server) start() {
	s.t.Helper()
	// Fresh ones per process: the previous process's reader may still be writing to its own.
	out, done, ready := &testutil.SyncBuffer{}, make(chan struct{}), make(chan struct{})
	cmd := exec.Command(binary(s.t), s.args...)
	pr, pw, _ := os.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	pw.Close()
	s.out, s.done, s.cmd = out, done, cmd
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			fmt.Fprintln(out, sc.Text())
			if strings.Contains(sc.Text(), " is ready") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-ready:
	case <-done:
		s.t.Fatalf("gpuwarden exited before it was ready:\n%s", out)
	case <-time.After(2 * time.Minute):
		s.t.Fatalf("gpuwarden not ready after 2m:\n%s", out)
	}
}

// kill9 kills the process with SIGKILL: nothing of it runs after, no shutdown, no flush.
func (s *server) kill9() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

func (s *server) kubectl(stdin string, args ...string) (string, error) {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", s.kc}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	return string(out), err
}

type allocation struct {
	Metadata struct{ Name string }
	Spec     struct {
		User          string
		NodeName      string
		ContainerName string
	}
	Status struct {
		Phase          string
		BoundTime      time.Time
		ContainerID    string
		GPUEquivalents string
		Devices        []struct {
			UUID  string
			Index int
		}
	}
}

func (s *server) allocations() ([]allocation, error) {
	out, err := s.kubectl("", "get", "ga", "-o", "json")
	if err != nil {
		return nil, err
	}
	var list struct{ Items []allocation }
	return list.Items, json.Unmarshal([]byte(out), &list)
}

// counts of what the suite did and checked, for the note.
type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(k string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k] += n
}

func (c *counts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var keys []string
	for k := range c.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-40s %d\n", k, c.m[k])
	}
	return b.String()
}

// roundsAndSeed are a run's fault rounds (GPUWARDEN_CHAOS_ROUNDS, 4 by default) and its
// random source (GPUWARDEN_CHAOS_SEED replays one), logged under the suite's name.
func roundsAndSeed(t *testing.T, name string) (int, int64, *rand.Rand) {
	rounds := 4
	if v := os.Getenv("GPUWARDEN_CHAOS_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		testutil.Require(t, err == nil && n > 0, "GPUWARDEN_CHAOS_ROUNDS=%s: want a positive number", v)
		rounds = n
	}
	seed := time.Now().UnixNano()
	if v := os.Getenv("GPUWARDEN_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		testutil.Require(t, err == nil, "GPUWARDEN_CHAOS_SEED=%s: want a number", v)
		seed = n
	}
	t.Logf("%s: %d rounds, GPUWARDEN_CHAOS_SEED=%d", name, rounds, seed)
	return rounds, seed, rand.New(rand.NewSource(seed))
}

func TestChaos(t *testing.T) {
	rounds, seed, rng := roundsAndSeed(t, "chaos")
	// An engine of its own, to restart.
	r := newRig(t, rigOptions{prefix: "chaos", ownEngine: true, idle: true})
	c := &r.counts
	stopChurn := r.churn(seed)
	defer stopChurn()

	faults := []string{"kill -9 gpuwarden", "lose a GPU in NVML", "fill the audit log's disk", "kill -9 gpuwarden", "restart dockerd"}
	for round := 1; round <= rounds; round++ {
		time.Sleep(time.Duration(1000+rng.Intn(3000)) * time.Millisecond)
		fault := faults[rng.Intn(len(faults))]
		switch round {
		case 1:
			fault = "kill -9 gpuwarden" // every run kills at least once
		case 2:
			fault = "restart dockerd" // and restarts the engine at least once
		}
		c.add("fault: "+fault, 1)
		switch fault {
		case "kill -9 gpuwarden":
			r.s.kill9()
			time.Sleep(time.Duration(rng.Intn(2000)) * time.Millisecond)
			r.s.start()
		case "lose a GPU in NVML":
			r.writeControl(rng.Intn(8))
			time.Sleep(3 * time.Second)
			r.check(fmt.Sprintf("round %d, a GPU lost", round))
			r.writeControl(-1)
		case "fill the audit log's disk":
			fill := filepath.Join(r.auditDir, "filler")
			_ = exec.Command("dd", "if=/dev/zero", "of="+fill, "bs=1M", "count=64").Run() // until ENOSPC
			time.Sleep(3 * time.Second)
			os.Remove(fill)
		case "restart dockerd":
			r.restartEngine(fmt.Sprintf("round %d", round))
		}
		r.check(fmt.Sprintf("round %d, after %s", round, fault))
	}
	stopChurn()
	r.check("the end")
	t.Logf("chaos: what ran and what was checked (seed %d):\n%s", seed, c.String())
	if f, ok := r.lastFailure.Load().(string); ok {
		t.Logf("the last create that failed while gpuwarden was down said: %s", f)
	}
	c.mu.Lock()
	created := c.m["churn: GPU containers created"]
	c.mu.Unlock()
	if created == 0 {
		t.Errorf("the churn created no GPU container: nothing was exercised")
	}
}

// check checks, from the outside, what gpuwarden promises.
func (r *rig) check(when string) {
	t, s, auditLog, users, c := r.t, r.s, r.auditLog, r.users, &r.counts
	t.Helper()
	// 1. No device bound to two live allocations; 2. no user over the quota. Both at once,
	// from one listing, repeatedly while it settles.
	allocs, err := s.allocations()
	if err != nil {
		t.Fatalf("%s: listing allocations: %v", when, err)
	}
	holder := map[string]string{}
	held := map[string]float64{}
	for _, a := range allocs {
		if a.Status.Phase != "Bound" {
			continue
		}
		for _, d := range a.Status.Devices {
			if other, ok := holder[d.UUID]; ok {
				t.Errorf("%s: GPU %s bound to %s and %s", when, d.UUID, other, a.Metadata.Name)
			}
			holder[d.UUID] = a.Metadata.Name
		}
		eq, _ := strconv.ParseFloat(a.Status.GPUEquivalents, 64)
		held[a.Spec.User] += eq
	}
	c.add("invariant: no GPU bound twice (allocations checked)", len(allocs))
	for u, h := range held {
		if h > quotaPerUser {
			t.Errorf("%s: %s holds %g gpu-equivalents, over the quota of %d", when, u, h, quotaPerUser)
		}
	}
	c.add("invariant: no quota exceeded (users checked)", len(users))
	// 3. Every running GPU container has a Bound allocation (once gpuwarden has caught up).
	testutil.Eventually(t, 60*time.Second, when+": every running GPU container has a Bound allocation", func() (bool, string) {
		out, err := r.docker("ps", "--filter", "name="+r.prefix+"-", "--format", `{{.ID}} {{.Label "gpuwarden.io/allocation"}}`).Output()
		if err != nil {
			return false, err.Error()
		}
		allocs, err := s.allocations()
		if err != nil {
			return false, err.Error()
		}
		bound := map[string]allocation{}
		for _, a := range allocs {
			if a.Status.Phase == "Bound" {
				bound[a.Metadata.Name] = a
			}
		}
		n := 0
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			n++
			a, ok := bound[f[1]]
			if !ok || !strings.HasPrefix(a.Status.ContainerID, f[0]) {
				return false, fmt.Sprintf("container %s: allocation %s is not Bound to it", f[0], f[1])
			}
		}
		c.add("invariant: running GPU containers with a Bound allocation", n)
		return true, ""
	})
	// 3b. And no allocation is left holding a GPU for a container that is gone (bound more
	// than 10 s ago: a create through the gateway binds before the container exists). One
	// whose create was cut short by a kill is released by the server's sweep a minute after
	// the bind wait: within two minutes.
	testutil.Eventually(t, 2*time.Minute, when+": no Bound allocation outlives its container", func() (bool, string) {
		out, err := r.docker("ps", "-a", "--filter", "name="+r.prefix+"-", "--format", "{{.Names}}").Output()
		if err != nil {
			return false, err.Error()
		}
		exists := map[string]bool{}
		for _, name := range strings.Fields(string(out)) {
			exists[name] = true
		}
		allocs, err := s.allocations()
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, a := range allocs {
			name := strings.TrimPrefix(a.Spec.ContainerName, "/")
			if a.Status.Phase != "Bound" || !strings.HasPrefix(name, r.prefix+"-") || time.Since(a.Status.BoundTime) < 10*time.Second {
				continue
			}
			n++
			if !exists[name] {
				return false, fmt.Sprintf("%s is Bound for container %s, which is gone", a.Metadata.Name, name)
			}
		}
		c.add("invariant: Bound allocations whose container exists", n)
		return true, ""
	})
	// 4. The audit log: no torn line; each allocation's bind and release recorded exactly once
	// once de-duplicated by event_id (a record may be written twice across a crash, never
	// two different records of one decision).
	testutil.Eventually(t, 30*time.Second, when+": the audit log holds each decision once", func() (bool, string) {
		f, err := os.ReadFile(auditLog)
		if err != nil {
			return false, err.Error()
		}
		ids := map[string]map[string]bool{} // "type allocation" → event ids
		lines := bytes.Split(bytes.TrimSuffix(f, []byte("\n")), []byte("\n"))
		for i, l := range lines {
			var e struct {
				EventID    string `json:"event_id"`
				EventType  string `json:"event_type"`
				Allocation string `json:"allocation"`
				Details    struct {
					Allocation string `json:"allocation"`
				} `json:"details"`
			}
			if err := json.Unmarshal(l, &e); err != nil {
				t.Errorf("%s: audit line %d is torn or not JSON: %q", when, i+1, l)
				return true, ""
			}
			if e.EventType != "gpu.allocate" && e.EventType != "gpu.release" {
				continue
			}
			name := e.Allocation
			if name == "" {
				name = e.Details.Allocation
			}
			k := e.EventType + " " + name
			if ids[k] == nil {
				ids[k] = map[string]bool{}
			}
			ids[k][e.EventID] = true
		}
		c.add("invariant: audit lines parsed", len(lines))
		allocs, err := s.allocations()
		if err != nil {
			return false, err.Error()
		}
		for _, a := range allocs {
			if a.Status.Phase == "Bound" || a.Status.Phase == "Released" {
				if n := len(ids["gpu.allocate "+a.Metadata.Name]); n != 1 {
					return false, fmt.Sprintf("%s: %d gpu.allocate records (by event_id)", a.Metadata.Name, n)
				}
			}
			if a.Status.Phase == "Released" {
				if n := len(ids["gpu.release "+a.Metadata.Name]); n != 1 {
					return false, fmt.Sprintf("%s: %d gpu.release records (by event_id)", a.Metadata.Name, n)
				}
			}
		}
		for k, v := range ids {
			if len(v) > 1 {
				return false, fmt.Sprintf("%s recorded as %d different events", k, len(v))
			}
		}
		c.add("invariant: decisions recorded exactly once (allocations checked)", len(allocs))
		return true, ""
	})
	if r.idle {
		r.checkNoBusyStopped(when)
	}
}

// checkNoBusyStopped: every container an idle rule stopped held an idle GPU (index
// busyGPUs and up); none on a busy one.
func (r *rig) checkNoBusyStopped(when string) {
	t := r.t
	t.Helper()
	data, err := os.ReadFile(r.auditLog)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	stopped := map[string]bool{}
	for _, l := range bytes.Split(data, []byte("\n")) {
		var e struct {
			EventType string `json:"event_type"`
			Details   struct {
				Container string `json:"container"`
			} `json:"details"`
		}
		if json.Unmarshal(l, &e) == nil && e.EventType == "lifecycle.idle_stop" {
			stopped[strings.TrimPrefix(e.Details.Container, "/")] = true
		}
	}
	allocs, err := r.s.allocations()
	if err != nil {
		t.Fatalf("%s: listing allocations: %v", when, err)
	}
	n := 0
	for _, a := range allocs {
		if !stopped[strings.TrimPrefix(a.Spec.ContainerName, "/")] {
			continue
		}
		n++
		for _, d := range a.Status.Devices {
			if d.Index < busyGPUs {
				t.Errorf("%s: container %s was stopped as idle on GPU %d, which was busy (utilisation 97%%)", when, a.Spec.ContainerName, d.Index)
			}
		}
	}
	r.counts.add("invariant: idle stops, each on an idle GPU (stops checked)", n)
}

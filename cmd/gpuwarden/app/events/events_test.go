package events

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/gatewayclient/gatewayclienttest"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

func writeLog(t *testing.T, events ...audit.Event) string {
	t.Helper()
	return testutil.AuditLog(t, events...)
}

func at(h int, e audit.Event) audit.Event {
	e.Time = t0.Add(time.Duration(h) * time.Hour)
	return e
}

func sample(t *testing.T) string {
	train := audit.Container{Name: "train", ID: "4f2c0a1b2c3d4e5f", Type: "docker"}
	nb := audit.Container{Name: "nb", Type: "notebook"}
	return writeLog(t,
		at(0, audit.ContainerEvent(audit.ContainerCreate, "alice", train, "")),
		at(1, audit.GPUAllocate("alice", audit.Allocation{Name: "a1", Devices: []string{"GPU-0"}, GPUEquivalents: "1", Container: train})),
		at(2, audit.GPUReject("bob", audit.Allocation{Name: "b1", Container: nb}, "QuotaExceeded", "bob holds 2/2 gpu-equivalents (GPUQuota students)")),
		at(3, audit.GPURelease("alice", audit.Allocation{Name: "a1", Container: train}, "container removed")),
		at(4, audit.AdminChange(audit.QuotaUpdate, "students", 2, "kubectl-client-side-apply")),
	)
}

// run runs `gpuwarden events args…` with the clock at now and returns stdout and stderr.
func run(t *testing.T, now time.Time, args ...string) (string, string, error) {
	t.Helper()
	o := &Options{now: func() time.Time { return now }}
	cmd := newCommand(o)
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func TestTable(t *testing.T) {
	path := sample(t)
	out, _, err := run(t, t0.Add(5*time.Hour), "--file", path, "--user", "alice", "--type", "gpu", "--since", "4h30m")
	if err != nil {
		t.Fatal(err)
	}
	want := `TIMESTAMP             TYPE          USER   CONTAINER  DETAILS
2026-11-20T10:00:00Z  gpu.allocate  alice  train      allocation=a1 container_id=4f2c0a1b2c3d4e5f container_type=docker devices=[GPU-0] gpu_equivalents=1
2026-11-20T12:00:00Z  gpu.release   alice  train      allocation=a1 container_id=4f2c0a1b2c3d4e5f container_type=docker reason="container removed"
`
	if out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
}

func TestJSONAndLimit(t *testing.T) {
	path := sample(t)
	out, _, err := run(t, t0, "--file", path, "--json", "--limit", "2")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("--limit 2 printed %d lines:\n%s", len(lines), out)
	}
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &last); err != nil {
		t.Fatal(err)
	}
	if last["event_type"] != "quota.update" || last["schema_version"] != "1" || last["timestamp"] != "2026-11-20T13:00:00.000000Z" || last["node"] != "gpu01" {
		t.Errorf("last JSON line = %v", last)
	}
	if !strings.Contains(lines[0], `"event_type":"gpu.release"`) {
		t.Errorf("first of the last two = %s", lines[0])
	}
	all, _, _ := run(t, t0, "--file", path, "--json", "--limit", "0")
	if n := strings.Count(all, "\n"); n != 5 {
		t.Errorf("--limit 0 printed %d events, want all 5", n)
	}
}

func TestSummary(t *testing.T) {
	path := sample(t)
	out, _, err := run(t, t0, "--file", path, "--summary")
	if err != nil {
		t.Fatal(err)
	}
	want := `5 events from 2026-11-20T09:00:00Z to 2026-11-20T13:00:00Z

TYPE              EVENTS
container.create  1
gpu.allocate      1
gpu.reject        1
gpu.release       1
quota.update      1

USER    EVENTS
alice   3
bob     1
system  1
`
	if out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
}

func TestContainerAndUntil(t *testing.T) {
	path := sample(t)
	out, _, err := run(t, t0, "--file", path, "--container", "train", "--until", "2026-11-20T11:00:00Z", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "\n"); n != 2 || !strings.Contains(out, "container.create") || !strings.Contains(out, "gpu.allocate") {
		t.Errorf("got %d events:\n%s", n, out)
	}
}

func TestMalformedLinesAreCountedOnStderr(t *testing.T) {
	path := sample(t)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("garbage\n\n{\"truncated\":")
	f.Close()
	out, errOut, err := run(t, t0, "--file", path, "--json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "\n") != 5 || errOut != "gpuwarden events: skipped 2 malformed line(s)\n" {
		t.Errorf("stdout:\n%s\nstderr: %q", out, errOut)
	}
}

func TestMissingLog(t *testing.T) {
	_, errOut, err := run(t, t0, "--file", filepath.Join(t.TempDir(), "events.jsonl"))
	if err != nil || !strings.Contains(errOut, "No events logged yet") {
		t.Errorf("err=%v stderr=%q", err, errOut)
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--since", "last tuesday"}, `--since: "last tuesday" is neither`},
		{[]string{"--until", "-2h"}, `--until: "-2h" is neither`},
		{[]string{"--limit", "-1"}, "--limit -1"},
		{[]string{"--summary", "--follow"}, "--summary cannot be combined"},
		{[]string{"--since", "1h", "--until", "2h"}, "is not before --until"},
		{[]string{"alice"}, "unknown command"},
	} {
		_, _, err := run(t, t0, append([]string{"--file", "/nonexistent/events.jsonl"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want it to contain %q", tc.args, err, tc.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := t0
	for in, want := range map[string]time.Time{
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"2w":                   now.Add(-14 * 24 * time.Hour),
		"90m":                  now.Add(-90 * time.Minute),
		"1.5d":                 now.Add(-36 * time.Hour),
		"2026-11-01T00:00:00Z": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	w, err := audit.Open(audit.Options{Path: path, MaxSize: 2 << 10, MaxBackups: 100, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 20 { // history before following: only the last 3 are shown
		w.Log(audit.Event{Type: "gpu.allocate", User: "alice", Details: map[string]any{"seq": i}})
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}

	out, cancel, done := follow(path, "--limit", "3", "--user", "alice")
	waitFor(t, out, `"seq":19}`)

	for i := 20; i < 200; i++ {
		w.Log(audit.Event{Type: "gpu.allocate", User: "alice", Details: map[string]any{"seq": i}})
		w.Log(audit.Event{Type: "gpu.allocate", User: "bob"})
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, `"seq":199}`)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if w.Stats().Rotations < 3 {
		t.Fatalf("only %d rotations while following", w.Stats().Rotations)
	}
	var seqs []int
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var e struct {
			User    string         `json:"user"`
			Details map[string]int `json:"details"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		if e.User != "alice" {
			t.Fatalf("--user alice printed %s's event", e.User)
		}
		seqs = append(seqs, e.Details["seq"])
	}
	if len(seqs) != 183 || seqs[0] != 17 {
		t.Fatalf("printed %d events, want 183 from seq 17: %v", len(seqs), seqs)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("seq %d after %d: an event was missed or repeated across a rotation", seqs[i], seqs[i-1])
		}
	}
}

func waitFor(t *testing.T, out *testutil.SyncBuffer, text string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, "--follow printing "+text, func() (bool, string) {
		s := out.String()
		return strings.Contains(s, text), s
	})
}

// TestNonRegularFilesAreRefused: a FIFO or a device never ends; reading one without
// --follow would hang or never finish, so it is refused with what it is.
func TestNonRegularFilesAreRefused(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "events.jsonl")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{fifo: "a named pipe", "/dev/zero": "a character device", t.TempDir(): "a directory"} {
		_, _, err := run(t, t0, "--file", path)
		if err == nil || !strings.Contains(err.Error(), "not a regular file") || !strings.Contains(err.Error(), want) {
			t.Errorf("--file %s: %v, want refused as %s", path, err, want)
		}
	}
}

// TestLineOverTheCapIsTooLongNotMalformed: a line over the length cap is reported as too
// long; a line that is not JSON as malformed; the events around them are read.
func TestLineOverTheCapIsTooLongNotMalformed(t *testing.T) {
	path := sample(t)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(strings.Repeat("x", audit.MaxLineSize+10) + "\n" + "not json\n")
	f.Close()
	out, errOut, err := run(t, t0.Add(24*time.Hour), "--file", path, "--limit", "0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "skipped 1 line(s) too long") || !strings.Contains(errOut, "skipped 1 malformed line(s)") {
		t.Errorf("stderr = %q, want one too long and one malformed", errOut)
	}
	if strings.Count(out, "\n") < 5 {
		t.Errorf("the events around them are missing:\n%s", out)
	}
}

// TestFollowPrintsARecoveredDecisionOnce: a server restarted after a crash records again
// the decisions its predecessor may have lost (same event ID); a follower that printed the
// first prints neither the copy in the history nor the one written while following.
func TestFollowPrintsARecoveredDecisionOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	w, err := audit.Open(audit.Options{Path: path, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	bound := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	decision := func(name string, recovered bool) audit.Event {
		e := audit.GPUAllocate("alice", audit.Allocation{Name: name})
		e.ID, e.Time = audit.DecisionID("allocate", name, bound), bound
		if recovered {
			e.Details["recovered"] = true
		}
		return e
	}
	w.Log(decision("a", false))
	w.Log(decision("a", true)) // already in the history twice
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	out, cancel, done := follow(path)
	waitFor(t, out, `"allocation":"a"`)
	w.Log(decision("a", true)) // a restart while following
	w.Log(decision("b", false))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, `"allocation":"b"`)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), `"allocation":"a"`); n != 1 {
		t.Fatalf("allocation a's decision printed %d times, want once:\n%s", n, out)
	}
}

// follow runs `gpuwarden events --file path --follow --json args…` until cancel; done
// gives its error.
func follow(path string, args ...string) (*testutil.SyncBuffer, context.CancelFunc, <-chan error) {
	cmd := newCommand(&Options{pollInterval: time.Millisecond})
	out := &testutil.SyncBuffer{}
	cmd.SetOut(out)
	cmd.SetErr(out)
	cmd.SetArgs(append([]string{"--file", path, "--follow", "--json"}, args...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	return out, cancel, done
}

// TestContainerShowsItsAllocationsDecisions: a Gateway allocation is bound before its
// container exists, so its gpu.allocate names no container; the container's records name the
// allocation, and --container shows that gpu.allocate too, not another allocation's.
func TestContainerShowsItsAllocationsDecisions(t *testing.T) {
	c := audit.Container{Name: "brave_curie", ID: "9e8d7c6b5a4f3e2d1c0b", Type: "docker", Allocation: "gateway-1"}
	path := writeLog(t,
		at(0, audit.GPUAllocate("alice", audit.Allocation{Name: "gateway-1", Devices: []string{"GPU-1"}})),
		at(0, audit.GPUAllocate("alice", audit.Allocation{Name: "gateway-2", Devices: []string{"GPU-2"}})),
		at(1, audit.ContainerEvent(audit.ContainerCreate, "alice", c, "")),
	)
	for _, by := range []string{"brave_curie", "9e8d7c6b5a4f"} {
		out, _, err := run(t, t0.Add(2*time.Hour), "--file", path, "--container", by, "--json")
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(out, "\n"); n != 2 || !strings.Contains(out, `"allocation":"gateway-1","devices":["GPU-1"]`) || strings.Contains(out, "gateway-2") {
			t.Errorf("--container %s: got %d events:\n%s", by, n, out)
		}
	}
}

// me is the test process's user: the gateway answers it its own records (all, as root).
func me(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Skipf("no login name: %v", err)
	}
	return u.Username
}

// TestThroughTheGateway: asked through the gateway, the same flags print what the file
// gives, in every form.
func TestThroughTheGateway(t *testing.T) {
	who := me(t)
	train := audit.Container{Name: "train", ID: "4f2c0a1b2c3d4e5f", Type: "docker", Allocation: "a1"}
	path := writeLog(t,
		at(0, audit.ContainerEvent(audit.ContainerCreate, who, train, "")),
		at(1, audit.GPUAllocate(who, audit.Allocation{Name: "a1", Devices: []string{"GPU-0"}, GPUEquivalents: "1"})),
		at(2, audit.GPUReject(who, audit.Allocation{Name: "a2", Container: audit.Container{Name: "nb"}}, "QuotaExceeded", "over quota")),
		at(3, audit.GPURelease(who, audit.Allocation{Name: "a1", Container: train}, "container removed")),
		at(4, audit.GPUAllocate("someone-else", audit.Allocation{Name: "x1"})),
	)
	sock := gatewayclienttest.Serve(t, path)
	now := t0.Add(5 * time.Hour)
	for _, args := range [][]string{
		{"--user", who},
		{"--user", who, "--json"},
		{"--user", who, "--summary"},
		{"--user", who, "--container", "train", "--json"},
		{"--user", who, "--type", "gpu", "--since", "4h30m", "--until", "2h"},
		{"--user", who, "--limit", "2"},
		{"--user", who, "--limit", "20000", "--json"},
		{"--user", who, "--since", "2026-11-20T11:00:00Z"},
	} {
		local, localErr, err := run(t, now, append([]string{"--file", path}, args...)...)
		if err != nil {
			t.Fatalf("%v from the file: %v", args, err)
		}
		remote, remoteErr, err := run(t, now, append([]string{"--gateway-socket", sock}, args...)...)
		if err != nil {
			t.Errorf("%v through the gateway: %v", args, err)
			continue
		}
		if remote != local || remoteErr != localErr || local == "" {
			t.Errorf("%v through the gateway:\n%s%s\nfrom the file:\n%s%s", args, remote, remoteErr, local, localErr)
		}
	}
	// DOCKER_HOST naming the gateway's socket (here the default one) asks the gateway
	// first (gatewayclient's tests), unless a file is named.
	if _, err := os.Stat(gateway.DefaultSocket); err == nil {
		t.Logf("a gateway serves %s here: DOCKER_HOST not checked", gateway.DefaultSocket)
	} else {
		t.Setenv("DOCKER_HOST", "unix://"+gateway.DefaultSocket)
		t.Setenv(EnvFile, "")
		// Not there (gpuwarden stopped): the default file, read without an error (empty or
		// absent on a machine that never ran gpuwarden).
		_, errOut, err := run(t, now, "--user", who)
		_, statErr := os.Stat(audit.DefaultPath)
		if err != nil || (statErr != nil && !strings.Contains(errOut, "No events logged yet")) {
			t.Errorf("DOCKER_HOST naming a gateway that is not there: %v %s", err, errOut)
		}
		if out, _, err := run(t, now, "--user", who, "--file", path); err != nil || !strings.Contains(out, "gpu.release") {
			t.Errorf("DOCKER_HOST naming the gateway, with --file: %v\n%s", err, out)
		}
	}
	_, _, err := run(t, now, "--gateway-socket", filepath.Join(t.TempDir(), "none.sock"))
	if err == nil || !strings.Contains(err.Error(), "asking gpuwarden at ") {
		t.Errorf("a gateway that is not there: %v", err)
	}
}

// TestFollowThroughTheGateway: --follow through the gateway prints the last records, then
// new ones as they are written.
func TestFollowThroughTheGateway(t *testing.T) {
	who := me(t)
	path := filepath.Join(t.TempDir(), "events.jsonl")
	w, err := audit.Open(audit.Options{Path: path, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 5 {
		w.Log(audit.Event{Type: "gpu.allocate", User: who, Details: map[string]any{"seq": i}})
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	sock := gatewayclienttest.Serve(t, path)
	cmd := newCommand(&Options{})
	out := &testutil.SyncBuffer{}
	cmd.SetOut(out)
	cmd.SetErr(out)
	cmd.SetArgs([]string{"--gateway-socket", sock, "--follow", "--json", "--limit", "2", "--user", who})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	waitFor(t, out, `"seq":4}`)
	w.Log(audit.Event{Type: "gpu.allocate", User: who, Details: map[string]any{"seq": 5}})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, `"seq":5}`)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Errorf("printed %d lines, want the last 2 and the new one:\n%s", n, out)
	}
}

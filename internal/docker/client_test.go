package docker

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/api/types/container"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

func requests(r []container.DeviceRequest) *container.HostConfig {
	return &container.HostConfig{Resources: container.Resources{DeviceRequests: r}}
}

func TestFromInspect(t *testing.T) {
	base := func(hc *container.HostConfig, env ...string) container.InspectResponse {
		return container.InspectResponse{ID: "abc", Name: "/train", Created: "2026-11-22T10:00:00.5Z",
			State:  &container.State{Status: "exited", Pid: 0, StartedAt: "2026-11-22T10:00:01Z", FinishedAt: "2026-11-22T11:00:00Z"},
			Config: &container.Config{Image: "pytorch", Labels: map[string]string{"ds01.user": "alice"}, Env: env}, HostConfig: hc}
	}
	tests := []struct {
		name string
		in   container.InspectResponse
		want GPURequest
	}{
		{"no GPUs", base(&container.HostConfig{}), GPURequest{}},
		{"--gpus all", base(requests([]container.DeviceRequest{{Count: -1, Capabilities: [][]string{{"gpu"}}}})), GPURequest{All: true}},
		{"--gpus 2", base(requests([]container.DeviceRequest{{Count: 2, Capabilities: [][]string{{"gpu"}}}})), GPURequest{Count: 2}},
		{"--gpus device=UUIDs", base(requests([]container.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"GPU-1", "MIG-2"}}})),
			GPURequest{Devices: []string{"GPU-1", "MIG-2"}}},
		{"comma-joined IDs", base(requests([]container.DeviceRequest{{Capabilities: [][]string{{"gpu"}}, DeviceIDs: []string{"0,1"}}})),
			GPURequest{Devices: []string{"0", "1"}}},
		{"other device driver", base(requests([]container.DeviceRequest{{Driver: "amd", Count: 1}})), GPURequest{}},
		{"nvidia runtime with NVIDIA_VISIBLE_DEVICES", base(&container.HostConfig{Runtime: "nvidia"}, "A=b", "NVIDIA_VISIBLE_DEVICES=GPU-1,GPU-2"),
			GPURequest{Devices: []string{"GPU-1", "GPU-2"}}},
		{"nvidia runtime, all", base(&container.HostConfig{Runtime: "nvidia"}, "NVIDIA_VISIBLE_DEVICES=all"), GPURequest{All: true}},
		{"nvidia runtime, void", base(&container.HostConfig{Runtime: "nvidia"}, "NVIDIA_VISIBLE_DEVICES=void"), GPURequest{}},
		{"runc ignores the variable", base(&container.HostConfig{Runtime: "runc"}, "NVIDIA_VISIBLE_DEVICES=all"), GPURequest{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := fromInspect(tc.in)
			if diff := cmp.Diff(tc.want, got.GPUs); diff != "" {
				t.Errorf("GPUs (-want,+got):\n%s", diff)
			}
			if got.Name != "train" || got.State != StateExited || got.Labels["ds01.user"] != "alice" || got.Image != "pytorch" ||
				!got.Created.Equal(time.Date(2026, 11, 22, 10, 0, 0, 5e8, time.UTC)) || got.FinishedAt.Hour() != 11 {
				t.Errorf("translation: %+v", got)
			}
		})
	}
	never := fromInspect(container.InspectResponse{ID: "x", State: &container.State{Status: "created", StartedAt: "0001-01-01T00:00:00Z"}})
	if !never.NeverStarted() || !never.StartedAt.IsZero() || never.Labels == nil {
		t.Errorf("created container: %+v", never)
	}
}

// TestClientAgainstARealEngine drives the adapter through a container's life on the
// tests' Docker engine (hack/docker-up.sh).
func TestClientAgainstARealEngine(t *testing.T) {
	host := testutil.DockerHost()
	c, err := New(host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	events, errs, err := c.Events(ctx)
	testutil.Require(t, err == nil, "a running Docker engine at %s (hack/docker-up.sh): %v", host, err)
	image := testutil.DockerImage()
	out, err := exec.Command("docker", "-H", host, "run", "-d", "--label", "gpuwarden.io/user=alice", "--gpus", `"device=GPU-a,GPU-b"`,
		image, "sleep", "3600").CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	id := strings.TrimSpace(string(out))
	defer func() { _ = exec.Command("docker", "-H", host, "rm", "-f", id).Run() }()

	got, err := c.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateRunning || got.PID == 0 || got.Labels["gpuwarden.io/user"] != "alice" ||
		strings.Join(got.GPUs.Devices, ",") != "GPU-a,GPU-b" || got.StartedAt.IsZero() {
		t.Errorf("inspect: %+v", got)
	}
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range list {
		found = found || l.ID == id
	}
	if !found {
		t.Error("List does not include the running container")
	}
	if _, err := c.Stats(ctx, id); err != nil {
		t.Errorf("stats: %v", err)
	}
	// A missing file of a container that exists is not a missing container.
	if _, err := c.ModTime(ctx, id, "/no/such/keep-alive"); !errors.Is(err, ErrNoFile) || errors.Is(err, ErrNotFound) {
		t.Errorf("ModTime of a missing file: %v, want ErrNoFile", err)
	}
	if _, err := c.ModTime(ctx, id, "/etc"); err != nil {
		t.Errorf("ModTime of /etc: %v", err)
	}
	if err := c.WriteFile(ctx, id, "/no/such/dir/notice", []byte("x"), 0, 0); !errors.Is(err, ErrNoFile) {
		t.Errorf("WriteFile into a missing directory: %v, want ErrNoFile", err)
	}
	if err := c.WriteFile(ctx, id, "/tmp/notice", []byte("x"), 0, 0); err != nil {
		t.Errorf("WriteFile into /tmp: %v", err)
	}
	// Exec: output and exit code, a file it writes stays in the container, and a command
	// that outlives its time is left running, not waited for.
	res, err := c.Exec(ctx, id, []string{"/bin/sh", "-c", "echo saved > /tmp/ckpt; echo out; echo err >&2; exit 3"}, 10*time.Second)
	if err != nil || res.Running || res.ExitCode != 3 || !strings.Contains(res.Output, "out") || !strings.Contains(res.Output, "err") {
		t.Errorf("exec: %+v, %v; want exit 3 with both streams' output", res, err)
	}
	if res, err := c.Exec(ctx, id, []string{"cat", "/tmp/ckpt"}, 10*time.Second); err != nil || strings.TrimSpace(res.Output) != "saved" || res.ExitCode != 0 {
		t.Errorf("the hook's file: %+v, %v", res, err)
	}
	began := time.Now()
	if res, err := c.Exec(ctx, id, []string{"sleep", "30"}, 300*time.Millisecond); err != nil || !res.Running || time.Since(began) > 10*time.Second {
		t.Errorf("exec past its time: %+v, %v after %s; want Running at once", res, err, time.Since(began))
	}
	if _, err := c.Exec(ctx, id, []string{"/no/such/binary"}, 10*time.Second); err == nil {
		// Engines differ: some fail the start, some report exit 126/127.
		if res, _ := c.Exec(ctx, id, []string{"/no/such/binary"}, 10*time.Second); res.ExitCode == 0 {
			t.Error("exec of a missing binary: exit 0")
		}
	}
	if err := c.Stop(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, id, []string{"true"}, time.Second); err == nil {
		t.Error("exec in a stopped container: no error")
	}
	if err := c.Remove(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Inspect(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("inspect after remove: %v, want ErrNotFound", err)
	}
	if err := c.Remove(ctx, id, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove twice: %v, want ErrNotFound", err)
	}
	if _, err := c.ModTime(ctx, id, "/etc"); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrNoFile) {
		t.Errorf("ModTime in a removed container: %v, want ErrNotFound", err)
	}
	if err := c.WriteFile(ctx, id, "/tmp/notice", []byte("x"), 0, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("WriteFile into a removed container: %v, want ErrNotFound", err)
	}
	if _, err := c.Exec(ctx, id, []string{"true"}, time.Second); !errors.Is(err, ErrNotFound) {
		t.Errorf("Exec in a removed container: %v, want ErrNotFound", err)
	}
	var seen []string
	for !strings.Contains(strings.Join(seen, " "), "destroy") {
		select {
		case e := <-events:
			if e.ID == id {
				seen = append(seen, e.Action)
			}
		case err := <-errs:
			t.Fatalf("events stream: %v", err)
		case <-ctx.Done():
			t.Fatalf("events seen: %v; no destroy", seen)
		}
	}
	// Engines differ in what comes between (kill, stop), never in this order.
	if !inOrder(seen, "create", "start", "die", "destroy") || seen[len(seen)-1] != "destroy" {
		t.Errorf("events %v: want create, start, die and destroy in that order, destroy last", seen)
	}
}

// inOrder reports whether want appear in seen in that order, with anything between.
func inOrder(seen []string, want ...string) bool {
	i := 0
	for _, s := range seen {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestInOrder(t *testing.T) {
	seen := []string{"create", "start", "kill", "die", "stop", "destroy"}
	if !inOrder(seen, "create", "start", "die", "destroy") {
		t.Error("the usual sequence is not in order")
	}
	if inOrder(seen, "start", "create") || inOrder(seen, "die", "start") || inOrder(seen[:4], "destroy") {
		t.Error("an order that is not there is found")
	}
}

func TestUnreachableEngine(t *testing.T) {
	c, err := New("unix:///nonexistent/docker.sock")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := c.Events(ctx); err == nil {
		t.Error("Events on an unreachable engine: no error")
	}
	if _, err := c.List(ctx); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("List on an unreachable engine: %v; want an error that is not ErrNotFound", err)
	}
}

func TestTailKeepsTheLastBytes(t *testing.T) {
	for _, tc := range []struct {
		writes []string
		want   string
	}{
		{[]string{"ab", "cd"}, "abcd"},
		{[]string{"abcd", "ef"}, "…cdef"},
		{[]string{"abcdefgh"}, "…efgh"},
		{[]string{"abcd"}, "abcd"},
		{[]string{"a", "bcde"}, "…bcde"},
	} {
		tl := &Tail{Max: 4}
		for _, w := range tc.writes {
			if n, err := tl.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("Write(%q) = %d, %v", w, n, err)
			}
		}
		if got := tl.String(); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.writes, got, tc.want)
		}
	}
}

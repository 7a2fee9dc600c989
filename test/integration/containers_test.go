package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/controllers"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// testImage is the busybox image hack/docker-up.sh imports.
func testImage() string { return testutil.DockerImage() }

// The container tests' own Docker engine, started by hack/docker-up.sh beside the shared
// one: every gpuwarden watching an engine acts on all of its containers, so these tests must
// not share one with the end-to-end tests' servers (which run at the same time), and one of
// them stops and restarts it.
const (
	engineSock  = "/run/gpuwarden-test/integration.sock"
	engineState = "/var/lib/gpuwarden-test/integration"
)

// dockerHost makes sure the container tests' engine runs and returns its address.
func dockerHost(t testing.TB) string {
	t.Helper()
	cmd := exec.Command("bash", "../../hack/docker-up.sh")
	cmd.Env = append(os.Environ(), "GPUWARDEN_TEST_DOCKER_SOCK="+engineSock, "GPUWARDEN_DOCKER_STATE="+engineState)
	out, err := cmd.CombinedOutput()
	testutil.Require(t, err == nil, "a Docker engine from hack/docker-up.sh: %v\n%s", err, out)
	return "unix://" + engineSock
}

// requireDocker fails (in CI) or skips without a reachable engine and the docker CLI.
func requireDocker(t testing.TB, host string) *docker.Client {
	t.Helper()
	_, err := exec.LookPath("docker")
	testutil.Require(t, err == nil, "docker CLI: %v", err)
	eng, err := docker.New(host)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = eng.List(ctx)
	testutil.Require(t, err == nil, "a running Docker engine at %s (hack/docker-up.sh): %v", host, err)
	return eng
}

// dockerCLI runs the docker CLI against host and returns its trimmed output.
func dockerCLI(t testing.TB, host string, args ...string) string {
	t.Helper()
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+host)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// containerEnv is one container test's world: a manager for node with the Docker
// controllers, simulated GPUs, an audit log and a host's engine.
type containerEnv struct {
	t     testing.TB
	c     client.Client
	host  string
	fake  *fakegpu.Server
	audit *audit.Writer
	path  string
	node  string
	opts  controllers.Options
	stop  func()
}

// restart stops the manager and starts a new one, as after a crash or an upgrade.
func (e *containerEnv) restart(meanwhile func()) {
	e.t.Helper()
	e.stop()
	meanwhile()
	e.stop = startManager(e.t, e.opts)
}

func newContainerEnv(t testing.TB, host string) *containerEnv {
	t.Helper()
	return newContainerEnvWith(t, host, nil)
}

// newContainerEnvWith is newContainerEnv with the controllers' options changed by tune.
func newContainerEnvWith(t testing.TB, host string, tune func(*controllers.Options)) *containerEnv {
	t.Helper()
	eng := requireDocker(t, host)
	c := allocationTest(t)
	t.Cleanup(func() { _ = c.DeleteAllOf(context.Background(), &gpuwardenv1alpha1.ContainerPolicy{}) })
	e := &containerEnv{t: t, c: c, host: host, node: "dk", path: filepath.Join(t.TempDir(), "events.jsonl")}
	fake, err := fakegpu.NewForNode("h100x8", e.node)
	if err != nil {
		t.Fatal(err)
	}
	e.fake = fake
	w, err := audit.Open(audit.Options{Path: e.path, Node: e.node, Source: "gpuwarden"})
	if err != nil {
		t.Fatal(err)
	}
	e.audit = w
	e.opts = controllers.Options{NodeName: e.node, GPUs: gpu.NewNVML(fake), Groups: resolve.StaticGroups{},
		Audit: w, Docker: eng, DockerRetry: 200 * time.Millisecond, ScanInterval: 200 * time.Millisecond}
	if tune != nil {
		tune(&e.opts)
	}
	e.stop = startManager(t, e.opts)
	t.Cleanup(func() { e.stop(); _ = w.Close() })
	testutil.Eventually(t, 30*time.Second, "the GPU inventory", func() bool {
		var gpus gpuwardenv1alpha1.GPUList
		return c.List(context.Background(), &gpus) == nil && len(gpus.Items) == 8
	})
	return e
}

// run starts a container and returns its ID; it is removed when the test ends.
func (e *containerEnv) run(args ...string) string {
	e.t.Helper()
	id := dockerCLI(e.t, e.host, append([]string{"run", "-d", "--stop-timeout", "1"}, args...)...)
	e.t.Cleanup(func() { _ = exec.Command("docker", "-H", e.host, "rm", "-f", id).Run() })
	return id
}

// allocate creates a Manual allocation of n GPUs for user and waits until it is Bound.
func (e *containerEnv) allocate(name, user string, n int32) *gpuwardenv1alpha1.GPUAllocation {
	e.t.Helper()
	e.create(testutil.MakeAllocation(name).User(user).GPUs(n))
	return e.waitPhase(name, gpuwardenv1alpha1.PhaseBound)
}

// lookup reads an allocation; an error (not found among them) is the caller's to judge.
func (e *containerEnv) lookup(name string) (*gpuwardenv1alpha1.GPUAllocation, error) {
	a := &gpuwardenv1alpha1.GPUAllocation{}
	if err := e.c.Get(context.Background(), client.ObjectKey{Name: name}, a); err != nil {
		return nil, err
	}
	return a, nil
}

// get reads an allocation that must exist; the test fails, saying why, when it does not.
func (e *containerEnv) get(name string) *gpuwardenv1alpha1.GPUAllocation {
	e.t.Helper()
	a, err := e.lookup(name)
	if err != nil {
		e.t.Fatalf("reading allocation %s: %v", name, err)
	}
	return a
}

func (e *containerEnv) waitPhase(name string, phase gpuwardenv1alpha1.AllocationPhase) *gpuwardenv1alpha1.GPUAllocation {
	e.t.Helper()
	var a *gpuwardenv1alpha1.GPUAllocation
	testutil.Eventually(e.t, 20*time.Second, "allocation "+name+" "+string(phase), func() (bool, string) {
		got, err := e.lookup(name)
		if err != nil {
			return false, err.Error()
		}
		a = got
		return a.Status.Phase == phase, fmt.Sprintf("phase %q reason %q: %s", a.Status.Phase, a.Status.Reason, a.Status.Message)
	})
	return a
}

// events returns the audit records written so far.
func (e *containerEnv) events(f audit.Filter) []audit.Event {
	e.t.Helper()
	if err := e.audit.Flush(); err != nil {
		e.t.Fatal(err)
	}
	var out []audit.Event
	if _, err := audit.Read(context.Background(), []string{e.path}, f, func(ev *audit.Event) error { out = append(out, *ev); return nil }); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// waitEvent waits for an audit record of type for container (name or ID) and returns it.
func (e *containerEnv) waitEvent(typ, container string) audit.Event {
	e.t.Helper()
	var got audit.Event
	testutil.Eventually(e.t, 20*time.Second, typ+" of "+container, func() bool {
		evs := e.events(audit.Filter{Type: typ, Container: container})
		if len(evs) > 0 {
			got = evs[len(evs)-1]
		}
		return len(evs) > 0
	})
	return got
}

func (e *containerEnv) exists(id string) bool {
	return exec.Command("docker", "-H", e.host, "inspect", id).Run() == nil
}

// policy creates the policy w builds.
func (e *containerEnv) policy(w *testutil.PolicyWrapper) {
	e.t.Helper()
	if err := e.c.Create(context.Background(), w.Obj()); err != nil {
		e.t.Fatal(err)
	}
}

func TestContainerLifecycleBindingAndReleaseOnRemoval(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	a := e.allocate("alice-train", "alice", 1)
	uuid := a.Status.Devices[0].UUID
	id := e.run("--name", "alice-train", "--label", "gpuwarden.io/user=alice", "--label", "gpuwarden.io/allocation=alice-train",
		"--gpus", "device="+uuid, testImage(), "sleep", "3600")
	testutil.Eventually(t, 20*time.Second, "the container attached to its allocation", func() bool {
		a := e.get("alice-train")
		return a != nil && a.Status.ContainerID == id
	})
	holder := func() string {
		var g gpuwardenv1alpha1.GPU
		if err := e.c.Get(context.Background(), client.ObjectKey{Name: gpu.ObjectName(e.node, int(a.Status.Devices[0].Index))}, &g); err != nil {
			return err.Error()
		}
		return g.Status.Holder
	}
	testutil.Eventually(t, 20*time.Second, "the GPU shows its holder", func() bool { return holder() == "alice-train" })
	dockerCLI(t, e.host, "stop", "-t", "0", id)
	dockerCLI(t, e.host, "rm", id)
	a = e.waitPhase("alice-train", gpuwardenv1alpha1.PhaseReleased)
	testutil.Eventually(t, 20*time.Second, "the GPU shows no holder", func() bool { return holder() == "" })
	if !strings.Contains(a.Status.Message, reasons.ReleaseContainerRemoved) {
		t.Errorf("release message %q does not say the container was removed", a.Status.Message)
	}
	for _, typ := range []string{audit.TypeContainerCreate, audit.TypeContainerStart, audit.TypeContainerStop, audit.TypeContainerDie, audit.TypeContainerRemove} {
		ev := e.waitEvent(typ, id)
		if ev.User != "alice" || ev.Details["container"] != "alice-train" || ev.Details["container_type"] != "docker" {
			t.Errorf("%s record: user %q, details %v; want alice's docker container alice-train", typ, ev.User, ev.Details)
		}
	}
	rel := e.waitEvent(audit.TypeGPURelease, "")
	if rel.User != "alice" || rel.Details["reason"] != reasons.ReleaseContainerRemoved {
		t.Errorf("gpu.release record: user %q, details %v", rel.User, rel.Details)
	}
}

// TestContainerRemovedWhileGPUWardenWasDown: no event is ever seen for the removal, yet the
// relist on start finds the allocation's container gone and releases it.
func TestContainerRemovedWhileGPUWardenWasDown(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	a := e.allocate("nora-1", "nora", 1)
	id := e.run("--label", "gpuwarden.io/user=nora", "--label", "gpuwarden.io/allocation=nora-1",
		"--gpus", "device="+a.Status.Devices[0].UUID, testImage(), "sleep", "3600")
	testutil.Eventually(t, 20*time.Second, "attached", func() bool { return e.get("nora-1").Status.ContainerID == id })
	e.restart(func() {
		dockerCLI(t, e.host, "rm", "-f", id)
		if got := e.get("nora-1"); got.Status.Phase != gpuwardenv1alpha1.PhaseBound {
			t.Fatalf("released with no controller running: %s", got.Status.Phase)
		}
	})
	e.waitPhase("nora-1", gpuwardenv1alpha1.PhaseReleased)
}

// TestWaitingAllocationOfARemovedContainerStopsWaiting: an allocation still waiting for
// capacity is released, not left queued, when its container goes.
func TestWaitingAllocationOfARemovedContainerStopsWaiting(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	e.allocate("olga-fill", "filler", 8) // every GPU held: olga's request waits
	e.create(testutil.MakeAllocation("olga-big").User("olga").GPUs(1))
	testutil.Eventually(t, 20*time.Second, "waiting for capacity", func() bool {
		return e.get("olga-big").Status.Reason == gpuwardenv1alpha1.ReasonNoCapacity
	})
	id := e.run("--label", "gpuwarden.io/user=olga", "--label", "gpuwarden.io/allocation=olga-big", testImage(), "sleep", "3600")
	testutil.Eventually(t, 20*time.Second, "attached", func() bool { return e.get("olga-big").Status.ContainerID == id })
	dockerCLI(t, e.host, "rm", "-f", id)
	e.waitPhase("olga-big", gpuwardenv1alpha1.PhaseReleased)
}

// TestAllocationLabelAloneNamesNoOwner: a container that carries only the allocation label
// does not become the owner of the allocation it names: its records say "unknown", it is not
// attached, and removing it releases nothing.
func TestAllocationLabelAloneNamesNoOwner(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	a := e.allocate("pat-1", "pat", 1)
	id := e.run("--label", "gpuwarden.io/allocation=pat-1", "--gpus", "device="+a.Status.Devices[0].UUID, testImage(), "sleep", "3600")
	if ev := e.waitEvent(audit.TypeContainerStart, id); ev.User != "unknown" {
		t.Errorf("container.start user %q, want unknown (a label naming an allocation is no owner)", ev.User)
	}
	dockerCLI(t, e.host, "rm", "-f", id)
	e.waitEvent(audit.TypeContainerRemove, id)
	testutil.Consistently(t, 3*time.Second, "pat-1 stays Bound and unattached", func() bool {
		got := e.get("pat-1")
		return got.Status.Phase == gpuwardenv1alpha1.PhaseBound && got.Status.ContainerID == ""
	})
}

// TestLabelClaimingAnotherUsersAllocationReleasesNothing: a container that names someone
// else's allocation in its label is not attached to it, and removing it frees nothing.
func TestLabelClaimingAnotherUsersAllocationReleasesNothing(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	e.allocate("quinn-1", "quinn", 1)
	id := e.run("--label", "gpuwarden.io/user=mallory", "--label", "gpuwarden.io/allocation=quinn-1", testImage(), "sleep", "3600")
	e.waitEvent(audit.TypeContainerStart, id)
	dockerCLI(t, e.host, "rm", "-f", id)
	e.waitEvent(audit.TypeContainerRemove, id)
	// The removal has been handled once the store forgot it; give the controller that long.
	testutil.Consistently(t, 2*time.Second, "quinn-1 untouched by another user's container", func() (bool, string) {
		a := e.get("quinn-1")
		return a.Status.Phase == gpuwardenv1alpha1.PhaseBound && a.Status.ContainerID == "" && a.Annotations[gpuwardenv1alpha1.AnnotationRelease] == "",
			fmt.Sprintf("phase %s, container %q, annotations %v", a.Status.Phase, a.Status.ContainerID, a.Annotations)
	})
}

func TestOwnerAndTypeFromLegacyAndWellKnownLabels(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	for _, tc := range []struct {
		labels   []string
		user     string
		ctype    string
		nameHint string
	}{
		{[]string{"ds01.user=dora", "ds01.container_type=compose"}, "dora", "compose", "ds01"},
		{[]string{"aime.mlc.USER=erin"}, "erin", "docker", "aime"},
		{[]string{"devcontainer.local_folder=/home/frank/proj"}, "frank", "devcontainer", "devc"},
		{[]string{"com.docker.compose.project=web"}, "unknown", "compose", "compose"},
		{nil, "unknown", "docker", "bare"},
	} {
		args := []string{"--name", "owner-" + tc.nameHint}
		for _, l := range tc.labels {
			args = append(args, "--label", l)
		}
		id := e.run(append(args, testImage(), "sleep", "3600")...)
		ev := e.waitEvent(audit.TypeContainerStart, id)
		if ev.User != tc.user || ev.Details["container_type"] != tc.ctype {
			t.Errorf("labels %v: recorded user %q type %v; want %q %q", tc.labels, ev.User, ev.Details["container_type"], tc.user, tc.ctype)
		}
	}
}

func TestStoppedContainersReleaseAfterHoldAndAreRemoved(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	e.policy(testutil.MakePolicy("short").Users("bob").GPUHoldAfterStop(time.Second).RemoveAfterStop(3 * time.Second))
	a := e.allocate("bob-1", "bob", 1)
	id := e.run("--name", "bob-1", "--label", "gpuwarden.io/user=bob", "--label", "gpuwarden.io/allocation=bob-1",
		"--gpus", "device="+a.Status.Devices[0].UUID, testImage(), "sleep", "3600")
	kept := e.run("--name", "bob-kept", "--label", "gpuwarden.io/user=bob", "--label", "gpuwarden.io/protected=true", testImage(), "sleep", "3600")
	testutil.Eventually(t, 20*time.Second, "attached", func() bool { return e.get("bob-1").Status.ContainerID == id })
	dockerCLI(t, e.host, "stop", "-t", "0", id)
	dockerCLI(t, e.host, "stop", "-t", "0", kept)
	a = e.waitPhase("bob-1", gpuwardenv1alpha1.PhaseReleased)
	if !e.exists(id) {
		t.Fatal("the container was removed before its GPUs were released; want release first, after gpuHoldAfterStop")
	}
	if !strings.Contains(a.Status.Message, "hold_expired") || !strings.Contains(a.Status.Message, "ContainerPolicy short") {
		t.Errorf("release message %q should name hold_expired and the policy", a.Status.Message)
	}
	testutil.Eventually(t, 20*time.Second, "the stopped container removed after removeAfterStop", func() bool { return !e.exists(id) })
	rm := e.waitEvent(audit.TypeLifecycleRemove, id)
	if rm.User != "bob" || !strings.Contains(rm.Details["reason"].(string), "stopped_too_long") || rm.Details["policy"] != "short" {
		t.Errorf("lifecycle.remove record: user %q details %v", rm.User, rm.Details)
	}
	if ev := e.waitEvent(audit.TypeContainerRemove, id); ev.Details["reason"] != "stopped_too_long" {
		t.Errorf("container.remove reason %v, want stopped_too_long", ev.Details["reason"])
	}
	if !e.exists(kept) {
		t.Error("a protected container was removed")
	}
}

func TestCreatedNeverStartedIsRemoved(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	e.policy(testutil.MakePolicy("created").Users("gina").CreatedNeverStartedTimeout(time.Second))
	id := dockerCLI(t, e.host, "create", "--name", "never-started", "--label", "ds01.user=gina", testImage(), "sleep", "1")
	t.Cleanup(func() { _ = exec.Command("docker", "-H", e.host, "rm", "-f", id).Run() })
	testutil.Eventually(t, 20*time.Second, "the never-started container removed", func() bool { return !e.exists(id) })
	ev := e.waitEvent(audit.TypeLifecycleRemove, id)
	if ev.User != "gina" || !strings.HasPrefix(ev.Details["reason"].(string), "created_never_started") {
		t.Errorf("lifecycle.remove record: user %q details %v", ev.User, ev.Details)
	}
}

func TestAdoptionOfGPUContainersMadeOutsideGPUWarden(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	e.createQuotas() // everyone: 2 gpu-equivalents, 2 per container, 3 containers
	e.policy(testutil.MakePolicy("stop-unallocated").Users("hank").OnUnallocatedGPU(gpuwardenv1alpha1.UnallocatedGPUStop).StopGracePeriod(time.Second))
	uuids := e.fake.UUIDs()

	ok := e.run("--label", "ds01.user=hank", "--gpus", "device="+uuids[5], testImage(), "sleep", "3600")
	a := e.waitPhase("adopted-"+ok[:12], gpuwardenv1alpha1.PhaseBound)
	if a.Spec.Source != gpuwardenv1alpha1.SourceAdopted || a.Spec.User != "hank" || a.Status.Devices[0].UUID != uuids[5] || a.Status.ContainerID != ok {
		t.Errorf("adopted allocation: %+v %+v", a.Spec, a.Status)
	}

	// Two more GPUs by count (the first two): over hank's 2 gpu-equivalents.
	over := e.run("--label", "ds01.user=hank", "--gpus", "2", testImage(), "sleep", "3600")
	r := e.waitPhase("adopted-"+over[:12], gpuwardenv1alpha1.PhaseRejected)
	if r.Status.Reason != gpuwardenv1alpha1.ReasonQuotaExceeded || strings.Join(r.Spec.Request.Devices, ",") != uuids[0]+","+uuids[1] {
		t.Errorf("over-quota adoption: reason %q devices %v", r.Status.Reason, r.Spec.Request.Devices)
	}
	testutil.Eventually(t, 20*time.Second, "the quota shows what hank holds", func() bool {
		var q gpuwardenv1alpha1.GPUQuota
		if e.c.Get(context.Background(), client.ObjectKey{Name: "everyone"}, &q) != nil {
			return false
		}
		for _, u := range q.Status.Usage {
			if u.User == "hank" {
				return u.GPUEquivalents.String() == "1" && u.Containers == 1
			}
		}
		return false
	})
	det := e.waitEvent(audit.TypeDetectionUnmanagedContainer, over)
	if det.User != "hank" {
		t.Errorf("detection record user %q, want hank", det.User)
	}
	testutil.Eventually(t, 20*time.Second, "the over-quota container stopped as its policy says", func() bool {
		return dockerCLI(t, e.host, "inspect", "-f", "{{.State.Running}}", over) == "false"
	})

	// No owner at all: adopted as "unknown" and reported, but left running (Record).
	anon := e.run("--gpus", "device=3", testImage(), "sleep", "3600")
	u := e.waitPhase("adopted-"+anon[:12], gpuwardenv1alpha1.PhaseBound)
	if u.Spec.User != gpuwardenv1alpha1.UnknownUser || u.Status.Devices[0].UUID != uuids[3] {
		t.Errorf("unowned adoption: user %q devices %+v", u.Spec.User, u.Status.Devices)
	}
	e.waitEvent(audit.TypeDetectionUnmanagedContainer, anon)
	if dockerCLI(t, e.host, "inspect", "-f", "{{.State.Running}}", anon) != "true" {
		t.Error("an unowned container was stopped; the default is to record only")
	}

	// Removing an adopted container releases its devices.
	dockerCLI(t, e.host, "rm", "-f", ok)
	testutil.Eventually(t, 20*time.Second, "the adopted allocation released", func() bool {
		a, err := e.lookup("adopted-" + ok[:12])
		return apierrors.IsNotFound(err) || err == nil && a.Status.Phase == gpuwardenv1alpha1.PhaseReleased
	})
}

func TestUnmanagedGPUProcessesAreDetected(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	uuids := e.fake.UUIDs()
	// A container using GPU 6 without asking gpuwarden; the fake NVML reports its real PID.
	id := e.run("--name", "sneaky", "--label", "gpuwarden.io/user=ivan", testImage(), "sleep", "3600")
	pid, err := strconv.Atoi(dockerCLI(t, e.host, "inspect", "-f", "{{.State.Pid}}", id))
	if err != nil || pid == 0 {
		t.Fatalf("container PID: %v", err)
	}
	e.fake.SetProcesses(uuids[6], fakegpu.Process{PID: pid, UsedMemoryBytes: 512 << 20})
	// A host process: this test itself, on GPU 7.
	e.fake.SetProcesses(uuids[7], fakegpu.Process{PID: os.Getpid(), UsedMemoryBytes: 1 << 30})
	// A bound container's own process on its own device is not reported.
	a := e.allocate("judy-1", "judy", 1)
	own := e.run("--name", "judy-1", "--label", "gpuwarden.io/user=judy", "--label", "gpuwarden.io/allocation=judy-1",
		"--gpus", "device="+a.Status.Devices[0].UUID, testImage(), "sleep", "3600")
	testutil.Eventually(t, 20*time.Second, "attached", func() bool { return e.get("judy-1").Status.ContainerID == own })
	ownPID, _ := strconv.Atoi(dockerCLI(t, e.host, "inspect", "-f", "{{.State.Pid}}", own))
	e.fake.SetProcesses(a.Status.Devices[0].UUID, fakegpu.Process{PID: ownPID})

	c := e.waitEvent(audit.TypeDetectionUnmanagedContainer, id)
	if c.User != "ivan" || c.Details["container"] != "sneaky" || c.Details["gpu"] != uuids[6] || c.Details["pid"] != float64(pid) {
		t.Errorf("unmanaged container record: user %q details %v", c.User, c.Details)
	}
	h := e.waitEvent(audit.TypeDetectionUnmanagedProcess, "")
	if h.Details["pid"] != float64(os.Getpid()) || h.Details["gpu"] != uuids[7] || h.User == "" {
		t.Errorf("unmanaged host process record: user %q details %v", h.User, h.Details)
	}
	e.fake.SetProcesses(uuids[6])
	e.fake.SetProcesses(uuids[7])
	e.waitEvent(audit.TypeDetectionUnmanagedContainerExited, id)
	e.waitEvent(audit.TypeDetectionUnmanagedProcessExited, "")
	if evs := e.events(audit.Filter{Type: "detection", Container: own}); len(evs) > 0 {
		t.Errorf("a bound container's own GPU process was reported: %v", evs)
	}
}

// TestDockerOutageReleasesNothing stops the container tests' engine mid-test and starts it
// again.
func TestDockerOutageReleasesNothing(t *testing.T) {
	host := dockerHost(t)
	up := func() { dockerHost(t) }
	down := func() {
		data, err := os.ReadFile(filepath.Join(engineState, "dockerd.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		p, err := os.FindProcess(pid)
		if err != nil {
			t.Fatal(err)
		}
		_ = p.Signal(os.Interrupt)
		testutil.Eventually(t, 30*time.Second, "dockerd stopped", func() bool {
			status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
			return p.Signal(syscall.Signal(0)) != nil || err != nil || strings.Contains(string(status), "State:\tZ")
		})
	}
	t.Cleanup(up) // whatever happens, later tests find the engine running
	e := newContainerEnv(t, host)
	a := e.allocate("kim-1", "kim", 1)
	id := e.run("--name", "kim-1", "--label", "gpuwarden.io/user=kim", "--label", "gpuwarden.io/allocation=kim-1",
		"--gpus", "device="+a.Status.Devices[0].UUID, testImage(), "sleep", "3600")
	testutil.Eventually(t, 20*time.Second, "attached", func() bool { return e.get("kim-1").Status.ContainerID == id })
	reachable := func(want metav1.ConditionStatus) func() bool {
		return func() bool {
			var g gpuwardenv1alpha1.GPU
			if e.c.Get(context.Background(), client.ObjectKey{Name: e.node + "-gpu0"}, &g) != nil {
				return false
			}
			cond := meta.FindStatusCondition(g.Status.Conditions, gpuwardenv1alpha1.ConditionDockerReachable)
			return cond != nil && cond.Status == want
		}
	}
	testutil.Eventually(t, 20*time.Second, "DockerReachable True", reachable(metav1.ConditionTrue))

	down()
	testutil.Eventually(t, 20*time.Second, "DockerReachable False during the outage", reachable(metav1.ConditionFalse))
	// Several reconnect attempts fail meanwhile; none may release anything.
	testutil.Consistently(t, 2*time.Second, "kim-1 Bound during the Docker outage", func() (bool, string) {
		got := e.get("kim-1")
		return got.Status.Phase == gpuwardenv1alpha1.PhaseBound && got.Annotations[gpuwardenv1alpha1.AnnotationRelease] == "",
			fmt.Sprintf("%s %v", got.Status.Phase, got.Annotations)
	})

	up()
	testutil.Eventually(t, 30*time.Second, "DockerReachable True after the engine is back", reachable(metav1.ConditionTrue))
	// The engine stopped the container on its way down: the relist records it.
	ev := e.waitEvent(audit.TypeContainerDie, id)
	if ev.User != "kim" {
		t.Errorf("resync record user %q, want kim", ev.User)
	}
	if got := e.get("kim-1"); got.Status.Phase != gpuwardenv1alpha1.PhaseBound {
		t.Fatalf("allocation %s after the resync; a stopped container keeps its GPUs without a hold policy", got.Status.Phase)
	}
	dockerCLI(t, host, "rm", id)
	e.waitPhase("kim-1", gpuwardenv1alpha1.PhaseReleased)
}

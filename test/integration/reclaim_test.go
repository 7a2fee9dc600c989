package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/utils/ptr"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/controllers"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

const sampleEvery = time.Second

// reclaimEnv is a container test world whose GPUs are driven by a control file, as
// --fake-gpus-control does, sampled every second.
type reclaimEnv struct {
	*containerEnv
	control string
	hook    *hookSink
}

func newReclaimEnv(t *testing.T) *reclaimEnv {
	t.Helper()
	host := dockerHost(t)
	requireDocker(t, host)
	hook := &hookSink{}
	srv := httptest.NewServer(hook)
	t.Cleanup(srv.Close)
	hook.url = srv.URL
	e := &reclaimEnv{control: filepath.Join(t.TempDir(), "gpus.yaml"), hook: hook}
	e.containerEnv = newContainerEnvWith(t, host, func(o *controllers.Options) {
		o.SampleInterval = sampleEvery
		o.AllowLocalWebhooks = true // the test's webhook listens on 127.0.0.1
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go e.fake.WatchControl(ctx, e.control, 50*time.Millisecond, func(err error) {
		if err != nil {
			t.Errorf("control file: %v", err)
		}
	})
	return e
}

// setGPUs writes the control file.
func (e *reclaimEnv) setGPUs(yaml string) {
	e.t.Helper()
	if err := os.WriteFile(e.control, []byte(yaml), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// idlePolicy, named name, is a short idle timeout for user's containers.
func idlePolicy(name, user string, mode gpuwardenv1alpha1.PolicyMode, webhook string) *testutil.PolicyWrapper {
	return testutil.MakePolicy(name).Users(user).Mode(mode).
		Idle(gpuwardenv1alpha1.IdlePolicy{Timeout: testutil.Duration(8 * time.Second), GPUUtilizationPercent: ptr.To[int32](5), CPUPercent: ptr.To[int32](10),
			NetworkBytesPerSecond: ptr.To[int64](10000), ConsecutiveSamples: ptr.To[int32](2), WarnAtFractions: []gpuwardenv1alpha1.Fraction{"0.5"}}).
		StopGracePeriod(time.Second).GPUHoldAfterStop(2*time.Second).Notify("/gpuwarden-notice", webhook)
}

// gpuContainer runs a container of user attached to a new one-GPU allocation.
func (e *reclaimEnv) gpuContainer(name, user string, cmd ...string) (id string, a *gpuwardenv1alpha1.GPUAllocation) {
	e.t.Helper()
	a = e.allocate(name, user, 1)
	args := append([]string{"--name", name, "--label", "gpuwarden.io/user=" + user, "--label", "gpuwarden.io/allocation=" + name,
		"--gpus", "device=" + a.Status.Devices[0].UUID, testImage()}, cmd...)
	id = e.run(args...)
	testutil.Eventually(e.t, 20*time.Second, name+" attached", func() bool { return e.get(name).Status.ContainerID == id })
	return id, e.get(name)
}

func (e *reclaimEnv) state(id string) string {
	out, _ := exec.Command("docker", "-H", e.host, "inspect", "-f", "{{.State.Status}}", id).Output()
	return strings.TrimSpace(string(out))
}

func (e *reclaimEnv) notice(id string) (string, bool) {
	out, err := exec.Command("docker", "-H", e.host, "exec", id, "cat", "/gpuwarden-notice").CombinedOutput()
	return string(out), err == nil
}

func (e *reclaimEnv) count(typ, container string) int {
	return len(e.events(audit.Filter{Type: typ, Container: container}))
}

// k8sEvent waits for an Event of reason on the allocation and returns its message.
func (e *reclaimEnv) k8sEvent(alloc, reason string) string {
	e.t.Helper()
	var msg string
	testutil.Eventually(e.t, 20*time.Second, "Event "+reason+" on "+alloc, func() bool {
		var list eventsv1.EventList
		if err := e.c.List(context.Background(), &list); err != nil {
			return false
		}
		for _, ev := range list.Items {
			if ev.Regarding.Name == alloc && ev.Reason == reason {
				msg = ev.Note
				return true
			}
		}
		return false
	})
	return msg
}

// hookSink is a webhook endpoint that keeps what it is sent.
type hookSink struct {
	url string
	mu  sync.Mutex
	got []notify.Notice
}

func (h *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var n notify.Notice
	if err := json.NewDecoder(r.Body).Decode(&n); err == nil {
		h.mu.Lock()
		h.got = append(h.got, n)
		h.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookSink) received(typ, container string) []notify.Notice {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []notify.Notice
	for _, n := range h.got {
		if n.Type == typ && n.Container == container {
			out = append(out, n)
		}
	}
	return out
}

func TestIdleContainerIsWarnedThenStoppedAndReleased(t *testing.T) {
	e := newReclaimEnv(t)
	e.policy(idlePolicy("idle-ada", "ada", gpuwardenv1alpha1.ModeEnforce, e.hook.url))
	id, _ := e.gpuContainer("ada-nb", "ada", "sleep", "3600")

	warn := e.waitEvent(audit.TypeLifecycleIdleWarning, id)
	if warn.User != "ada" || !strings.Contains(warn.Details["reason"].(string), "will be stopped at") {
		t.Errorf("idle warning record: user %q, details %v", warn.User, warn.Details)
	}
	testutil.Eventually(t, 10*time.Second, "the notice file inside the container", func() (bool, string) {
		text, ok := e.notice(id)
		return ok && strings.Contains(text, "WARNING") && strings.Contains(text, "ada-nb"), text
	})
	testutil.Eventually(t, 10*time.Second, "the webhook told", func() bool { return len(e.hook.received(audit.TypeLifecycleIdleWarning, "ada-nb")) == 1 })
	if msg := e.k8sEvent("ada-nb", reasons.EventIdleWarning); !strings.Contains(msg, "ada-nb of ada") || !strings.Contains(msg, "stop at") {
		t.Errorf("IdleWarning Event: %q", msg)
	}
	if e.state(id) != "running" {
		t.Fatalf("stopped before its deadline: %s", e.state(id))
	}

	e.waitEvent(audit.TypeLifecycleIdleStop, id)
	a := e.get("ada-nb")
	if a.Status.Idle == nil || a.Status.Idle.Since == nil {
		t.Fatalf("no idle state in the status: %+v", a.Status)
	}
	testutil.Eventually(t, 20*time.Second, "the container stopped", func() bool { return e.state(id) == "exited" })
	e.k8sEvent("ada-nb", reasons.EventIdleStopped)
	testutil.Eventually(t, 10*time.Second, "the webhook told of the stop", func() bool { return len(e.hook.received(audit.TypeLifecycleIdleStop, "ada-nb")) == 1 })
	// The stop notice's stopAt is the sample that decided it.
	deadline := a.Status.Idle.Since.Add(8 * time.Second)
	delay := e.hook.received(audit.TypeLifecycleIdleStop, "ada-nb")[0].StopAt.Sub(deadline)
	t.Logf("delay from the idle deadline to the stop: %s (sample interval %s; the container then has stopGracePeriod to exit)", delay, sampleEvery)
	if delay < 0 || delay > sampleEvery+100*time.Millisecond {
		t.Errorf("stopped %s after its deadline; want within one sample interval (%s)", delay, sampleEvery)
	}
	// gpuHoldAfterStop (2s), then the GPUs go back.
	e.waitPhase("ada-nb", gpuwardenv1alpha1.PhaseReleased)
	if n := e.count(audit.TypeLifecycleIdleWarning, id); n != 1 {
		t.Errorf("%d idle warnings; want one at each fraction (one fraction)", n)
	}
}

func TestBusyContainersAreLeftAlone(t *testing.T) {
	e := newReclaimEnv(t)
	e.policy(idlePolicy("idle-bo", "bo", gpuwardenv1alpha1.ModeEnforce, ""))
	gpuBusy, a := e.gpuContainer("bo-train", "bo", "sleep", "3600")
	cpuBusy, _ := e.gpuContainer("bo-cpu", "bo", "sh", "-c", "while :; do :; done")
	e.setGPUs("devices: {\"" + a.Status.Devices[0].UUID + "\": {utilization: 97}}\n")
	testutil.Consistently(t, 12*time.Second, "busy containers are neither warned nor stopped", func() (bool, string) {
		n := e.count(audit.TypeLifecycleIdleWarning, "") + e.count(audit.TypeLifecycleIdleStop, "")
		return n == 0 && e.state(gpuBusy) == "running" && e.state(cpuBusy) == "running", fmt.Sprintf("%d idle records", n)
	})
	// The control file makes the GPU idle: now it is warned; the CPU loop still is not.
	e.setGPUs("")
	e.waitEvent(audit.TypeLifecycleIdleWarning, gpuBusy)
	if n := e.count(audit.TypeLifecycleIdleWarning, cpuBusy); n != 0 {
		t.Errorf("a container busy on its CPU was warned %d times", n)
	}
}

func TestRuntimeLimitStopsAndDoesNotRemove(t *testing.T) {
	e := newReclaimEnv(t)
	e.policy(testutil.MakePolicy("runtime-cy").Users("cy").MaxRuntime(6 * time.Second).RuntimeWarnAt("0.5").StopGracePeriod(time.Second))
	id, _ := e.gpuContainer("cy-long", "cy", "sh", "-c", "while :; do :; done")
	e.waitEvent(audit.TypeLifecycleRuntimeWarning, id)
	e.waitEvent(audit.TypeLifecycleRuntimeStop, id)
	testutil.Eventually(t, 20*time.Second, "stopped", func() bool { return e.state(id) == "exited" })
	testutil.Consistently(t, 3*time.Second, "stopped, not removed", func() bool { return e.exists(id) })
	e.k8sEvent("cy-long", reasons.EventRuntimeWarning)
}

func TestDryRunTouchesNothing(t *testing.T) {
	e := newReclaimEnv(t)
	e.policy(idlePolicy("idle-di", "di", gpuwardenv1alpha1.ModeDryRun, e.hook.url))
	id, _ := e.gpuContainer("di-nb", "di", "sleep", "3600")
	would := e.waitEvent(audit.TypeLifecycleWouldStop, id)
	if would.Details["mode"] != "DryRun" || !strings.Contains(would.Details["reason"].(string), "idle") {
		t.Errorf("would_stop record: %v", would.Details)
	}
	testutil.Consistently(t, 4*time.Second, "still running, no notice, nothing posted", func() (bool, string) {
		text, ok := e.notice(id)
		return e.state(id) == "running" && !ok && len(e.hook.received(audit.TypeLifecycleIdleWarning, "di-nb")) == 0, text
	})
	if n := e.count(audit.TypeLifecycleWouldStop, id); n != 1 {
		t.Errorf("%d would_stop records; want one", n)
	}
	if n := e.count(audit.TypeLifecycleIdleStop, id); n != 0 {
		t.Errorf("DryRun recorded a stop")
	}
}

func TestRestartMidStreakKeepsTheIdleTime(t *testing.T) {
	e := newReclaimEnv(t)
	p := idlePolicy("idle-eve", "eve", gpuwardenv1alpha1.ModeEnforce, "").IdleTimeout(12 * time.Second)
	p.Spec.Idle.WarnAtFractions = []gpuwardenv1alpha1.Fraction{"0.25"}
	e.policy(p)
	id, _ := e.gpuContainer("eve-nb", "eve", "sleep", "3600")
	e.waitEvent(audit.TypeLifecycleIdleWarning, id)
	before := e.get("eve-nb").Status.Idle
	if before == nil || before.Since == nil {
		t.Fatal("no idle state kept")
	}
	e.restart(func() {})
	e.waitEvent(audit.TypeLifecycleIdleStop, id)
	after := e.get("eve-nb").Status.Idle
	if after == nil || after.Since == nil || !after.Since.Equal(before.Since) {
		t.Errorf("the idle start moved across the restart: %v → %v", before.Since, after)
	}
	if n := e.count(audit.TypeLifecycleIdleWarning, id); n != 1 {
		t.Errorf("%d idle warnings across a restart; want the one given before it", n)
	}
}

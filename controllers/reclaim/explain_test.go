package reclaim

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/docker/dockertest"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestExplainSaysWhyAStoppedContainerStopped: explain of a container gpuwarden stopped says
// so, when and why; and for any stopped container, when its GPUs go back (or that its hold
// has passed) and when it will be removed.
func TestExplainSaysWhyAStoppedContainerStopped(t *testing.T) {
	id := strings.Repeat("ab", 32)
	labels := map[string]string{gpuwardenv1alpha1.LabelUser: "dee", gpuwardenv1alpha1.LabelAllocation: "dee-1"}
	running := docker.Container{ID: id, Name: "train", State: docker.StateRunning, StartedAt: t0.Add(-time.Hour), Labels: labels}
	policy := testutil.MakePolicy("lab").GPUHoldAfterStop(15 * time.Minute).RemoveAfterStop(30 * time.Minute).Obj()
	a := testutil.MakeAllocation("dee-1").User("dee").Node("n1").Bound("GPU-0").Attached(id).Obj()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(policy, a).Build()
	clk := clocktesting.NewFakeClock(t0)
	eng := dockertest.New(running)
	store := containerstore.New()
	acts := &actions.Actions{Client: c, Engine: eng, Store: store, Groups: resolve.StaticGroups{}, Clock: clk,
		Recorder: events.NewFakeRecorder(10), Audit: &testutil.AuditRecorder{}}
	p, err := acts.Policy(context.Background(), running, "dee")
	if err != nil {
		t.Fatal(err)
	}
	if err := acts.Stop(context.Background(), running, "dee", a, p, gpuwardenv1alpha1.ModeEnforce, "IdleStopped", "idle: Idle for 30m0s, past its idle timeout of 30m0s set by ContainerPolicy lab"); err != nil {
		t.Fatal(err)
	}
	stopped := running
	stopped.State, stopped.FinishedAt = docker.StateExited, t0
	store.Replace([]docker.Container{stopped}, t0)
	e := &Explainer{Reclaim: &Reclaimer{}, Store: store, Owners: &containerstore.Owners{}, Actions: acts, Client: c, Interval: time.Minute}
	explain := func() string {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, ExplainPath+"?name=train", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("explain: %d %s", rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	got := explain()
	for _, want := range []string{
		"Stopped by gpuwarden at 2026-11-20T09:00:00Z: idle: Idle for 30m0s",
		"Its GPUs go back at 2026-11-20T09:15:00Z (gpuHoldAfterStop, set by ContainerPolicy lab).",
		"It will be removed at 2026-11-20T09:30:00Z (removeAfterStop, set by ContainerPolicy lab).",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("explain lacks %q:\n%s", want, got)
		}
	}
	clk.Step(20 * time.Minute)
	got = explain()
	if !strings.Contains(got, "Its GPU hold (15m0s) has passed: allocation dee-1 gives its GPUs back.") || strings.Contains(got, "Its GPUs go back at") {
		t.Errorf("20 minutes after the stop, explain does not say the hold has passed:\n%s", got)
	}
}

// TestExplainNamesAnOverriddenExemption: explain of a devcontainer whose exemption from the
// idle timeout a per-user policy of higher precedence cancels says which policy's exemption
// is overridden by which, and the timeout that applies instead.
func TestExplainNamesAnOverriddenExemption(t *testing.T) {
	id := strings.Repeat("cd", 32)
	dev := docker.Container{ID: id, Name: "bob-dev", State: docker.StateRunning, StartedAt: t0.Add(-time.Hour),
		Labels: map[string]string{gpuwardenv1alpha1.LabelUser: "bob", "devcontainer.local_folder": "/home/bob/thesis"}}
	devcontainers := testutil.MakePolicy("devcontainers").WithSpec(gpuwardenv1alpha1.ContainerPolicySpec{Precedence: 20,
		Selector:  gpuwardenv1alpha1.PolicySelector{ContainerTypes: []gpuwardenv1alpha1.ContainerType{gpuwardenv1alpha1.ContainerTypeDevcontainer}},
		Unlimited: []gpuwardenv1alpha1.PolicyLimitName{gpuwardenv1alpha1.PolicyLimitIdleTimeout}}).Obj()
	bob := testutil.MakePolicy("bob-hours").Users("bob").IdleTimeout(2 * time.Hour).Obj()
	bob.Spec.Precedence = 50
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(devcontainers, bob).Build()
	store := containerstore.New()
	store.Replace([]docker.Container{dev}, t0)
	acts := &actions.Actions{Client: c, Engine: dockertest.New(dev), Store: store, Groups: resolve.StaticGroups{}, Clock: clocktesting.NewFakeClock(t0),
		Recorder: events.NewFakeRecorder(10), Audit: &testutil.AuditRecorder{}}
	e := &Explainer{Reclaim: &Reclaimer{}, Store: store, Owners: &containerstore.Owners{}, Actions: acts, Client: c, Interval: time.Minute}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, ExplainPath+"?name=bob-dev", nil))
	got := rec.Body.String()
	if !regexp.MustCompile(`idle\.timeout +2h0m0s +ContainerPolicy bob-hours`).MatchString(got) {
		t.Errorf("explain does not show bob-hours' timeout:\n%s", got)
	}
	for _, want := range []string{
		"Exemption overridden: ContainerPolicy devcontainers lifts idleTimeout (unlimited), but ContainerPolicy bob-hours, merged after it, sets idle.timeout to 2h0m0s: the exemption does not hold.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("explain lacks %q:\n%s", want, got)
		}
	}
}

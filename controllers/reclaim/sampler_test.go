package reclaim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/docker/dockertest"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/proc"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// samplerWorld is n running containers, each holding GPU i through a Bound allocation.
type samplerWorld struct {
	s      *Sampler
	audit  *testutil.AuditRecorder
	engine *dockertest.Engine
	clock  *clocktesting.FakeClock
	fake   *fakegpu.Server
	ids    []string
}

func newSamplerWorld(tb testing.TB, n int, policies ...client.Object) *samplerWorld {
	tb.Helper()
	fk, err := fakegpu.NewForNode("h100x8", "n1")
	if err != nil {
		tb.Fatal(err)
	}
	if n > 8 {
		fk.AddGPUs(n - 8)
	}
	clk := clocktesting.NewFakeClock(t0)
	var objs []client.Object
	var containers []docker.Container
	w := &samplerWorld{clock: clk, fake: fk}
	for i := range n {
		id := fmt.Sprintf("%064x", i+1)
		w.ids = append(w.ids, id)
		name := fmt.Sprintf("nb-%d", i)
		containers = append(containers, docker.Container{ID: id, Name: name, State: docker.StateRunning, StartedAt: t0.Add(-time.Hour),
			Labels: map[string]string{gpuwardenv1alpha1.LabelUser: "alice", gpuwardenv1alpha1.LabelAllocation: name}})
		objs = append(objs, testutil.MakeAllocation(name).User("alice").Node("n1").Phase(gpuwardenv1alpha1.PhaseBound).Attached(id).
			BoundAt(t0.Add(-time.Hour)).GPUEquivalents("1").
			BoundDevices(gpuwardenv1alpha1.BoundDevice{Index: int32(i), UUID: fk.UUIDs()[i], Weight: resource.MustParse("1")}).Obj())
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(append(objs, policies...)...).
		WithStatusSubresource(&gpuwardenv1alpha1.GPUAllocation{}).Build()
	eng := dockertest.New(containers...)
	eng.Now = clk.Now
	store := containerstore.New()
	list, _ := eng.List(context.Background())
	store.Replace(list, t0)
	rec, log := events.NewFakeRecorder(10000), &testutil.AuditRecorder{}
	acts := &actions.Actions{Client: c, Engine: eng, Store: store, Groups: resolve.StaticGroups{}, Clock: clk, Recorder: rec, Audit: log,
		Notices: &notify.Notifier{Engine: eng}}
	w.engine, w.audit = eng, log
	w.s = &Sampler{Client: c, Engine: eng, GPUs: gpu.NewNVML(fk), Store: store, NodeName: "n1", Clock: clk, Interval: time.Minute,
		Reclaim: &Reclaimer{Client: c, Engine: eng, Owners: &containerstore.Owners{}, NodeName: "n1", Clock: clk, Recorder: rec, Audit: log, Actions: acts}}
	return w
}

func (w *samplerWorld) round(tb testing.TB) {
	tb.Helper()
	if err := w.s.Round(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

func TestSamplerTakesRatesOverTheWindow(t *testing.T) {
	w := newSamplerWorld(t, 2)
	w.round(t) // the first sample: no window yet
	o, _ := w.s.Reclaim.observed(w.ids[0])
	if o.Samples[0].HasRates {
		t.Errorf("a first sample has rates: %+v", o.Samples[0])
	}
	// Over one minute: container 0 used 90 s of CPU (150 %), container 1 received 1.2 MB.
	w.engine.SetStats(w.ids[0], docker.Stats{CPUNanos: 90e9, NetworkRxBytes: 1 << 40})
	w.engine.SetStats(w.ids[1], docker.Stats{NetworkRxBytes: 1200000})
	// Counters jump from the first sample's zero: the CPU total of container 0 and the
	// cumulative bytes of container 1 both come from one minute here.
	w.clock.Step(time.Minute)
	w.round(t)
	o0, _ := w.s.Reclaim.observed(w.ids[0])
	o1, _ := w.s.Reclaim.observed(w.ids[1])
	s0, s1 := o0.Samples[1], o1.Samples[1]
	if !s0.HasRates || s0.CPUPercent != 150 {
		t.Errorf("container 0: CPU %.1f%%, want 150 (90 s of CPU in 60 s)", s0.CPUPercent)
	}
	if s1.NetworkBytesPerSecond != 20000 || s1.CPUPercent != 0 {
		t.Errorf("container 1: %.0f B/s, CPU %.1f%%; want 20000 B/s over the window", s1.NetworkBytesPerSecond, s1.CPUPercent)
	}
	// The same cumulative counters a minute later are no traffic at all: a rate, not a total.
	w.clock.Step(time.Minute)
	w.round(t)
	o1, _ = w.s.Reclaim.observed(w.ids[1])
	if got := o1.Samples[2].NetworkBytesPerSecond; got != 0 {
		t.Errorf("unchanged counters read as %.0f B/s", got)
	}
	if !o1.Samples[2].GPUKnown || o1.Samples[2].GPUPercent != 0 {
		t.Errorf("GPU signal %+v", o1.Samples[2])
	}
	w.fake.SetUtilization(1, 64, 0)
	w.clock.Step(time.Minute)
	w.round(t)
	o1, _ = w.s.Reclaim.observed(w.ids[1])
	if v, _ := lifecycle.Judge(o1.Samples[3], o1.Rules.Idle); o1.Samples[3].GPUPercent != 64 || v != lifecycle.Active {
		t.Errorf("GPU 1 at 64%%: sample %+v, verdict %s", o1.Samples[3], v)
	}
}

// failingEngine is the test engine with some answers replaced by errors.
type failingEngine struct {
	docker.Engine
	modTime, stop, stats error
	stops                int
}

func (f *failingEngine) Stats(ctx context.Context, id string) (docker.Stats, error) {
	if f.stats != nil {
		return docker.Stats{}, f.stats
	}
	return f.Engine.Stats(ctx, id)
}

func (f *failingEngine) ModTime(ctx context.Context, id, path string) (time.Time, error) {
	if f.modTime != nil {
		return time.Time{}, f.modTime
	}
	return f.Engine.ModTime(ctx, id, path)
}

func (f *failingEngine) Stop(ctx context.Context, id string, grace time.Duration) error {
	f.stops++
	if f.stop != nil {
		return f.stop
	}
	return f.Engine.Stop(ctx, id, grace)
}

// TestAFailedReadNeverStopsOrRecordsAStop: an engine error while an idle stop is decided
// holds the stop (the keep-alive file unread is no "no keep-alive"), and a stop the engine
// could not carry out (the container is gone) is never recorded as done.
func TestAFailedReadNeverStopsOrRecordsAStop(t *testing.T) {
	for _, tc := range []struct {
		name          string
		modTime, stop error
		wantStops     int
	}{
		{"the keep-alive file cannot be read", errors.New("Cannot connect to the Docker daemon"), nil, 0},
		{"the container is gone when it is stopped", nil, docker.ErrNotFound, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy := testutil.MakePolicy("idle").WithSpec(gpuwardenv1alpha1.ContainerPolicySpec{Idle: &gpuwardenv1alpha1.IdlePolicy{
				Timeout: testutil.Duration(10 * time.Minute), KeepAlive: &gpuwardenv1alpha1.KeepAlive{Path: "/workspace/.keep-alive"}}}).Obj()
			w := newSamplerWorld(t, 1, policy)
			eng := &failingEngine{Engine: w.engine, modTime: tc.modTime, stop: tc.stop}
			w.s.Engine, w.s.Reclaim.Engine, w.s.Reclaim.Actions.Engine = eng, eng, eng
			for range 20 {
				w.clock.Step(time.Minute)
				w.round(t)
			}
			if got := w.audit.Of(audit.TypeLifecycleIdleStop); len(got) != 0 {
				t.Errorf("recorded %d idle stops that did not happen: %+v", len(got), got)
			}
			if eng.stops != tc.wantStops {
				t.Errorf("the engine was asked to stop the container %d times, want %d", eng.stops, tc.wantStops)
			}
			if c, _ := w.engine.Container(w.ids[0]); c.State != docker.StateRunning {
				t.Errorf("the container is %s, want running", c.State)
			}
		})
	}
}

// BenchmarkSampleRound is one sample round over 200 running GPU containers (fake engine,
// fake GPUs, in-memory API), next to the reference: the 200 one-shot stats calls and the
// GPU read a round cannot do without.
func BenchmarkSampleRound(b *testing.B) {
	policy := &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "defaults"},
		Spec: gpuwardenv1alpha1.ContainerPolicySpec{Idle: &gpuwardenv1alpha1.IdlePolicy{Timeout: ptrDuration("9999h")}}}
	w := newSamplerWorld(b, 200, policy)
	for range 5 { // past the first samples' state writes: a steady round, as most are
		w.clock.Step(time.Minute)
		w.round(b)
	}
	b.Run("round", func(b *testing.B) {
		for b.Loop() {
			w.clock.Step(time.Minute)
			w.round(b)
		}
	})
	b.Run("reference", func(b *testing.B) {
		for b.Loop() {
			for _, id := range w.ids {
				if _, err := w.engine.Stats(context.Background(), id); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := w.s.GPUs.Samples(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func ptrDuration(s string) *gpuwardenv1alpha1.Duration {
	d := gpuwardenv1alpha1.Duration(s)
	return &d
}

// TestAGPUNVMLCannotReadIsNeverIdle: a held GPU with no sample (lost, NVML failing) gives
// no memory to compare, so the container is neither idle nor active, however long it lasts.
func TestAGPUNVMLCannotReadIsNeverIdle(t *testing.T) {
	w := newSamplerWorld(t, 1)
	w.fake.SetUtilization(0, 90, 0)
	w.fake.Lose(0, true)
	for i := range 5 {
		w.clock.Step(time.Minute)
		w.round(t)
		o, _ := w.s.Reclaim.observed(w.ids[0])
		last := o.Samples[len(o.Samples)-1]
		if v, _ := lifecycle.Judge(last, o.Rules.Idle); v == lifecycle.Idle {
			t.Fatalf("round %d: a GPU NVML cannot read counts as idle: %+v", i, last)
		}
	}
}

// TestAFailedStatsReadHoldsTheIdleStop: while the engine's stats cannot be read, the CPU and
// network of a container are unknown, and an idle stop that falls due meanwhile waits: the
// idle run is kept, and the first sample that can be judged idle again decides.
func TestAFailedStatsReadHoldsTheIdleStop(t *testing.T) {
	policy := testutil.MakePolicy("idle").WithSpec(gpuwardenv1alpha1.ContainerPolicySpec{Idle: &gpuwardenv1alpha1.IdlePolicy{
		Timeout: testutil.Duration(10 * time.Minute), WarnAtFractions: []gpuwardenv1alpha1.Fraction{"0.5"}}}).Obj()
	w := newSamplerWorld(t, 1, policy)
	eng := &failingEngine{Engine: w.engine}
	w.s.Engine, w.s.Reclaim.Engine, w.s.Reclaim.Actions.Engine = eng, eng, eng
	for range 4 { // idle from the 2nd sample (the 1st has no window): counting from the 4th
		w.clock.Step(time.Minute)
		w.round(t)
	}
	eng.stats = errors.New("Error response from daemon: context deadline exceeded")
	for range 20 {
		w.clock.Step(time.Minute)
		w.round(t)
	}
	if got := w.audit.Of(audit.TypeLifecycleIdleWarning); len(got) != 0 {
		t.Errorf("warned while the container's CPU and network could not be read: %+v", got)
	}
	if got := w.audit.Of(audit.TypeLifecycleIdleStop); len(got) != 0 || eng.stops != 0 {
		t.Fatalf("stopped while the container's CPU and network could not be read: %+v", got)
	}
	o, _ := w.s.Reclaim.observed(w.ids[0])
	if !o.Last.Unjudged || o.Last.State.Since.IsZero() {
		t.Errorf("the held stop: %+v; want the run kept and the stop held", o.Last)
	}
	e := &Explainer{Reclaim: w.s.Reclaim, Store: w.s.Store, Owners: &containerstore.Owners{}, Actions: w.s.Reclaim.Actions, Client: w.s.Client, Interval: time.Minute}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, ExplainPath+"?name=nb-0", nil))
	if !strings.Contains(rec.Body.String(), "held: the last sample could not be judged") {
		t.Errorf("explain does not say the stop is held:\n%s", rec.Body)
	}
	eng.stats = nil
	for range 2 { // the first read again has no window; the second judges idle
		w.clock.Step(time.Minute)
		w.round(t)
	}
	if got := w.audit.Of(audit.TypeLifecycleIdleStop); len(got) != 1 || eng.stops != 1 {
		t.Errorf("once the stats read again: %d stop records, %d stops; want the stop", len(got), eng.stops)
	}
}

// TestAProcessThatCannotBeReadCountsAsTheContainers: on a GPU other containers use too, the
// container's own share is summed from its processes; one whose container cannot be read
// (gone, /proc unreadable) counts as the container's, so a failed read never makes a
// container's GPU look idle.
func TestAProcessThatCannotBeReadCountsAsTheContainers(t *testing.T) {
	root := t.TempDir()
	own, other := strings.Repeat("a", 64), strings.Repeat("b", 64)
	for pid, id := range map[int]string{100: other, 300: own} {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::/system.slice/docker-"+id+".scope\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &Sampler{Proc: proc.FS{Root: root}}
	h := held{c: docker.Container{ID: own}, a: &gpuwardenv1alpha1.GPUAllocation{Status: gpuwardenv1alpha1.GPUAllocationStatus{
		Devices: []gpuwardenv1alpha1.BoundDevice{{UUID: "GPU-0"}}}}}
	for _, tc := range []struct {
		name  string
		procs []gpu.ProcessUtilization
		want  float64
	}{
		{"its own process and another's", []gpu.ProcessUtilization{{PID: 100, SMPercent: 40}, {PID: 300, SMPercent: 3}}, 3},
		{"another's and one that cannot be read", []gpu.ProcessUtilization{{PID: 100, SMPercent: 10}, {PID: 200, SMPercent: 70}}, 70},
	} {
		gpus := map[string]gpu.Sample{"GPU-0": {UUID: "GPU-0", UtilizationKnown: true, UtilizationPercent: 80, Processes: tc.procs}}
		known, _, percent, _ := s.gpuSignal(h, gpus)
		if !known || percent != tc.want {
			t.Errorf("%s: GPU %v%% (known %v), want %v%%", tc.name, percent, known, tc.want)
		}
	}
}

// TestAKeptAliveContainerIsWarnedOnlyOfTheRealStop: through the sampler and the allocation's
// status, a container whose keep-alive file is fresh gets no warning while the file
// postpones its stop; the warning that comes names the time the file lapses, and the stop
// time it announced is kept in the status.
func TestAKeptAliveContainerIsWarnedOnlyOfTheRealStop(t *testing.T) {
	policy := testutil.MakePolicy("idle").WithSpec(gpuwardenv1alpha1.ContainerPolicySpec{Idle: &gpuwardenv1alpha1.IdlePolicy{
		Timeout: testutil.Duration(10 * time.Minute), WarnAtFractions: []gpuwardenv1alpha1.Fraction{"0.5"},
		KeepAlive: &gpuwardenv1alpha1.KeepAlive{Path: "/workspace/.keep-alive", MaxAge: testutil.Duration(time.Hour)}}}).Obj()
	w := newSamplerWorld(t, 1, policy)
	w.engine.Touch(w.ids[0], "/workspace/.keep-alive", t0) // lapses at t0+1h
	for range 50 {
		w.clock.Step(time.Minute)
		w.round(t)
	}
	if got := w.audit.Of(audit.TypeLifecycleIdleWarning); len(got) != 0 {
		t.Fatalf("warned while the keep-alive file postponed the stop: %+v", got)
	}
	for range 10 {
		w.clock.Step(time.Minute)
		w.round(t)
	}
	lapse := t0.Add(time.Hour)
	warnings := w.audit.Of(audit.TypeLifecycleIdleWarning)
	if len(warnings) != 1 || !strings.Contains(fmt.Sprint(warnings[0].Details), lapse.UTC().Format(time.RFC3339)) {
		t.Fatalf("warnings %+v; want one, naming %s", warnings, lapse)
	}
	var a gpuwardenv1alpha1.GPUAllocation
	if err := w.s.Client.Get(context.Background(), client.ObjectKey{Name: "nb-0"}, &a); err != nil {
		t.Fatal(err)
	}
	if a.Status.Idle == nil || a.Status.Idle.WarnedFor == nil || !a.Status.Idle.WarnedFor.Equal(&metav1.MicroTime{Time: lapse}) {
		t.Errorf("status.idle = %+v; want warnedFor %s", a.Status.Idle, lapse)
	}
	if got := w.audit.Of(audit.TypeLifecycleIdleStop); len(got) != 1 {
		t.Errorf("%d stops by %s; want the stop when the file lapsed", len(got), w.clock.Now())
	}
}

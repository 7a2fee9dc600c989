package controllers_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/controllers/governance"
	"github.com/gpuwarden/gpuwarden/controllers/reclaim"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/docker/dockertest"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/telemetry"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// countingEngine counts every call to the Docker engine.
type countingEngine struct {
	docker.Engine
	calls atomic.Int64
}

func (e *countingEngine) List(ctx context.Context) ([]docker.Container, error) {
	e.calls.Add(1)
	return e.Engine.List(ctx)
}

func (e *countingEngine) Inspect(ctx context.Context, id string) (docker.Container, error) {
	e.calls.Add(1)
	return e.Engine.Inspect(ctx, id)
}

func (e *countingEngine) Stats(ctx context.Context, id string) (docker.Stats, error) {
	e.calls.Add(1)
	return e.Engine.Stats(ctx, id)
}

func (e *countingEngine) ModTime(ctx context.Context, id, path string) (time.Time, error) {
	e.calls.Add(1)
	return e.Engine.ModTime(ctx, id, path)
}

func (e *countingEngine) Ping(ctx context.Context) error {
	e.calls.Add(1)
	return e.Engine.Ping(ctx)
}

// countingGPUs counts every call to the GPU back end.
type countingGPUs struct {
	gpu.Backend
	calls atomic.Int64
}

func (g *countingGPUs) Devices(ctx context.Context) ([]gpu.Device, error) {
	g.calls.Add(1)
	return g.Backend.Devices(ctx)
}

func (g *countingGPUs) Samples(ctx context.Context) ([]gpu.Sample, error) {
	g.calls.Add(1)
	return g.Backend.Samples(ctx)
}

func (g *countingGPUs) Processes(ctx context.Context) ([]gpu.Process, error) {
	g.calls.Add(1)
	return g.Backend.Processes(ctx)
}

// TestAScrapeCallsNeitherNVMLNorDocker wires the collectors as Setup does, over a sampler
// round that read both NVML and Docker, and scrapes: a scrape serves what the rounds read.
func TestAScrapeCallsNeitherNVMLNorDocker(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	fk, err := fakegpu.NewForNode("h100x8", "n1")
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(t0)
	gpus := &countingGPUs{Backend: gpu.NewNVML(fk)}
	var objs []client.Object
	var running []docker.Container
	for i := range 2 {
		id, name := fmt.Sprintf("%064x", i+1), fmt.Sprintf("nb-%d", i)
		running = append(running, docker.Container{ID: id, Name: name, State: docker.StateRunning, StartedAt: t0.Add(-time.Hour),
			Labels: map[string]string{gpuwardenv1alpha1.LabelUser: "alice", gpuwardenv1alpha1.LabelAllocation: name}})
		objs = append(objs, testutil.MakeAllocation(name).User("alice").Node("n1").Bound(fk.UUIDs()[i]).Attached(id).
			GPUEquivalents("1").BoundAt(t0.Add(-time.Hour)).Obj())
	}
	objs = append(objs, testutil.MakePolicy("idle").WithSpec(gpuwardenv1alpha1.ContainerPolicySpec{
		Idle: &gpuwardenv1alpha1.IdlePolicy{Timeout: testutil.Duration(30 * time.Minute)}}).Obj())
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).WithStatusSubresource(&gpuwardenv1alpha1.GPUAllocation{}).Build()
	eng := &countingEngine{Engine: dockertest.New(running...)}
	store := containerstore.New()
	store.Replace(running, t0)
	owners := &containerstore.Owners{}
	rec, log := events.NewFakeRecorder(100), &testutil.AuditRecorder{}
	acts := &actions.Actions{Client: c, Engine: eng, Store: store, Groups: resolve.StaticGroups{}, Clock: clk, Recorder: rec, Audit: log}
	reclaimer := &reclaim.Reclaimer{Client: c, Engine: eng, Owners: owners, NodeName: "n1", Clock: clk, Recorder: rec, Audit: log, Actions: acts}
	sampler := &reclaim.Sampler{Client: c, Engine: eng, GPUs: gpus, Store: store, NodeName: "n1", Clock: clk, Interval: time.Minute, Reclaim: reclaimer, Audit: log}
	telemetrySampler := &telemetry.Sampler{GPUs: gpus, Interval: 15 * time.Second, Clock: clk}
	ctx := context.Background()
	if err := sampler.Round(ctx); err != nil {
		t.Fatal(err)
	}
	telemetrySampler.Round(ctx)

	gov := &governance.Collector{Client: c, NodeName: "n1", Clock: clk, Quotas: &allocation.QuotaBook{}, Store: store, Samples: reclaimer}
	reg := prometheus.NewRegistry()
	reg.MustRegister(gov, &telemetry.Collector{Sampler: telemetrySampler, Node: "n1", Holders: gov.Holders})
	dockerBefore, nvmlBefore := eng.calls.Load(), gpus.calls.Load()
	if dockerBefore == 0 || nvmlBefore == 0 {
		t.Fatalf("the rounds made %d Docker and %d NVML calls; the test needs both", dockerBefore, nvmlBefore)
	}
	var families int
	for range 3 {
		n, err := promtestutil.GatherAndCount(reg)
		if err != nil {
			t.Fatal(err)
		}
		families = n
	}
	if d, n := eng.calls.Load()-dockerBefore, gpus.calls.Load()-nvmlBefore; d != 0 || n != 0 {
		t.Errorf("3 scrapes made %d Docker and %d NVML calls; a scrape serves the last rounds' readings", d, n)
	}
	// The scrape did show what the rounds read, containers included.
	got, err := promtestutil.GatherAndCount(reg, "gpuwarden_container_idle_seconds", "DCGM_FI_DEV_GPU_UTIL")
	if err != nil {
		t.Fatal(err)
	}
	if got < 2+8 || families == 0 {
		t.Errorf("the scrape has %d container idle and GPU utilisation series, want the 2 containers' and the 8 GPUs'", got)
	}
}

package governance

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/telemetry"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// GoldenExposition is the golden file of /metrics; config/grafana's and config/prometheus'
// tests look every metric they use up in it.
const GoldenExposition = "testdata/metrics.golden.prom"

// metricsWorld is node n1 with the h100-mig fake GPUs: mia's notebook holds GPU 0 (busy,
// hot), bo's job a 1g.10gb slice of GPU 4, cy waits, di was refused, GPU 2 has an XID.
type metricsWorld struct {
	fake    *fakegpu.Server
	clock   *clocktesting.FakeClock
	sampler *telemetry.Sampler
	gov     *Collector
	calls   *countingGPUs
}

// lastSamples are the containers' last samples, by ID.
type lastSamples map[string]lastSample

type lastSample struct {
	sample  lifecycle.Sample
	state   lifecycle.Verdict
	idleFor time.Duration
}

func (l lastSamples) Latest(id string) (lifecycle.Sample, lifecycle.Verdict, time.Duration, bool) {
	s, ok := l[id]
	return s.sample, s.state, s.idleFor, ok
}

// countingGPUs counts the back end's calls.
type countingGPUs struct {
	gpu.Backend
	calls int
}

func (c *countingGPUs) Samples(ctx context.Context) ([]gpu.Sample, error) {
	c.calls++
	return c.Backend.Samples(ctx)
}

func (c *countingGPUs) Devices(ctx context.Context) ([]gpu.Device, error) {
	c.calls++
	return c.Backend.Devices(ctx)
}

func (c *countingGPUs) Processes(ctx context.Context) ([]gpu.Process, error) {
	c.calls++
	return c.Backend.Processes(ctx)
}

func newMetricsWorld(tb testing.TB) *metricsWorld {
	tb.Helper()
	fk, err := fakegpu.NewForNode("h100-mig", "n1")
	if err != nil {
		tb.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(t0)
	fk.SetClock(clk.Now)
	ctl, err := fakegpu.ParseControl([]byte(`devices:
  "0": {utilization: 97, memoryUtilization: 40, memoryUsedMiB: 30000, temperature: 91, power: 650}
  "2": {xid: 79}
  "4:1": {memoryUsedMiB: 5000}
`))
	if err != nil {
		tb.Fatal(err)
	}
	backend := gpu.NewNVML(fk)
	if _, err := backend.Devices(context.Background()); err != nil { // registers for XID events
		tb.Fatal(err)
	}
	if err := fk.Apply(ctl); err != nil {
		tb.Fatal(err)
	}
	clk.Step(10 * time.Second) // 10 s at 650 W on GPU 0
	objs := []client.Object{}
	for i, uuid := range fk.UUIDs() {
		g := &gpuwardenv1alpha1.GPU{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n1-gpu-%d", i), Labels: map[string]string{gpuwardenv1alpha1.LabelNode: "n1"}},
			Spec:   gpuwardenv1alpha1.GPUSpec{NodeName: "n1", Index: int32(i)},
			Status: gpuwardenv1alpha1.GPUStatus{UUID: uuid, Model: "NVIDIA H100 80GB HBM3", Health: gpuwardenv1alpha1.HealthHealthy}}
		if i == 2 {
			g.Status.Health, g.Status.HealthMessage = gpuwardenv1alpha1.HealthUnhealthy, "XID 79 reported: the GPU needs a reset"
		}
		for j, m := range fk.MIGUUIDs(i) {
			g.Status.MIGInstances = append(g.Status.MIGInstances, gpuwardenv1alpha1.MIGInstance{UUID: m, Profile: "1g.10gb", GPUInstanceID: int32(j + 1)})
		}
		objs = append(objs, g)
	}
	bound := func(name, user, container string, eq string, dev gpuwardenv1alpha1.BoundDevice) *gpuwardenv1alpha1.GPUAllocation {
		return testutil.MakeAllocation(name).Created(t0.Add(-time.Hour)).User(user).Node("n1").Phase(gpuwardenv1alpha1.PhaseBound).
			Attached(container).GPUEquivalents(eq).BoundDevices(dev).Obj()
	}
	objs = append(objs,
		bound("mia-nb", "mia", "c1", "1", gpuwardenv1alpha1.BoundDevice{Index: 0, UUID: fk.UUIDs()[0], Weight: resource.MustParse("1")}),
		bound("bo-job", "bo", "c2", "0.142857", gpuwardenv1alpha1.BoundDevice{Index: 4, UUID: fk.MIGUUIDs(4)[1], MIGProfile: "1g.10gb", Weight: resource.MustParse("0.142857")}),
		testutil.MakeAllocation("cy-wait").Created(t0.Add(-5*time.Minute)).User("cy").Node("n1").
			Phase(gpuwardenv1alpha1.PhasePending).Reason(gpuwardenv1alpha1.ReasonNoCapacity).Obj(),
		testutil.MakeAllocation("di-big").User("di").Node("n1").Phase(gpuwardenv1alpha1.PhaseRejected).Reason(gpuwardenv1alpha1.ReasonQuotaExceeded).Obj(),
		// Another node's allocation is that node's to report.
		bound("far", "eve", "c9", "1", gpuwardenv1alpha1.BoundDevice{Index: 0, UUID: "GPU-elsewhere", Weight: resource.MustParse("1")}),
	)
	objs[len(objs)-1].(*gpuwardenv1alpha1.GPUAllocation).Spec.NodeName = "n2"
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).Build()
	store := containerstore.New()
	store.Replace([]docker.Container{
		{ID: "c1", Name: "mia-notebook", State: docker.StateRunning},
		{ID: "c2", Name: "bo-train", State: docker.StateRunning},
	}, t0)
	samples := lastSamples{
		"c1": {sample: lifecycle.Sample{Time: t0, GPUKnown: true, GPUPercent: 97}, state: lifecycle.Active},
		"c2": {sample: lifecycle.Sample{Time: t0, GPUMemoryBytes: 5000 << 20}, state: lifecycle.Idle, idleFor: 20 * time.Minute},
	}
	quotas := &allocation.QuotaBook{}
	quotas.Set(map[string]allocation.Limit[float64]{"mia": {Set: true, Value: 2}, "bo": {Set: true, Unlimited: true}})
	calls := &countingGPUs{Backend: backend}
	w := &metricsWorld{fake: fk, clock: clk, calls: calls,
		sampler: &telemetry.Sampler{GPUs: calls, Interval: 15 * time.Second, Clock: clk},
		gov:     &Collector{Client: c, NodeName: "n1", Clock: clk, Quotas: quotas, Store: store, Samples: samples}}
	w.sampler.Round(context.Background())
	return w
}

func (w *metricsWorld) registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(w.gov, &telemetry.Collector{Sampler: w.sampler, Node: "n1", Holders: w.gov.Holders})
	return reg
}

// exposition is the text /metrics serves for reg.
func exposition(tb testing.TB, reg prometheus.Gatherer, normalise bool) string {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	for _, mf := range families {
		if normalise {
			zero(mf)
		}
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			tb.Fatal(err)
		}
	}
	return buf.String()
}

// zero clears what depends on other tests or on timing: the process-wide counters and
// histograms are in the golden file by name, type and labels.
func zero(mf *dto.MetricFamily) {
	for _, m := range mf.Metric {
		switch {
		case m.Counter != nil:
			m.Counter.Value, m.Counter.CreatedTimestamp = new(float64), nil
		case m.Gauge != nil:
			m.Gauge.Value = new(float64)
		case m.Histogram != nil:
			m.Histogram.SampleCount, m.Histogram.SampleSum, m.Histogram.CreatedTimestamp = new(uint64), new(float64), nil
			for _, b := range m.Histogram.Bucket {
				b.CumulativeCount = new(uint64)
			}
		}
	}
}

var goVersion = regexp.MustCompile(`goversion="[^"]*"`)

func TestMetricsExpositionGolden(t *testing.T) {
	w := newMetricsWorld(t)
	got := exposition(t, w.registry(), false)
	// The process-wide series as a fresh process has them (other tests add children).
	process := prometheus.NewRegistry()
	metrics.Reset()
	telemetry.Metrics()
	metrics.UnmanagedByHolder.WithLabelValues("container", "fay", "fay-miner", w.fake.UUIDs()[5]) // one use, as a scan finds it
	log, err := audit.Open(audit.Options{Path: filepath.Join(t.TempDir(), "events.jsonl"), Node: "n1", Source: "gpuwarden"})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	process.MustRegister(append(metrics.Collectors(), metrics.DockerUp, audit.Collector{W: log})...)
	got += exposition(t, process, true)
	got = goVersion.ReplaceAllString(got, `goversion="go"`)
	if *update {
		if err := os.WriteFile(GoldenExposition, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(GoldenExposition)
	if err != nil {
		t.Fatalf("%v (go test ./controllers/governance -run Golden -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("/metrics (-golden,+got); go test ./controllers/governance -run Golden -update rewrites it:\n%s", diff)
	}
	gpu0, gpu4 := w.fake.UUIDs()[0], w.fake.UUIDs()[4]
	base := func(index, uuid string) []string {
		return []string{"gpu", index, "UUID", uuid, "pci_bus_id", "00000000:0" + index + ":00.0", "device", "nvidia" + index,
			"modelName", "NVIDIA H100 80GB HBM3", "Hostname", "n1", "DCGM_FI_DRIVER_VERSION", "550.54.15"}
	}
	mia := []string{"user", "mia", "container", "mia-notebook", "allocation", "mia-nb"}
	bo := []string{"user", "bo", "container", "bo-train", "allocation", "bo-job"}
	mig := []string{"GPU_I_PROFILE", "1g.10gb", "GPU_I_ID", "2"}
	for _, want := range []string{
		// A held GPU names its holder; a whole GPU carries no GPU_I_* labels.
		series("DCGM_FI_DEV_GPU_UTIL", "97", append(base("0", gpu0), mia...)...),
		series("DCGM_FI_DEV_POWER_USAGE", "650", append(base("0", gpu0), mia...)...),
		series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "6.5e+06", append(base("0", gpu0), mia...)...), // 650 W for 10 s
		series("DCGM_FI_DEV_GPU_TEMP", "91", append(base("0", gpu0), mia...)...),
		// A held MIG slice: its memory, the physical GPU's UUID and index, GPU_I_* and the holder.
		series("DCGM_FI_DEV_FB_USED", "5000", append(append(base("4", gpu4), mig...), bo...)...),
		series("DCGM_FI_DEV_XID_ERRORS", "79", append(base("2", w.fake.UUIDs()[2]), "err_code", "79", "err_msg", "GPU has fallen off the bus")...),
		series("gpuwarden_gpu_allocated", "1", append([]string{"gpu", "4", "UUID", w.fake.MIGUUIDs(4)[1], "GPU_I_PROFILE", "1g.10gb", "GPU_I_ID", "2"}, bo...)...),
		series("gpuwarden_allocation_queue_oldest_wait_seconds", "310"), // created 5 min before t0, read 10 s after
		series("gpuwarden_user_gpu_equivalents_quota", "+Inf", "user", "bo"),
		series("gpuwarden_container_idle_seconds", "1200", append(bo, "state", "idle")...),
		series("gpuwarden_container_gpu_utilization_percent", "97", mia...),
		series("gpuwarden_gpu_equivalents_capacity", "7"),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, absent := range []string{"DCGM_FI_DEV_GPU_UTIL{" + labelText(append(base("4", gpu4), mig...)...), series("DCGM_FI_DEV_GPU_UTIL", "0", base("4", gpu4)...), "GPU-elsewhere", `user="eve"`} {
		if strings.Contains(got, absent) {
			t.Errorf("/metrics has %s: no utilisation is made up for a MIG instance or a partitioned GPU, and another node's allocations are not this node's", absent)
		}
	}
	promtool := testutil.Tool(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader([]byte(got))
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState.ExitCode() != 3 { // 3: lint problems only
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// dcgm-exporter's names, types and labels (UUID, modelName, …; counters without
		// _total) are the contract its dashboards rely on; gpuwarden's own follow the
		// Prometheus conventions.
		if line != "" && !strings.HasPrefix(line, "DCGM_") {
			t.Errorf("promtool check metrics: %s", line)
		}
	}
}

// labelText is the exposition of label pairs, sorted by name as client_golang writes them.
func labelText(kv ...string) string {
	pairs := make([]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		pairs = append(pairs, kv[i]+"=\""+kv[i+1]+"\"")
	}
	slices.Sort(pairs)
	return strings.Join(pairs, ",")
}

// series is one line of the exposition.
func series(name, value string, kv ...string) string {
	if len(kv) == 0 {
		return name + " " + value + "\n"
	}
	return name + "{" + labelText(kv...) + "} " + value + "\n"
}

func TestAHungNVMLCallLeavesMetricsServedAndStale(t *testing.T) {
	fk, err := fakegpu.NewForNode("h100x8", "n1")
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(t0)
	hang := &hangingGPUs{Backend: gpu.NewNVML(fk), release: make(chan struct{}), entered: make(chan struct{}, 1)}
	s := &telemetry.Sampler{GPUs: hang, Interval: 15 * time.Second, Clock: clk}
	s.Round(context.Background()) // a first reading
	reg := prometheus.NewRegistry()
	reg.MustRegister(&telemetry.Collector{Sampler: s, Node: "n1"})
	hang.hang.Store(true)
	done := make(chan struct{})
	go func() { s.Round(context.Background()); close(done) }()
	<-hang.entered
	clk.Step(2 * time.Minute)
	scraped := make(chan string, 1)
	go func() { scraped <- exposition(t, reg, false) }()
	var out string
	select {
	case out = <-scraped:
	case <-time.After(10 * time.Second):
		t.Fatal("/metrics hangs while an NVML call does")
	}
	if !strings.Contains(out, "gpuwarden_gpu_sample_age_seconds 120\n") || !strings.Contains(out, "DCGM_FI_DEV_GPU_TEMP{") {
		t.Errorf("while NVML hangs, /metrics must serve the last reading and say it is 120 s old:\n%s", out)
	}
	close(hang.release)
	<-done
	if out := exposition(t, reg, false); !strings.Contains(out, "gpuwarden_gpu_sample_age_seconds 0\n") {
		t.Errorf("after the call returns the reading is fresh again:\n%s", out)
	}
}

// hangingGPUs blocks Samples, once hang is set, until release is closed.
type hangingGPUs struct {
	gpu.Backend
	hang    atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (h *hangingGPUs) Samples(ctx context.Context) ([]gpu.Sample, error) {
	if h.hang.Load() {
		h.entered <- struct{}{}
		<-h.release
	}
	return h.Backend.Samples(ctx)
}

// BenchmarkScrape is one scrape of /metrics on a node with 8 GPUs in 56 MIG instances and
// 200 running GPU containers (200 Bound allocations over the 56 slices), through promhttp,
// next to the same scrape of a bare controller-runtime registry (Go, process and
// controller-runtime's own series). The target is a p99 under 20 ms.
func BenchmarkScrape(b *testing.B) {
	fk, err := fakegpu.NewForNode("h100x8", "n1")
	if err != nil {
		b.Fatal(err)
	}
	for i := range 8 {
		fk.Partition(i, fakegpu.H100MIG1g, fakegpu.H100MIG1g, fakegpu.H100MIG1g, fakegpu.H100MIG1g, fakegpu.H100MIG1g, fakegpu.H100MIG1g, fakegpu.H100MIG1g)
	}
	clk := clocktesting.NewFakeClock(t0)
	var slots []gpuwardenv1alpha1.BoundDevice
	var objs []client.Object
	for i, uuid := range fk.UUIDs() {
		g := &gpuwardenv1alpha1.GPU{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n1-gpu-%d", i), Labels: map[string]string{gpuwardenv1alpha1.LabelNode: "n1"}},
			Spec: gpuwardenv1alpha1.GPUSpec{NodeName: "n1", Index: int32(i)}, Status: gpuwardenv1alpha1.GPUStatus{UUID: uuid, Health: gpuwardenv1alpha1.HealthHealthy}}
		for j, m := range fk.MIGUUIDs(i) {
			g.Status.MIGInstances = append(g.Status.MIGInstances, gpuwardenv1alpha1.MIGInstance{UUID: m, Profile: "1g.10gb", GPUInstanceID: int32(j + 1)})
			slots = append(slots, gpuwardenv1alpha1.BoundDevice{Index: int32(i), UUID: m, MIGProfile: "1g.10gb", Weight: resource.MustParse("0.142857")})
		}
		objs = append(objs, g)
	}
	store := containerstore.New()
	var containers []docker.Container
	samples := lastSamples{}
	for i := range 200 {
		id, name := fmt.Sprintf("%064x", i+1), fmt.Sprintf("nb-%d", i)
		objs = append(objs, testutil.MakeAllocation(name).User(fmt.Sprintf("user%02d", i%40)).Node("n1").Phase(gpuwardenv1alpha1.PhaseBound).
			Attached(id).GPUEquivalents("0.142857").BoundDevices(slots[i%len(slots)]).Obj())
		containers = append(containers, docker.Container{ID: id, Name: name, State: docker.StateRunning})
		samples[id] = lastSample{sample: lifecycle.Sample{Time: t0, GPUMemoryBytes: 1 << 30}, state: lifecycle.Idle, idleFor: time.Minute}
	}
	store.Replace(containers, t0)
	c := &cacheReader{}
	for _, o := range objs {
		switch o := o.(type) {
		case *gpuwardenv1alpha1.GPU:
			c.gpus = append(c.gpus, *o)
		case *gpuwardenv1alpha1.GPUAllocation:
			c.allocs = append(c.allocs, *o)
		}
	}
	sampler := &telemetry.Sampler{GPUs: gpu.NewNVML(fk), Interval: 15 * time.Second, Clock: clk}
	sampler.Round(context.Background())
	quotas := &allocation.QuotaBook{}
	gov := &Collector{Client: c, NodeName: "n1", Clock: clk, Quotas: quotas, Store: store, Samples: samples}
	ours := prometheus.NewRegistry()
	metrics.Reset()
	ours.MustRegister(append(metrics.Collectors(), gov, &telemetry.Collector{Sampler: sampler, Node: "n1", Holders: gov.Holders})...)
	for name, g := range map[string]prometheus.Gatherer{
		"gpuwarden":               prometheus.Gatherers{crmetrics.Registry, ours},
		"bare-controller-runtime": crmetrics.Registry,
	} {
		b.Run(name, func(b *testing.B) {
			h := promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
			var took []time.Duration
			size := 0
			for b.Loop() {
				rec := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
				took = append(took, time.Since(start))
				if rec.Code != http.StatusOK {
					b.Fatalf("scrape: %d %s", rec.Code, rec.Body)
				}
				size = rec.Body.Len()
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(size)/1024, "KiB/scrape")
		})
	}
}

// cacheReader lists objects held in memory without copying them, as the manager's cache
// does with client.UnsafeDisableDeepCopy (the fake client's JSON round trip would be most of
// a benchmark's time).
type cacheReader struct {
	client.Reader
	gpus   []gpuwardenv1alpha1.GPU
	allocs []gpuwardenv1alpha1.GPUAllocation
}

func (c *cacheReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	switch l := list.(type) {
	case *gpuwardenv1alpha1.GPUList:
		l.Items = append(l.Items[:0], c.gpus...)
	case *gpuwardenv1alpha1.GPUAllocationList:
		l.Items = append(l.Items[:0], c.allocs...)
	default:
		return fmt.Errorf("cacheReader lists no %T", list)
	}
	return nil
}

// Series go with what they describe: a released allocation's, a stopped container's and a
// GPU that fell off the bus.
func TestSeriesOfWhatIsGoneAreDeleted(t *testing.T) {
	w := newMetricsWorld(t)
	reg := w.registry()
	before := exposition(t, reg, false)
	for _, want := range []string{`allocation="mia-nb"`, `gpuwarden_container_idle_seconds{allocation="bo-job"`, `DCGM_FI_DEV_GPU_TEMP{DCGM_FI_DRIVER_VERSION="550.54.15",Hostname="n1",UUID="` + w.fake.UUIDs()[3]} {
		if !strings.Contains(before, want) {
			t.Fatalf("the world lacks %s:\n%s", want, before)
		}
	}
	ctx := context.Background()
	a := &gpuwardenv1alpha1.GPUAllocation{}
	if err := w.gov.Client.(client.Client).Get(ctx, client.ObjectKey{Name: "mia-nb"}, a); err != nil {
		t.Fatal(err)
	}
	a.Status.Phase = gpuwardenv1alpha1.PhaseReleased
	if err := w.gov.Client.(client.Client).Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	delete(w.gov.Samples.(lastSamples), "c2") // bo's container stopped: the sampler forgets it
	w.fake.Lose(3, true)
	w.sampler.Round(ctx)
	after := exposition(t, reg, false)
	for _, line := range strings.Split(after, "\n") {
		if strings.Contains(line, `allocation="mia-nb"`) || (strings.HasPrefix(line, "DCGM_") && strings.Contains(line, `gpu="3"`)) {
			t.Errorf("/metrics still has %s", line)
		}
	}
	// The lost GPU stays in gpuwarden_gpu_health, which says so once the inventory has seen it.
	if strings.Contains(after, `gpuwarden_container_idle_seconds{allocation="bo-job"`) {
		t.Errorf("a stopped container's idle series is still there")
	}
}

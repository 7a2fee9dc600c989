package integration

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/controllers"
	"github.com/gpuwarden/gpuwarden/internal/controlplane/controlplanetest"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

const benchWorkers = 50

// boundWatcher tells waiters when an allocation is first seen in a phase (Bound).
type boundWatcher struct {
	mu      sync.Mutex
	waiters map[string]chan struct{}
	phase   gpuwardenv1alpha1.AllocationPhase
}

func watchBound(b *testing.B, ctx context.Context) *boundWatcher {
	return watchPhase(b, ctx, gpuwardenv1alpha1.PhaseBound)
}

func watchPhase(b *testing.B, ctx context.Context, phase gpuwardenv1alpha1.AllocationPhase) *boundWatcher {
	b.Helper()
	c, err := client.NewWithWatch(controlplanetest.Get(b).Config(), client.Options{Scheme: scheme.New()})
	if err != nil {
		b.Fatal(err)
	}
	w, err := c.Watch(ctx, &gpuwardenv1alpha1.GPUAllocationList{})
	if err != nil {
		b.Fatal(err)
	}
	bw := &boundWatcher{waiters: map[string]chan struct{}{}, phase: phase}
	go func() {
		for ev := range w.ResultChan() {
			a, ok := ev.Object.(*gpuwardenv1alpha1.GPUAllocation)
			if !ok || ev.Type == watch.Deleted || a.Status.Phase != phase {
				continue
			}
			bw.mu.Lock()
			if ch, ok := bw.waiters[a.Name]; ok {
				close(ch)
				delete(bw.waiters, a.Name)
			}
			bw.mu.Unlock()
		}
	}()
	return bw
}

func (bw *boundWatcher) expect(name string) <-chan struct{} {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	ch := make(chan struct{})
	bw.waiters[name] = ch
	return ch
}

// BenchmarkAllocation: 50 workers each create a 1-GPU allocation, wait for it to be Bound,
// delete it, and go again, against 64 simulated GPUs. Reported: create→Bound latency
// p50/p99 and binds/s. BenchmarkAPIRoundTrip is the reference: the same create, a status
// write by the benchmark itself, and the watch seeing it. The -One variants make one
// request at a time; BenchmarkAPIRoundTripUnthrottled is the reference without the client
// rate limits the controller runs with.
func BenchmarkAllocation(b *testing.B) { benchAllocation(b, benchWorkers) }

// BenchmarkAllocationOne is BenchmarkAllocation one request at a time.
func BenchmarkAllocationOne(b *testing.B) { benchAllocation(b, 1) }

func benchAllocation(b *testing.B, workers int) {
	c := allocationTest(b)
	q := testutil.MakeQuota("bench").Everyone().GPUEquivalents("1000").Obj()
	if err := c.Create(context.Background(), q); err != nil {
		b.Fatal(err)
	}
	fake, err := fakegpu.NewForNode("dgxa100", "bench")
	if err != nil {
		b.Fatal(err)
	}
	fake.AddGPUs(56)
	writes := &writeCounter{}
	cfg := rest.CopyConfig(controlplanetest.Get(b).Config())
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { writes.next = rt; return writes }
	stop := startManagerWith(b, cfg, controllers.Options{NodeName: "bench", GPUs: gpu.NewNVML(fake), Groups: resolve.StaticGroups{}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The inventory first: requests made before the GPUs are published would wait for
	// them, and publishing them is start-up's work, not binding's.
	testutil.Eventually(b, 30*time.Second, "the node's 64 GPUs published", func() bool {
		var gpus gpuwardenv1alpha1.GPUList
		if c.List(ctx, &gpus) != nil || len(gpus.Items) != 64 {
			return false
		}
		for _, g := range gpus.Items {
			if g.Status.UUID == "" {
				return false
			}
		}
		return true
	})
	bw := watchBound(b, ctx)
	before := writes.n.Load()
	binds := run(b, c, bw, workers, func(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) error { return nil })
	stop() // its last writes (the final releases) count too
	if binds > 0 {
		// The benchmark's own create and delete, and every write of the controller: the
		// reference makes three (create, status, delete).
		b.ReportMetric(2+float64(writes.n.Load()-before)/float64(binds), "writes/bind")
	}
}

// writeCounter counts the requests that write (neither GET nor a watch) through it.
type writeCounter struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (w *writeCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet {
		w.n.Add(1)
	}
	return w.next.RoundTrip(r)
}

// BenchmarkAPIRoundTrip is BenchmarkAllocation's reference without a controller, with the
// client limits the controller uses (the embedded control plane's admin config).
func BenchmarkAPIRoundTrip(b *testing.B) { benchRoundTrip(b, benchWorkers, false) }

// BenchmarkAPIRoundTripOne is the reference one request at a time.
func BenchmarkAPIRoundTripOne(b *testing.B) { benchRoundTrip(b, 1, false) }

// BenchmarkAPIRoundTripUnthrottled is the reference with no client rate limit at all.
func BenchmarkAPIRoundTripUnthrottled(b *testing.B) { benchRoundTrip(b, benchWorkers, true) }

func benchRoundTrip(b *testing.B, workers int, unthrottled bool) {
	c := allocationTest(b)
	if unthrottled {
		cfg := rest.CopyConfig(controlplanetest.Get(b).Config())
		cfg.QPS, cfg.Burst = -1, 0
		var err error
		if c, err = client.New(cfg, client.Options{Scheme: scheme.New()}); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bw := watchBound(b, ctx)
	_ = run(b, c, bw, workers, func(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) error {
		a.Status.Phase = gpuwardenv1alpha1.PhaseBound
		return c.Status().Update(ctx, a)
	})
}

// run measures; it returns the number of binds seen.
func run(b *testing.B, c client.Client, bw *boundWatcher, workers int, afterCreate func(context.Context, *gpuwardenv1alpha1.GPUAllocation) error) int {
	ctx := context.Background()
	var mu sync.Mutex
	var lat []time.Duration
	var next int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				mu.Lock()
				if next >= int64(b.N) {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				name := fmt.Sprintf("bench-%d-%d", w, i)
				user := fmt.Sprintf("user%02d", w)
				// Made as the gateway makes one: labelled with its user and node.
				a := testutil.MakeAllocation(name).User(user).Node("bench").GPUs(1).
					Label(gpuwardenv1alpha1.LabelUser, user).Label(gpuwardenv1alpha1.LabelNode, "bench").Obj()
				bound := bw.expect(name)
				t0 := time.Now()
				if err := c.Create(ctx, a); err != nil {
					b.Error(err)
					return
				}
				if err := afterCreate(ctx, a); err != nil {
					b.Error(err)
					return
				}
				select {
				case <-bound:
				case <-time.After(60 * time.Second):
					// The watch may have lost the event while the shared API server stalled
					// (it logs "Handler timeout"): what is stored decides.
					got := &gpuwardenv1alpha1.GPUAllocation{}
					if err := c.Get(ctx, client.ObjectKeyFromObject(a), got); err != nil || got.Status.Phase != bw.phase {
						b.Errorf("%s not bound after 60s (%v, phase %q)", name, err, got.Status.Phase)
						return
					}
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
				if err := c.Delete(ctx, a); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "binds/s")
	return len(lat)
}

package integration

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/controllers"
	"github.com/gpuwarden/gpuwarden/internal/controlplane/controlplanetest"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

const benchWorkers = 50

// boundWatcher tells waiters when an allocation is first seen in a phase (Bound).
type boundWatcher struct {
	mu      sync.Mutex
	waiters map[string]chan struct{}
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
	bw := &boundWatcher{waiters: map[string]chan struct{}{}}
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
// write by the benchmark itself, and the watch seeing it.
func BenchmarkAllocation(b *testing.B) {
	c := allocationTest(b)
	q := &gpuwardenv1alpha1.GPUQuota{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: gpuwardenv1alpha1.GPUQuotaSpec{
		Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectEveryone}},
		Limits:   gpuwardenv1alpha1.QuotaLimits{GPUEquivalents: ptr.To(resource.MustParse("1000"))}}}
	if err := c.Create(context.Background(), q); err != nil {
		b.Fatal(err)
	}
	fake, err := fakegpu.NewForNode("dgxa100", "bench")
	if err != nil {
		b.Fatal(err)
	}
	fake.AddGPUs(56)
	startManager(b, controllers.Options{NodeName: "bench", GPUs: gpu.NewNVML(fake), Groups: resolve.StaticGroups{}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bw := watchBound(b, ctx)
	run(b, c, bw, func(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) error { return nil })
}

// BenchmarkAPIRoundTrip is BenchmarkAllocation's reference without a controller.
func BenchmarkAPIRoundTrip(b *testing.B) {
	c := allocationTest(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bw := watchBound(b, ctx)
	run(b, c, bw, func(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) error {
		a.Status.Phase = gpuwardenv1alpha1.PhaseBound
		return c.Status().Update(ctx, a)
	})
}

func run(b *testing.B, c client.Client, bw *boundWatcher, afterCreate func(context.Context, *gpuwardenv1alpha1.GPUAllocation) error) {
	ctx := context.Background()
	var mu sync.Mutex
	var lat []time.Duration
	var next int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range benchWorkers {
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
				a := &gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: name},
					Spec: gpuwardenv1alpha1.GPUAllocationSpec{User: fmt.Sprintf("user%02d", w), NodeName: "bench",
						Request: gpuwardenv1alpha1.AllocationRequest{GPUs: ptr.To[int32](1)}}}
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
					b.Errorf("%s not bound after 60s", name)
					return
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
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "binds/s")
}

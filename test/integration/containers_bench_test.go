package integration

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/moby/moby/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// BenchmarkDockerRemoveToReleased: a container attached to a Bound allocation is removed
// through the Engine API; reported is the time until the allocation is seen Released
// (p50/p99). The reference, measured on the same removals, is the time until the engine's
// own destroy event reaches a bare events client: no watcher of Docker can be faster.
func BenchmarkDockerRemoveToReleased(b *testing.B) {
	host := dockerHost(b)
	e := newContainerEnv(b, host)
	api, err := client.New(client.WithHost(host))
	if err != nil {
		b.Fatal(err)
	}
	eng, err := docker.New(host)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	released := watchPhase(b, ctx, gpuwardenv1alpha1.PhaseReleased)
	events, _, err := eng.Events(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var lat, ref []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		name := fmt.Sprintf("rm-%d", i)
		a := e.allocate(name, "bench", 1)
		id := e.run("--label", "gpuwarden.io/user=bench", "--label", "gpuwarden.io/allocation="+name,
			"--gpus", "device="+a.Status.Devices[0].UUID, testImage(), "sleep", "3600")
		testutil.Eventually(b, 20*time.Second, "attached", func() bool { return e.get(name).Status.ContainerID == id })
		done := released.expect(name)
		b.StartTimer()
		t0 := time.Now()
		if _, err := api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil {
			b.Fatal(err)
		}
		for ev := range events {
			if ev.ID == id && ev.Action == "destroy" {
				ref = append(ref, time.Since(t0))
				break
			}
		}
		select {
		case <-done:
			lat = append(lat, time.Since(t0))
		case <-time.After(30 * time.Second):
			b.Fatalf("allocation %s not Released 30 s after docker rm", name)
		}
		b.StopTimer()
		if err := e.c.Delete(ctx, e.get(name)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	p := func(d []time.Duration, q float64) float64 {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds()) / 1000
	}
	b.ReportMetric(p(lat, 0.5), "p50-ms")
	b.ReportMetric(p(lat, 0.99), "p99-ms")
	b.ReportMetric(p(ref, 0.5), "ref-destroy-event-p50-ms")
	b.ReportMetric(p(ref, 0.99), "ref-destroy-event-p99-ms")
}

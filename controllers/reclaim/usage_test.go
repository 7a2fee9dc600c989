package reclaim

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// Over an hour and a half at 50% on GPU 0 and idle on GPU 1 (one GPU each): one gpu.usage
// record each at the hour, one more when the container stops holding its GPU.
func TestUsageIsWrittenHourlyAndWhenAContainerLetsGo(t *testing.T) {
	policy := &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "defaults"},
		Spec: gpuwardenv1alpha1.ContainerPolicySpec{Idle: &gpuwardenv1alpha1.IdlePolicy{Timeout: ptrDuration("9999h")}}}
	w := newSamplerWorld(t, 2, policy)
	log := &testutil.AuditRecorder{}
	w.s.Audit = log
	w.fake.SetUtilization(0, 50, 0)
	// t0 is 09:00; the first sample at 09:01 starts the stretch.
	for range 90 {
		w.clock.Step(time.Minute)
		w.round(t)
	}
	usage := func() []audit.Event {
		var out []audit.Event
		for _, e := range log.Events() {
			if e.Type == audit.TypeGPUUsage {
				out = append(out, e)
			}
		}
		return out
	}
	got := usage()
	if len(got) != 2 {
		t.Fatalf("%d gpu.usage records after 90 minutes; want one per container at 10:00: %+v", len(got), got)
	}
	for _, e := range got {
		d := e.Details
		if d["window_seconds"] != 59*60.0 || d["utilization_known_seconds"] != 59*60.0 {
			t.Errorf("%s: %v; want the 59 minutes from 09:01 to 10:00", d["allocation"], d)
		}
		switch d["allocation"] {
		case "nb-0":
			if d["used_gpu_seconds"] != 59*30.0 || d["idle_gpu_seconds"] != 0.0 || e.User != "alice" || d["container"] != "nb-0" {
				t.Errorf("nb-0 at 50%% of one GPU: %v", d)
			}
		case "nb-1":
			// Every sample is below the policy's thresholds: idle all along.
			if d["used_gpu_seconds"] != 0.0 || d["idle_gpu_seconds"] != 59*60.0 {
				t.Errorf("nb-1 at 0%%: %v", d)
			}
		}
	}
	// Container 0 stops: its stretch since 10:00 is written at the next round.
	if err := w.engine.Stop(context.Background(), w.ids[0], 0); err != nil {
		t.Fatal(err)
	}
	list, _ := w.engine.List(context.Background())
	w.s.Store.Replace(list, w.clock.Now())
	w.clock.Step(time.Minute)
	w.round(t)
	got = usage()
	if len(got) != 3 || got[2].Details["allocation"] != "nb-0" || got[2].Details["window_seconds"] != 30*60.0 {
		t.Errorf("after nb-0 stopped: %+v; want its 30 minutes since 10:00", got[2:])
	}
}

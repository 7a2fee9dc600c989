package reclaim

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/report"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// Over half an hour at 50% on GPU 0 and idle on GPU 1 (one GPU each): one gpu.usage record
// each at every UsagePeriod of the clock, one more when the container stops holding its GPU.
func TestUsageIsWrittenEveryPeriodAndWhenAContainerLetsGo(t *testing.T) {
	policy := &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "defaults"},
		Spec: gpuwardenv1alpha1.ContainerPolicySpec{Idle: &gpuwardenv1alpha1.IdlePolicy{Timeout: ptrDuration("9999h")}}}
	w := newSamplerWorld(t, 2, policy)
	log := &testutil.AuditRecorder{}
	w.s.Audit = log
	w.fake.SetUtilization(0, 50, 0)
	// t0 is 09:00; the first sample at 09:01 starts the stretch.
	for range 32 {
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
	// 09:05, 09:10, …, 09:30: six records each.
	if len(got) != 12 {
		t.Fatalf("%d gpu.usage records after 32 minutes; want one per container every 5 minutes: %+v", len(got), got)
	}
	for i, e := range got {
		d := e.Details
		want := 5 * 60.0
		if i < 2 {
			want = 4 * 60.0 // from the first sample at 09:01
		}
		if d["window_seconds"] != want || d["utilization_known_seconds"] != want {
			t.Errorf("record %d of %s: %v; want %v seconds", i, d["allocation"], d, want)
		}
		switch d["allocation"] {
		case "nb-0":
			if d["used_gpu_seconds"] != want/2 || d["idle_gpu_seconds"] != 0.0 || e.User != "alice" || d["container"] != "nb-0" {
				t.Errorf("nb-0 at 50%% of one GPU: %v", d)
			}
		case "nb-1":
			// Every sample is below the policy's thresholds: idle all along.
			if d["used_gpu_seconds"] != 0.0 || d["idle_gpu_seconds"] != want {
				t.Errorf("nb-1 at 0%%: %v", d)
			}
		}
	}
	// Container 0 stops: its stretch since 09:30 is written at the next round.
	if err := w.engine.Stop(context.Background(), w.ids[0], 0); err != nil {
		t.Fatal(err)
	}
	list, _ := w.engine.List(context.Background())
	w.s.Store.Replace(list, w.clock.Now())
	w.clock.Step(time.Minute)
	w.round(t)
	got = usage()
	if len(got) != 13 || got[12].Details["allocation"] != "nb-0" || got[12].Details["window_seconds"] != 2*60.0 {
		t.Errorf("after nb-0 stopped: %+v; want its 2 minutes since 09:30", got[12:])
	}
}

// `gpuwarden report` of a container busy for 23 minutes counts its use up to the last
// period (20 minutes), not 0.00 until the hour is over.
func TestReportSeesARunningContainersUseWithinAPeriod(t *testing.T) {
	policy := &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "defaults"},
		Spec: gpuwardenv1alpha1.ContainerPolicySpec{Idle: &gpuwardenv1alpha1.IdlePolicy{Timeout: ptrDuration("9999h")}}}
	w := newSamplerWorld(t, 1, policy)
	log := &clockedLog{clock: w.clock}
	w.s.Audit = log
	w.fake.SetUtilization(0, 100, 0)
	t0 := w.clock.Now()
	for range 23 {
		w.clock.Step(time.Minute)
		w.round(t)
	}
	b := &report.Builder{Since: t0}
	for _, e := range log.events {
		b.Add(&e)
	}
	r := b.Report(w.clock.Now())
	if len(r.Rows) != 1 || r.Rows[0].UsedGPUHours < (19*time.Minute).Hours()-1e-9 || r.Rows[0].UsedGPUHours > (23*time.Minute).Hours() {
		t.Errorf("report after 23 minutes at 100%% of one GPU: %+v; want USED GPU-H up to 09:20 (19 minutes from the first sample)", r.Rows)
	}
}

// clockedLog keeps what is logged with the time of the test's clock, as the audit log
// stamps records.
type clockedLog struct {
	clock  clock.PassiveClock
	events []audit.Event
}

func (l *clockedLog) Log(e audit.Event) {
	e.Time = l.clock.Now()
	l.events = append(l.events, e)
}

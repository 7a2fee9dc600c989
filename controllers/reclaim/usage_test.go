package reclaim

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
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

// Each gpu.usage record carries its window's peaks, device by device: the most memory used
// on one device, the busiest utilisation, how many devices showed use, the GPU's memory
// size and model.
func TestUsageRecordsCarryTheWindowsPeaks(t *testing.T) {
	policy := &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "defaults"},
		Spec: gpuwardenv1alpha1.ContainerPolicySpec{Idle: &gpuwardenv1alpha1.IdlePolicy{Timeout: ptrDuration("9999h")}}}
	w := newSamplerWorld(t, 2, policy)
	log := &testutil.AuditRecorder{}
	w.s.Audit = log
	set := func(util uint32, memMiB uint64) {
		t.Helper()
		if err := w.fake.Apply(fakegpu.Control{Devices: map[string]fakegpu.DeviceControl{"0": {Utilization: &util, MemoryUsedMiB: &memMiB}}}); err != nil {
			t.Fatal(err)
		}
	}
	// GPU 0 (nb-0): 30 % and 4000 MiB, 70 % and 9000 MiB at 09:03 only, then 20 % and
	// 3000 MiB; GPU 1 (nb-1) unused all along.
	for minute := 1; minute <= 10; minute++ {
		switch minute {
		case 1:
			set(30, 4000)
		case 3:
			set(70, 9000)
		case 4:
			set(20, 3000)
		}
		w.clock.Step(time.Minute)
		w.round(t)
	}
	samples, err := w.s.GPUs.Samples(context.Background())
	if err != nil || len(samples) == 0 {
		t.Fatal(samples, err)
	}
	total, model := samples[0].MemoryTotalBytes, samples[0].Telemetry.Info.Model
	if total == 0 || model == "" {
		t.Fatalf("the fake GPU's memory size %d and model %q", total, model)
	}
	type peaks struct {
		Allocation            string
		PeakMemory, Total     any
		PeakUtil, Busy, Model any
	}
	var got []peaks
	for _, e := range log.Events() {
		if e.Type == audit.TypeGPUUsage {
			d := e.Details
			got = append(got, peaks{d["allocation"].(string), d["peak_memory_bytes"], d["memory_total_bytes"], d["peak_utilization_percent"], d["busy_devices"], d["gpu_model"]})
		}
	}
	want := []peaks{
		// 09:01–09:05: the 09:03 sample's.
		{"nb-0", uint64(9000 << 20), total, 70.0, 1, model},
		{"nb-1", uint64(0), total, 0.0, 0, model},
		// 09:05–09:10: from the 09:05 sample on.
		{"nb-0", uint64(3000 << 20), total, 20.0, 1, model},
		{"nb-1", uint64(0), total, 0.0, 0, model},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the peaks of the gpu.usage records (-want +got):\n%s", diff)
	}
}

// A MIG slice's record names its profile and has no peak utilisation (NVML gives none);
// of a multi-GPU allocation, only the devices that showed use count as busy, and the
// memory peak is one device's, not their sum.
func TestUsagePeaksOfMIGSlicesAndSeveralGPUs(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 9, 0, 30, 0, time.UTC)
	mig := held{c: docker.Container{ID: "c-mig", Name: "slice"}, a: testutil.MakeAllocation("slice").User("bob").GPUEquivalents("0.428571").
		BoundDevices(gpuwardenv1alpha1.BoundDevice{Index: 4, UUID: "MIG-a", MIGProfile: "3g.40gb", Weight: resource.MustParse("0.428571")}).Obj()}
	multi := held{c: docker.Container{ID: "c-multi", Name: "train"}, a: testutil.MakeAllocation("train").User("bob").GPUEquivalents("3").
		BoundDevices(gpuwardenv1alpha1.BoundDevice{Index: 0, UUID: "GPU-a", Weight: resource.MustParse("1")},
			gpuwardenv1alpha1.BoundDevice{Index: 1, UUID: "GPU-b", Weight: resource.MustParse("1")},
			gpuwardenv1alpha1.BoundDevice{Index: 2, UUID: "GPU-c", Weight: resource.MustParse("1")}).Obj()}
	info := gpu.Telemetry{Info: gpu.DeviceInfo{Model: "NVIDIA H100 80GB HBM3"}}
	rounds := []map[string]gpu.Sample{
		{
			"MIG-a": {UUID: "MIG-a", MemoryUsedBytes: 5 << 30, MemoryTotalBytes: 40 << 30, Telemetry: info},
			"GPU-a": {UUID: "GPU-a", UtilizationKnown: true, UtilizationPercent: 40, MemoryUsedBytes: 20 << 30, MemoryTotalBytes: 80 << 30, Telemetry: info},
			// A CUDA context, nothing more: not busy.
			"GPU-b": {UUID: "GPU-b", UtilizationKnown: true, MemoryUsedBytes: audit.BusyMemoryFloor, MemoryTotalBytes: 80 << 30, Telemetry: info},
			"GPU-c": {UUID: "GPU-c", UtilizationKnown: true, MemoryTotalBytes: 80 << 30, Telemetry: info},
		},
		{
			"MIG-a": {UUID: "MIG-a", MemoryUsedBytes: 7 << 30, MemoryTotalBytes: 40 << 30, Telemetry: info},
			"GPU-a": {UUID: "GPU-a", UtilizationKnown: true, UtilizationPercent: 10, MemoryUsedBytes: 30 << 30, MemoryTotalBytes: 80 << 30, Telemetry: info},
			"GPU-b": {UUID: "GPU-b", UtilizationKnown: true, UtilizationPercent: 5, MemoryUsedBytes: 1 << 30, MemoryTotalBytes: 80 << 30, Telemetry: info},
			// GPU-c: not read this round.
		},
	}
	var b usageBook
	log := &testutil.AuditRecorder{}
	for i, gpus := range rounds {
		at := t0.Add(time.Duration(i) * time.Minute)
		b.add(mig, lifecycle.Sample{Time: at}, gpus, lifecycle.Active, time.Minute, log)
		b.add(multi, lifecycle.Sample{Time: at, GPUKnown: i == 0, GPUPercent: 40}, gpus, lifecycle.Active, time.Minute, log)
	}
	b.forget(nil, log)
	byName := map[string]map[string]any{}
	for _, e := range log.Events() {
		byName[e.Details["allocation"].(string)] = e.Details
	}
	s := byName["slice"]
	if s["mig_profile"] != "3g.40gb" || s["peak_memory_bytes"] != uint64(7<<30) || s["memory_total_bytes"] != uint64(40<<30) || s["busy_devices"] != 1 {
		t.Errorf("the MIG slice's record: %v", s)
	}
	if _, ok := s["peak_utilization_percent"]; ok {
		t.Errorf("the MIG slice's record has a utilisation: %v", s)
	}
	m := byName["train"]
	if _, ok := m["mig_profile"]; ok || m["peak_memory_bytes"] != uint64(30<<30) || m["busy_devices"] != 2 || m["peak_utilization_percent"] != 40.0 ||
		m["gpu_model"] != "NVIDIA H100 80GB HBM3" {
		t.Errorf("the 3-GPU record: %v; want 30 GiB on one device, 2 devices busy, 40 %%", m)
	}
}

package gpu_test

import (
	"context"
	"errors"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
)

func fake(t *testing.T, profile string) (*fakegpu.Server, *gpu.NVML) {
	t.Helper()
	s, err := fakegpu.New(profile)
	if err != nil {
		t.Fatal(err)
	}
	return s, gpu.NewNVML(s)
}

func TestDevicesOfEachProfile(t *testing.T) {
	ctx := context.Background()
	for profile, want := range map[string]struct {
		model  string
		memory uint64
	}{
		"dgxa100":  {"Mock NVIDIA A100-SXM4-40GB", 40 << 30},
		"h100x8":   {"NVIDIA H100 80GB HBM3", 80 << 30},
		"h100-mig": {"NVIDIA H100 80GB HBM3", 80 << 30},
	} {
		s, b := fake(t, profile)
		devs, err := b.Devices(ctx)
		if err != nil {
			t.Fatalf("%s: %v", profile, err)
		}
		if len(devs) != 8 {
			t.Fatalf("%s: %d devices, want 8", profile, len(devs))
		}
		for i, d := range devs {
			if d.Index != i || d.UUID != s.UUIDs()[i] || d.Model != want.model || d.MemoryBytes != want.memory || d.Health != gpu.Healthy || d.TotalSlices != 7 {
				t.Errorf("%s: device %d = %+v", profile, i, d)
			}
		}
	}
}

func TestMIGInstances(t *testing.T) {
	s, b := fake(t, "h100-mig")
	devs, err := b.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	profiles := func(d gpu.Device) []string {
		var out []string
		for _, in := range d.Instances {
			out = append(out, in.Profile)
		}
		return out
	}
	for i, want := range map[int][]string{
		0: nil,
		4: {"1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"},
		5: {"3g.40gb", "2g.20gb", "2g.20gb"},
		6: {"4g.40gb", "3g.40gb"},
		7: {"7g.80gb"},
	} {
		if diff := cmp.Diff(want, profiles(devs[i])); diff != "" {
			t.Errorf("GPU %d profiles (-want,+got):\n%s", i, diff)
		}
		wantMode := gpu.MIGDisabled
		if want != nil {
			wantMode = gpu.MIGEnabled
		}
		if devs[i].MIG != wantMode {
			t.Errorf("GPU %d MIG mode %s, want %s", i, devs[i].MIG, wantMode)
		}
	}
	got := devs[5].Instances[0]
	want := gpu.MIGInstance{UUID: s.MIGUUIDs(5)[0], Profile: "3g.40gb", GPUInstanceID: 1, Slices: 3, MemoryBytes: 40 << 30}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want,+got):\n%s", diff)
	}
}

func TestUnhealthyAndLostGPUsAreReportedNotDropped(t *testing.T) {
	s, b := fake(t, "h100x8")
	s.Lose(2, true)
	s.Fail(3, nvml.ERROR_UNKNOWN)
	devs, err := b.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 8 {
		t.Fatalf("%d devices, want all 8", len(devs))
	}
	if devs[2].Health != gpu.Lost || devs[2].HealthMessage == "" {
		t.Errorf("lost GPU = %+v", devs[2])
	}
	if devs[3].Health != gpu.Unhealthy || devs[3].HealthMessage != "nvml GetUUID: ERROR_UNKNOWN (code 999)" {
		t.Errorf("failing GPU = %+v", devs[3])
	}
	s.Lose(2, false)
	s.Fail(3, nvml.SUCCESS)
	devs, _ = b.Devices(context.Background())
	if devs[2].Health != gpu.Healthy || devs[3].Health != gpu.Healthy {
		t.Errorf("recovered GPUs: %+v %+v", devs[2], devs[3])
	}
}

func TestProcessesAndSamples(t *testing.T) {
	s, b := fake(t, "h100-mig")
	gpu0, mig := s.UUIDs()[0], s.MIGUUIDs(4)[2]
	s.SetProcesses(gpu0, fakegpu.Process{PID: 4242, UsedMemoryBytes: 1 << 30})
	s.SetProcesses(mig, fakegpu.Process{PID: 77, UsedMemoryBytes: 512 << 20}, fakegpu.Process{PID: 78})
	s.SetUtilization(0, 93, 40)
	procs, err := b.Processes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []gpu.Process{{PID: 4242, UsedMemoryBytes: 1 << 30, DeviceUUID: gpu0}, {PID: 77, UsedMemoryBytes: 512 << 20, DeviceUUID: mig}, {PID: 78, DeviceUUID: mig}}
	if diff := cmp.Diff(want, procs, cmpopts.SortSlices(func(a, b gpu.Process) bool { return a.PID < b.PID })); diff != "" {
		t.Errorf("(-want,+got):\n%s", diff)
	}
	samples, err := b.Samples(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 8+7+3+2+1 || samples[0].UtilizationPercent != 93 || samples[0].MemoryUtilPercent != 40 || samples[0].Telemetry.Temperature.V == 0 || !samples[0].UtilizationKnown {
		t.Errorf("samples[0] = %+v of %d", samples[0], len(samples))
	}
	for _, sm := range samples {
		if sm.UUID == mig && (sm.UtilizationKnown || sm.Parent != s.UUIDs()[4] || sm.MemoryTotalBytes != 10<<30) {
			t.Errorf("MIG sample = %+v; NVML gives a MIG instance's memory, no utilisation", sm)
		}
	}
}

func TestNoDriverMeansNoGPUs(t *testing.T) {
	inits := 0
	lib := &mock.Interface{InitFunc: func() nvml.Return { inits++; return nvml.ERROR_LIBRARY_NOT_FOUND }}
	b := gpu.NewNVML(lib)
	devs, err := b.Devices(context.Background())
	if !errors.Is(err, gpu.ErrNoDriver) || len(devs) != 0 {
		t.Fatalf("Devices without a driver = %v, %v; want none and ErrNoDriver", devs, err)
	}
	if _, err := b.Processes(context.Background()); !errors.Is(err, gpu.ErrNoDriver) {
		t.Errorf("Processes without a driver: %v", err)
	}
	if inits != 2 {
		t.Errorf("Init was called %d times; a missing driver must be looked for again", inits)
	}
}

func TestUnknownProfile(t *testing.T) {
	if _, err := fakegpu.New("tpu"); err == nil || err.Error() != `unknown fake GPU profile "tpu"; choose one of dgxa100, h100x8, h100-mig` {
		t.Errorf("err = %v", err)
	}
}

func TestProfileName(t *testing.T) {
	for _, tc := range []struct {
		slices int
		mb     uint64
		want   string
	}{{1, 9856, "1g.10gb"}, {3, 40192, "3g.40gb"}, {7, 81559, "7g.80gb"}, {1, 4864, "1g.5gb"}} {
		if got := gpu.ProfileName(tc.slices, tc.mb); got != tc.want {
			t.Errorf("ProfileName(%d, %d) = %s, want %s", tc.slices, tc.mb, got, tc.want)
		}
	}
}

func TestXIDsMakeAGPUUnhealthy(t *testing.T) {
	s, b := fake(t, "h100x8")
	if _, err := b.Devices(context.Background()); err != nil { // registers for events
		t.Fatal(err)
	}
	s.InjectXID(6, 79) // fell off the bus
	s.InjectXID(2, 13) // an application's fault: the GPU is fine
	devs, err := b.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if devs[6].Health != gpu.Unhealthy || devs[6].LastXID != 79 || devs[6].HealthMessage != "XID 79 reported: the GPU needs a reset" {
		t.Errorf("GPU 6 after XID 79 = %+v", devs[6])
	}
	if devs[2].Health != gpu.Healthy || devs[2].LastXID != 0 {
		t.Errorf("GPU 2 after XID 13 = %+v; application XIDs do not make a GPU unhealthy", devs[2])
	}
	devs, _ = b.Devices(context.Background())
	if devs[6].Health != gpu.Unhealthy {
		t.Errorf("an XID must stay until the GPU is reset (gpuwarden restarts)")
	}
}

func TestTelemetryNamesDevicesTheWayDCGMDoes(t *testing.T) {
	s, b := fake(t, "h100-mig")
	if _, err := b.Devices(context.Background()); err != nil { // registers for events
		t.Fatal(err)
	}
	s.InjectXID(1, 13) // the metrics show every XID, application ones too
	samples, err := b.Samples(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byUUID := map[string]gpu.Sample{}
	for _, sm := range samples {
		byUUID[sm.UUID] = sm
	}
	g1 := byUUID[s.UUIDs()[1]].Telemetry
	if g1.LastXID != 13 || g1.Info.Index != 1 || g1.Info.Minor != 1 || g1.Info.DriverVersion == "" || !g1.MemoryTemperature.OK || !g1.ECCUncorrected.OK {
		t.Errorf("GPU 1 telemetry = %+v", g1)
	}
	mig := byUUID[s.MIGUUIDs(5)[0]].Telemetry
	want := gpu.DeviceInfo{Index: 5, Minor: 5, PCIBusID: "00000000:05:00.0", Model: "NVIDIA H100 80GB HBM3", DriverVersion: g1.Info.DriverVersion, MIGProfile: "3g.40gb", GPUInstanceID: 1}
	if diff := cmp.Diff(want, mig.Info); diff != "" {
		t.Errorf("MIG 5:0 info (-want,+got):\n%s", diff)
	}
	if mig.Temperature.OK || mig.SMClockMHz.OK || mig.EnergyMillijoules.OK {
		t.Errorf("MIG 5:0 telemetry = %+v; NVML reports those for the GPU only", mig)
	}
}

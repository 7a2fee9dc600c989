package fakegpu_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// The example of README.md, "Simulated GPUs driven from outside".
const example = `
devices:
  "0":   {utilization: 97, memoryUtilization: 40, memoryUsedMiB: 30000, temperature: 91, power: 650}
  "4:0": {memoryUsedMiB: 5000}
  "2":   {lost: true}
  "5":   {xid: 79}
processes:
  - {device: "0", pid: 4242, usedMemoryMiB: 2048}
`

func sampleOf(t *testing.T, b gpu.Backend, uuid string) gpu.Sample {
	t.Helper()
	samples, err := b.Samples(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range samples {
		if s.UUID == uuid {
			return s
		}
	}
	t.Fatalf("no sample of %s", uuid)
	return gpu.Sample{}
}

func TestControlFileDrivesTheGPUs(t *testing.T) {
	s, err := fakegpu.NewForNode("h100-mig", "n1")
	if err != nil {
		t.Fatal(err)
	}
	b := gpu.NewNVML(s)
	if _, err := b.Devices(context.Background()); err != nil { // registers for XIDs
		t.Fatal(err)
	}
	c, err := fakegpu.ParseControl([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(c); err != nil {
		t.Fatal(err)
	}
	got := sampleOf(t, b, s.UUIDs()[0])
	want := gpu.Sample{UUID: s.UUIDs()[0], UtilizationKnown: true, UtilizationPercent: 97, MemoryUtilPercent: 40,
		MemoryUsedBytes: 30000 << 20, MemoryTotalBytes: 80 << 30}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(gpu.Sample{}, "Telemetry")); diff != "" {
		t.Errorf("GPU 0 (-want,+got):\n%s", diff)
	}
	tel := got.Telemetry
	if tel.Temperature != gpu.Some[uint32](91) || tel.Power != gpu.Some[uint32](650000) || tel.SMClockMHz != gpu.Some[uint32](1980) ||
		!tel.EnergyMillijoules.OK || tel.Info.Model != "NVIDIA H100 80GB HBM3" || tel.Info.PCIBusID != "00000000:00:00.0" {
		t.Errorf("GPU 0 telemetry = %+v", tel)
	}
	if m := sampleOf(t, b, s.MIGUUIDs(4)[0]); m.MemoryUsedBytes != 5000<<20 || m.UtilizationKnown {
		t.Errorf("MIG 4:0 = %+v", m)
	}
	if d := sampleOf(t, b, s.UUIDs()[1]); d.Telemetry.Temperature.V != 35 || d.Telemetry.Power.V != 70000 || d.UtilizationPercent != 0 {
		t.Errorf("GPU 1, not named, = %+v; want the defaults", d)
	}
	devs, _ := b.Devices(context.Background())
	if devs[2].Health != gpu.Lost || devs[5].LastXID != 79 {
		t.Errorf("GPU 2 = %s, GPU 5 XID = %d", devs[2].Health, devs[5].LastXID)
	}
	procs, _ := b.Processes(context.Background())
	if len(procs) != 1 || procs[0].PID != 4242 || procs[0].UsedMemoryBytes != 2048<<20 || procs[0].DeviceUUID != s.UUIDs()[0] {
		t.Errorf("processes = %+v", procs)
	}

	// The same XID again is not a new event; an empty file is every default.
	if err := s.Apply(fakegpu.Control{}); err != nil {
		t.Fatal(err)
	}
	devs, _ = b.Devices(context.Background())
	if devs[2].Health != gpu.Healthy {
		t.Errorf("GPU 2 after the file no longer names it: %s", devs[2].Health)
	}
	if d := sampleOf(t, b, s.UUIDs()[0]); d.UtilizationPercent != 0 || d.Telemetry.Temperature.V != 35 {
		t.Errorf("GPU 0 after an empty file = %+v", d)
	}
}

func TestControlByUUIDAndPerProcessUtilization(t *testing.T) {
	s, _ := fakegpu.NewForNode("h100x8", "n1")
	b := gpu.NewNVML(s)
	u3 := s.UUIDs()[3]
	c, err := fakegpu.ParseControl([]byte(`{"devices": {"` + u3 + `": {"utilization": 60}}, "processes": [{"device": "3", "pid": 10, "utilization": 45}, {"device": "3", "pid": 11}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(c); err != nil {
		t.Fatal(err)
	}
	got := sampleOf(t, b, u3)
	if got.UtilizationPercent != 60 || len(got.Processes) != 1 || got.Processes[0] != (gpu.ProcessUtilization{PID: 10, SMPercent: 45}) {
		t.Errorf("GPU 3 = %+v", got)
	}
}

func TestBadControlFiles(t *testing.T) {
	s, _ := fakegpu.NewForNode("h100-mig", "n1")
	for _, tc := range []struct{ in, want string }{
		{`devices: {"0": {utilisation: 5}}`, `unknown field "utilisation"`},
		{`devices: {"0": {utilization: 150}}`, `devices["0"].utilization: 150 is not a percentage`},
		{`devices: {"9": {utilization: 1}}`, `there is no GPU 9 (the machine has 8)`},
		{`devices: {"4:7": {memoryUsedMiB: 1}}`, `GPU 4 has 7 MIG instances`},
		{`devices: {"4:0": {utilization: 50}}`, `a MIG instance takes only memoryUsedMiB`},
		{`devices: {"5": {utilization: 50}}`, `devices["5"]: GPU 5 is partitioned into MIG instances, for which NVML reports no utilisation; set memoryUsedMiB on its instances ("5:0")`},
		{`devices: {"GPU-nope": {}}`, `not a GPU index, MIG instance (4:0) or UUID`},
		{`processes: [{device: "0"}]`, `processes[0].pid: 0 is not a process ID`},
		{`devices: [1, 2]`, `cannot unmarshal`},
	} {
		c, err := fakegpu.ParseControl([]byte(tc.in))
		if err == nil {
			err = s.Apply(c)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to say %q", tc.in, err, tc.want)
		}
	}
}

func TestWatchControlRereadsTheFile(t *testing.T) {
	s, _ := fakegpu.NewForNode("h100x8", "n1")
	b := gpu.NewNVML(s)
	path := filepath.Join(t.TempDir(), "control.yaml")
	errs := make(chan error, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.WatchControl(ctx, path, 10*time.Millisecond, func(err error) { errs <- err })
	write := func(content string) {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`devices: {"1": {utilization: 88}}`)
	testutil.Eventually(t, 10*time.Second, "GPU 1 busy from the file", func() bool { return sampleOf(t, b, s.UUIDs()[1]).UtilizationPercent == 88 })
	write(`devices: {"1": {utilization: 300}}`)
	select {
	case err := <-errs:
		if err == nil || !strings.Contains(err.Error(), "not a percentage") {
			t.Errorf("reported %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a bad file was not reported")
	}
	if got := sampleOf(t, b, s.UUIDs()[1]).UtilizationPercent; got != 88 {
		t.Errorf("after a bad file GPU 1 reports %d; it keeps what it had", got)
	}
	write(`devices: {"1": {utilization: 3}}`)
	testutil.Eventually(t, 10*time.Second, "GPU 1 idle from the file", func() bool { return sampleOf(t, b, s.UUIDs()[1]).UtilizationPercent == 3 })
	if err := <-errs; err != nil {
		t.Errorf("a good file after a bad one reports %v, want nil", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "no file: the defaults", func() bool { return sampleOf(t, b, s.UUIDs()[1]).UtilizationPercent == 0 })
}

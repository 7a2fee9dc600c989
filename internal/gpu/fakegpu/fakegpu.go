// Package fakegpu simulates a node's GPUs for --fake-gpus, tests and demos. It is built on
// go-nvml's own mocks (mock/dgxa100 and pkg/nvml/mock), adding what they lack: MIG device
// handles, utilisation, processes, temperature, power, and scripted failures.
package fakegpu

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/google/uuid"
)

// Profiles are the simulated machines New accepts.
var Profiles = []string{"dgxa100", "h100x8", "h100-mig"}

// MIG is a MIG instance layout: its slices and memory.
type MIG struct {
	Slices   int
	MemoryGB int
}

// Common MIG profiles of an H100 80GB.
var (
	H100MIG1g = MIG{1, 10}
	H100MIG2g = MIG{2, 20}
	H100MIG3g = MIG{3, 40}
	H100MIG4g = MIG{4, 40}
	H100MIG7g = MIG{7, 80}
)

// Process is a simulated process on a GPU or MIG instance.
type Process struct {
	PID             int
	UsedMemoryBytes uint64
	// Utilization is the process's SM utilisation when HasUtilization (NVML's per-process
	// samples); without it NVML has no sample for the process.
	Utilization    uint32
	HasUtilization bool
}

// Server is a simulated NVML. It implements nvml.Interface; scripting methods change what
// it reports. Safe for concurrent use.
type Server struct {
	*dgxa100.Server

	mu   sync.Mutex
	gpus []*gpu
	// procs are the processes by GPU or MIG instance UUID.
	procs map[string][]Process
	node  string
	// xids are XID events not yet taken by Wait.
	xids []nvml.EventData
	// now is the clock the energy counters run on.
	now func() time.Time
}

// SetClock makes the energy counters run on now (tests); they restart from zero.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
	for _, g := range s.gpus {
		g.energyMJ, g.energyAt = 0, now()
	}
}

// namespace seeds the simulated UUIDs.
var namespace = uuid.MustParse("6f1b3c2e-9a4d-4e57-8b1f-2d7c5a9e0b13")

func (s *Server) stableUUID(what string) string {
	return uuid.NewSHA1(namespace, []byte(s.node+"/"+what)).String()
}

type gpu struct {
	*dgxa100.Device
	migs     []*migDevice
	util     nvml.Utilization
	tempC    uint32
	powerMW  uint32
	memUsed  uint64
	lost     bool
	lastXID  uint64      // the control file's last xid, reported once per change
	failWith nvml.Return // returned by GetUUID, like a GPU in a bad state
	// energyMJ is the energy drawn so far at the reported power, as of energyAt.
	energyMJ float64
	energyAt time.Time
	// smMHz and memMHz are the clocks the GPU reports.
	smMHz, memMHz uint32
}

// Clocks of the simulated models (boost SM clock, memory clock), in MHz.
var clocks = map[string][2]uint32{"NVIDIA H100 80GB HBM3": {1980, 2619}}

// memoryTempC is what every simulated GPU's memory sensor reads.
const memoryTempC = 40

func newGPU(d *dgxa100.Device) *gpu {
	c, ok := clocks[d.Name]
	if !ok {
		c = [2]uint32{1410, 1215} // A100
	}
	return &gpu{Device: d, tempC: 35, powerMW: 70000, smMHz: c[0], memMHz: c[1], energyAt: time.Now()}
}

type migDevice struct {
	mock.Device
	uuid    string
	gi, ci  int
	attrs   nvml.DeviceAttributes
	memUsed uint64
}

// New returns a simulated machine: dgxa100 (8× A100-SXM4-40GB), h100x8 (8× H100 80GB) or
// h100-mig (8× H100 80GB; GPUs 4–7 partitioned into MIG instances of several profiles).
// Its UUIDs are random.
func New(profile string) (*Server, error) { return NewForNode(profile, uuid.NewString()) }

// NewForNode is New with UUIDs derived from the node's name, so they stay the same across
// restarts (as real GPUs' do) and differ between nodes.
func NewForNode(profile, node string) (*Server, error) {
	s := &Server{Server: dgxa100.New(), procs: map[string][]Process{}, node: node, now: time.Now}
	switch profile {
	case "dgxa100":
	case "h100x8", "h100-mig":
		for i := range s.Devices {
			d := s.Devices[i].(*dgxa100.Device)
			d.Name = "NVIDIA H100 80GB HBM3"
			d.Architecture = nvml.DEVICE_ARCH_HOPPER
			d.CudaComputeCapability = dgxa100.CudaComputeCapability{Major: 9, Minor: 0}
			d.MemoryInfo = nvml.Memory{Total: 80 << 30, Free: 80 << 30}
		}
	default:
		return nil, fmt.Errorf("unknown fake GPU profile %q; choose one of %s", profile, strings.Join(Profiles, ", "))
	}
	for i := range s.Devices {
		g := newGPU(s.Devices[i].(*dgxa100.Device))
		g.UUID = "GPU-" + s.stableUUID(fmt.Sprintf("gpu/%d", i))
		s.gpus = append(s.gpus, g)
		s.wire(g)
	}
	if profile == "h100-mig" {
		s.Partition(4, H100MIG1g, H100MIG1g, H100MIG1g, H100MIG1g, H100MIG1g, H100MIG1g, H100MIG1g)
		s.Partition(5, H100MIG3g, H100MIG2g, H100MIG2g)
		s.Partition(6, H100MIG4g, H100MIG3g)
		s.Partition(7, H100MIG7g)
	}
	events := &mock.EventSet{
		WaitFunc: func(uint32) (nvml.EventData, nvml.Return) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.xids) == 0 {
				return nvml.EventData{}, nvml.ERROR_TIMEOUT
			}
			e := s.xids[0]
			s.xids = s.xids[1:]
			return e, nvml.SUCCESS
		},
		FreeFunc: func() nvml.Return { return nvml.SUCCESS },
	}
	s.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { return events, nvml.SUCCESS }
	s.DeviceGetHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if i < 0 || i >= len(s.gpus) {
			return nil, nvml.ERROR_INVALID_ARGUMENT
		}
		if s.gpus[i].lost {
			return nil, nvml.ERROR_GPU_IS_LOST
		}
		return s.gpus[i], nvml.SUCCESS
	}
	return s, nil
}

// AddGPUs adds n more whole GPUs of the first GPU's model, for benchmarks that need more
// room than one machine has.
func (s *Server) AddGPUs(n int) {
	s.mu.Lock()
	first := s.gpus[0].Device
	for range n {
		d := dgxa100.NewDevice(len(s.gpus))
		d.Name, d.Architecture, d.MemoryInfo = first.Name, first.Architecture, first.MemoryInfo
		g := newGPU(d)
		g.UUID = "GPU-" + s.stableUUID(fmt.Sprintf("gpu/%d", len(s.gpus)))
		s.gpus = append(s.gpus, g)
	}
	added := s.gpus[len(s.gpus)-n:]
	s.mu.Unlock()
	for _, g := range added {
		s.wire(g)
	}
	s.DeviceGetCountFunc = func() (int, nvml.Return) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.gpus), nvml.SUCCESS
	}
}

// wire adds the calls dgxa100's device mock lacks.
func (s *Server) wire(g *gpu) {
	getUUID := g.GetUUIDFunc
	g.GetUUIDFunc = func() (string, nvml.Return) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if g.lost {
			return "", nvml.ERROR_GPU_IS_LOST
		}
		if g.failWith != nvml.SUCCESS {
			return "", g.failWith
		}
		return getUUID()
	}
	g.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
	g.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(g.migs), nvml.SUCCESS
	}
	g.GetMigDeviceHandleByIndexFunc = func(j int) (nvml.Device, nvml.Return) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if j < 0 || j >= len(g.migs) {
			return nil, nvml.ERROR_NOT_FOUND
		}
		return g.migs[j], nvml.SUCCESS
	}
	g.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(g.migs) > 0 {
			return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED // as NVML answers for a partitioned GPU
		}
		return g.util, nvml.SUCCESS
	}
	g.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return g.tempC, nvml.SUCCESS
	}
	g.GetPowerUsageFunc = func() (uint32, nvml.Return) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return g.powerMW, nvml.SUCCESS
	}
	g.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.drawEnergy(g)
		return uint64(g.energyMJ), nvml.SUCCESS
	}
	g.GetClockInfoFunc = func(t nvml.ClockType) (uint32, nvml.Return) {
		switch t {
		case nvml.CLOCK_SM, nvml.CLOCK_GRAPHICS:
			return g.smMHz, nvml.SUCCESS
		case nvml.CLOCK_MEM:
			return g.memMHz, nvml.SUCCESS
		}
		return 0, nvml.ERROR_NOT_SUPPORTED
	}
	g.GetFieldValuesFunc = func(values []nvml.FieldValue) nvml.Return {
		for i := range values {
			values[i].NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
			if values[i].FieldId == nvml.FI_DEV_MEMORY_TEMP {
				values[i].NvmlReturn, values[i].ValueType = uint32(nvml.SUCCESS), uint32(nvml.VALUE_TYPE_UNSIGNED_INT)
				values[i].Value = [8]byte{memoryTempC}
			}
		}
		return nvml.SUCCESS
	}
	// A healthy GPU: no ECC errors, no replays, no remapped rows.
	g.GetTotalEccErrorsFunc = func(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return) { return 0, nvml.SUCCESS }
	g.GetPcieReplayCounterFunc = func() (int, nvml.Return) { return 0, nvml.SUCCESS }
	g.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return 0, 0, false, false, nvml.SUCCESS }
	g.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
		p := nvml.PciInfo{PciDeviceId: 0x233010DE}
		for i, c := range "0000" + g.PciBusID { // NVML's form: 00000000:3B:00.0
			if i < len(p.BusId)-1 {
				p.BusId[i] = int8(c)
			}
		}
		return p, nvml.SUCCESS
	}
	g.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return s.processInfo(g.UUID), nvml.SUCCESS
	}
	g.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
		s.mu.Lock()
		defer s.mu.Unlock()
		total := g.MemoryInfo.Total
		used := min(g.memUsed, total)
		return nvml.Memory{Total: total, Used: used, Free: total - used}, nvml.SUCCESS
	}
	g.GetProcessUtilizationFunc = func(uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
		s.mu.Lock()
		defer s.mu.Unlock()
		var out []nvml.ProcessUtilizationSample
		for _, p := range s.procs[g.UUID] {
			if p.HasUtilization {
				out = append(out, nvml.ProcessUtilizationSample{Pid: uint32(p.PID), SmUtil: p.Utilization, TimeStamp: uint64(time.Now().UnixMicro())})
			}
		}
		if len(out) == 0 {
			return nil, nvml.ERROR_NOT_FOUND // as NVML answers when it has no sample
		}
		return out, nvml.SUCCESS
	}
}

// drawEnergy adds the energy g drew at its current power since the last reading; s.mu held.
func (s *Server) drawEnergy(g *gpu) {
	now := s.now()
	g.energyMJ += float64(g.powerMW) * now.Sub(g.energyAt).Seconds() // mW × s = mJ
	g.energyAt = now
}

func (s *Server) processInfo(uuid string) []nvml.ProcessInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []nvml.ProcessInfo
	for _, p := range s.procs[uuid] {
		out = append(out, nvml.ProcessInfo{Pid: uint32(p.PID), UsedGpuMemory: p.UsedMemoryBytes})
	}
	return out
}

// Partition enables MIG on GPU index with the given instances (or disables it with none).
func (s *Server) Partition(index int, instances ...MIG) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gpus[index]
	g.migs = nil
	g.MigMode = nvml.DEVICE_MIG_DISABLE
	if len(instances) > 0 {
		g.MigMode = nvml.DEVICE_MIG_ENABLE
	}
	for j, in := range instances {
		m := &migDevice{uuid: "MIG-" + s.stableUUID(fmt.Sprintf("gpu/%d/mig/%d/%dg", index, j, in.Slices)), gi: j + 1, ci: 0,
			attrs: nvml.DeviceAttributes{GpuInstanceSliceCount: uint32(in.Slices), ComputeInstanceSliceCount: uint32(in.Slices),
				MultiprocessorCount: uint32(in.Slices * 16), MemorySizeMB: uint64(in.MemoryGB) << 10}}
		m.GetUUIDFunc = func() (string, nvml.Return) { return m.uuid, nvml.SUCCESS }
		m.GetGpuInstanceIdFunc = func() (int, nvml.Return) { return m.gi, nvml.SUCCESS }
		m.GetComputeInstanceIdFunc = func() (int, nvml.Return) { return m.ci, nvml.SUCCESS }
		m.GetAttributesFunc = func() (nvml.DeviceAttributes, nvml.Return) { return m.attrs, nvml.SUCCESS }
		m.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return s.processInfo(m.uuid), nvml.SUCCESS }
		m.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
			s.mu.Lock()
			defer s.mu.Unlock()
			total := m.attrs.MemorySizeMB << 20
			used := min(m.memUsed, total)
			return nvml.Memory{Total: total, Used: used, Free: total - used}, nvml.SUCCESS
		}
		// NVML gives no utilisation, temperature or power for a MIG instance.
		m.GetDeviceHandleFromMigDeviceHandleFunc = func() (nvml.Device, nvml.Return) { return g, nvml.SUCCESS }
		m.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED }
		m.GetProcessUtilizationFunc = func(uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) { return nil, nvml.ERROR_NOT_SUPPORTED }
		g.migs = append(g.migs, m)
	}
}

// UUIDs returns the GPUs' UUIDs by index.
func (s *Server) UUIDs() []string {
	var out []string
	for _, g := range s.gpus {
		out = append(out, g.UUID)
	}
	return out
}

// MIGUUIDs returns the MIG instance UUIDs of GPU index, in order.
func (s *Server) MIGUUIDs(index int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.gpus[index].migs {
		out = append(out, m.uuid)
	}
	return out
}

// SetUtilization sets what GPU index reports as its GPU and memory utilisation.
func (s *Server) SetUtilization(index int, gpuPercent, memoryPercent uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gpus[index].util = nvml.Utilization{Gpu: gpuPercent, Memory: memoryPercent}
}

// SetProcesses sets the processes running on a GPU or MIG instance, by UUID.
func (s *Server) SetProcesses(uuid string, procs ...Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(procs) == 0 {
		delete(s.procs, uuid)
		return
	}
	s.procs[uuid] = append([]Process(nil), procs...)
}

// Lose makes GPU index fall off the bus (ERROR_GPU_IS_LOST), or come back.
func (s *Server) Lose(index int, lost bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gpus[index].lost = lost
}

// InjectXID reports a critical XID error on GPU index, as the driver would.
func (s *Server) InjectXID(index int, xid uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.xids = append(s.xids, nvml.EventData{Device: s.gpus[index], EventType: nvml.EventTypeXidCriticalError, EventData: xid})
}

// Fail makes GPU index answer NVML calls with ret (nvml.SUCCESS restores it).
func (s *Server) Fail(index int, ret nvml.Return) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gpus[index].failWith = ret
}

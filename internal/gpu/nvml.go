package gpu

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// NVML is the Backend over a go-nvml library: the real one (nvml.New()) or a mock.
// It initialises NVML on first use; a host without a driver reports no GPUs and ErrNoDriver
// instead of failing.
type NVML struct {
	lib nvml.Interface

	mu      sync.Mutex
	inited  bool
	initErr error
	// events receives critical XID errors of every registered GPU; nil where unsupported.
	events     nvml.EventSet
	registered map[string]bool
	xids       map[string]uint64 // last hardware XID by GPU UUID
	anyXIDs    map[string]uint64 // last XID of any kind by GPU UUID, for the metrics
	xidCounts  map[string]uint64 // XIDs of any kind reported, by GPU UUID
	// info is what names each device in the metrics (it does not change), by UUID.
	info   map[string]DeviceInfo
	driver string
}

// appXIDs are XIDs caused by an application, not the GPU (as NVIDIA's device plugin
// treats them): they do not make a GPU unhealthy.
var appXIDs = map[uint64]bool{13: true, 31: true, 43: true, 45: true, 68: true, 109: true}

// NewNVML returns a Backend over lib.
func NewNVML(lib nvml.Interface) *NVML { return &NVML{lib: lib} }

var _ Backend = (*NVML)(nil)

func (n *NVML) init() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.inited {
		return n.initErr
	}
	ret := n.lib.Init()
	switch ret {
	case nvml.SUCCESS:
		n.inited, n.initErr = true, nil
		n.registered, n.xids, n.anyXIDs, n.xidCounts, n.info = map[string]bool{}, map[string]uint64{}, map[string]uint64{}, map[string]uint64{}, map[string]DeviceInfo{}
		if v, ret := n.lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
			n.driver = v
		}
		if set, ret := n.lib.EventSetCreate(); ret == nvml.SUCCESS {
			n.events = set
		}
	case nvml.ERROR_LIBRARY_NOT_FOUND, nvml.ERROR_DRIVER_NOT_LOADED, nvml.ERROR_NO_PERMISSION:
		// Retried on the next call: a driver may be installed or loaded later.
		return fmt.Errorf("%w (%s)", ErrNoDriver, nvml.ErrorString(ret))
	default:
		return nvmlErr("Init", ret)
	}
	return nil
}

// Shutdown releases NVML.
func (n *NVML) Shutdown() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.inited {
		if n.events != nil {
			n.events.Free()
			n.events = nil
		}
		n.lib.Shutdown()
		n.inited = false
	}
}

func nvmlErr(op string, ret nvml.Return) error {
	return &NVMLError{Op: op, Code: int(ret), Text: nvml.ErrorString(ret)}
}

// count initialises NVML if need be and returns the number of GPUs.
func (n *NVML) count() (int, error) {
	if err := n.init(); err != nil {
		return 0, err
	}
	count, ret := n.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return 0, nvmlErr("DeviceGetCount", ret)
	}
	return count, nil
}

// Devices implements Backend.
func (n *NVML) Devices(ctx context.Context) ([]Device, error) {
	count, err := n.count()
	if err != nil {
		return nil, err
	}
	n.drainXIDs()
	out := make([]Device, 0, count)
	for i := 0; i < count; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out = append(out, n.device(i))
	}
	return out, nil
}

// device reads one GPU; a GPU that cannot be read is reported with its health, not dropped.
func (n *NVML) device(index int) Device {
	d := Device{Index: index, Health: Healthy, MIG: MIGUnsupported}
	h, ret := n.lib.DeviceGetHandleByIndex(index)
	if ret == nvml.ERROR_GPU_IS_LOST {
		d.Health, d.HealthMessage = Lost, "the GPU has fallen off the bus"
		return d
	}
	if ret != nvml.SUCCESS {
		d.Health, d.HealthMessage = Unhealthy, nvmlErr("DeviceGetHandleByIndex", ret).Error()
		return d
	}
	var errs []error
	check := func(op string, ret nvml.Return) bool {
		if ret == nvml.SUCCESS {
			return true
		}
		if ret == nvml.ERROR_GPU_IS_LOST {
			d.Health = Lost
		}
		errs = append(errs, nvmlErr(op, ret))
		return false
	}
	if uuid, ret := h.GetUUID(); check("GetUUID", ret) {
		d.UUID = uuid
		d.LastXID = n.watchXIDs(h, uuid)
		if d.LastXID != 0 {
			errs = append(errs, fmt.Errorf("XID %d reported: the GPU needs a reset", d.LastXID))
		}
	}
	if name, ret := h.GetName(); check("GetName", ret) {
		d.Model = name
	}
	if mem, ret := h.GetMemoryInfo(); check("GetMemoryInfo", ret) {
		d.MemoryBytes = mem.Total
	}
	if u, ret := h.GetUtilizationRates(); ret == nvml.SUCCESS {
		d.UtilizationPercent = u.Gpu
	}
	current, _, ret := h.GetMigMode()
	switch {
	case ret == nvml.ERROR_NOT_SUPPORTED:
	case !check("GetMigMode", ret):
	case current == nvml.DEVICE_MIG_ENABLE:
		d.MIG = MIGEnabled
		d.TotalSlices = totalSlices(h)
		d.Instances, errs = n.migInstances(h, errs)
	default:
		d.MIG = MIGDisabled
		d.TotalSlices = totalSlices(h)
	}
	if len(errs) > 0 {
		if d.Health == Healthy {
			d.Health = Unhealthy
		}
		d.HealthMessage = errors.Join(errs...).Error()
	}
	return d
}

// watchXIDs registers the GPU for critical XID events once and returns its last one.
func (n *NVML) watchXIDs(h nvml.Device, uuid string) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.events != nil && !n.registered[uuid] {
		// Not every GPU supports events: those are simply not watched.
		_ = h.RegisterEvents(nvml.EventTypeXidCriticalError, n.events)
		n.registered[uuid] = true
	}
	return n.xids[uuid]
}

// drainXIDs takes every XID event that has arrived, without waiting. A GPU with a
// hardware XID stays unhealthy until gpuwarden restarts, as after a GPU reset.
func (n *NVML) drainXIDs() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.events == nil {
		return
	}
	for {
		data, ret := n.events.Wait(0)
		if ret != nvml.SUCCESS {
			return
		}
		if data.EventType != nvml.EventTypeXidCriticalError || data.Device == nil {
			continue
		}
		if uuid, ret := data.Device.GetUUID(); ret == nvml.SUCCESS {
			n.anyXIDs[uuid] = data.EventData
			n.xidCounts[uuid]++
			if !appXIDs[data.EventData] {
				n.xids[uuid] = data.EventData
			}
		}
	}
}

// totalSlices is the slice count of the GPU's largest GPU-instance profile (7 on A100/H100).
func totalSlices(h nvml.Device) int {
	for _, p := range []int{nvml.GPU_INSTANCE_PROFILE_8_SLICE, nvml.GPU_INSTANCE_PROFILE_7_SLICE} {
		if info, ret := h.GetGpuInstanceProfileInfo(p); ret == nvml.SUCCESS && info.SliceCount > 0 {
			return int(info.SliceCount)
		}
	}
	return 0
}

func (n *NVML) migInstances(h nvml.Device, errs []error) ([]MIGInstance, []error) {
	max, ret := h.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return nil, append(errs, nvmlErr("GetMaxMigDeviceCount", ret))
	}
	var out []MIGInstance
	for j := 0; j < max; j++ {
		m, ret := h.GetMigDeviceHandleByIndex(j)
		if ret == nvml.ERROR_NOT_FOUND || ret == nvml.ERROR_INVALID_ARGUMENT {
			continue // no instance in this position
		}
		if ret != nvml.SUCCESS {
			errs = append(errs, nvmlErr("GetMigDeviceHandleByIndex", ret))
			continue
		}
		inst := MIGInstance{}
		uuid, ret := m.GetUUID()
		if ret != nvml.SUCCESS {
			errs = append(errs, nvmlErr("GetUUID (MIG)", ret))
			continue
		}
		inst.UUID = uuid
		if gi, ret := m.GetGpuInstanceId(); ret == nvml.SUCCESS {
			inst.GPUInstanceID = gi
		}
		if ci, ret := m.GetComputeInstanceId(); ret == nvml.SUCCESS {
			inst.ComputeInstanceID = ci
		}
		attrs, ret := m.GetAttributes()
		if ret != nvml.SUCCESS {
			errs = append(errs, nvmlErr("GetAttributes (MIG)", ret))
			continue
		}
		inst.Slices = int(attrs.GpuInstanceSliceCount)
		inst.MemoryBytes = attrs.MemorySizeMB << 20
		inst.Profile = ProfileName(inst.Slices, attrs.MemorySizeMB)
		out = append(out, inst)
	}
	return out, errs
}

// ProfileName names a MIG profile the way nvidia-smi does, e.g. 3g.40gb.
func ProfileName(slices int, memoryMB uint64) string {
	return fmt.Sprintf("%dg.%dgb", slices, (memoryMB+1023)/1024) // nvidia-smi rounds up: 4864 MB is 1g.5gb
}

// Processes implements Backend.
func (n *NVML) Processes(ctx context.Context) ([]Process, error) {
	devs, err := n.handles(ctx)
	if err != nil {
		return nil, err
	}
	var out []Process
	var errs []error
	for _, dh := range devs {
		procs, ret := dh.h.GetComputeRunningProcesses()
		if ret == nvml.ERROR_NOT_SUPPORTED {
			continue
		}
		if ret != nvml.SUCCESS {
			errs = append(errs, nvmlErr("GetComputeRunningProcesses", ret))
			continue
		}
		for _, p := range procs {
			out = append(out, Process{PID: int(p.Pid), UsedMemoryBytes: p.UsedGpuMemory, DeviceUUID: dh.uuid})
		}
	}
	return out, errors.Join(errs...)
}

type handle struct {
	h    nvml.Device
	uuid string
	// parent is the GPU's UUID for a MIG instance, and index the physical GPU's index.
	parent string
	index  int
}

// handles returns every reachable GPU and MIG device handle with its UUID.
func (n *NVML) handles(ctx context.Context) ([]handle, error) {
	count, err := n.count()
	if err != nil {
		return nil, err
	}
	var out []handle
	for i := 0; i < count; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, ret := n.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			continue
		}
		uuid, ret := h.GetUUID()
		if ret != nvml.SUCCESS {
			continue
		}
		out = append(out, handle{h: h, uuid: uuid, index: i})
		gpuUUID := uuid
		if current, _, ret := h.GetMigMode(); ret != nvml.SUCCESS || current != nvml.DEVICE_MIG_ENABLE {
			continue
		}
		max, ret := h.GetMaxMigDeviceCount()
		if ret != nvml.SUCCESS {
			continue
		}
		for j := 0; j < max; j++ {
			if m, ret := h.GetMigDeviceHandleByIndex(j); ret == nvml.SUCCESS {
				if uuid, ret := m.GetUUID(); ret == nvml.SUCCESS {
					out = append(out, handle{h: m, uuid: uuid, parent: gpuUUID, index: i})
				}
			}
		}
	}
	return out, nil
}

// Samples implements Backend.
func (n *NVML) Samples(ctx context.Context) ([]Sample, error) {
	devs, err := n.handles(ctx)
	if err != nil {
		return nil, err
	}
	n.drainXIDs()
	out := make([]Sample, 0, len(devs))
	for _, dh := range devs {
		h := dh.h
		s := Sample{UUID: dh.uuid, Parent: dh.parent}
		s.Telemetry.Info = n.deviceInfo(dh)
		if m, ret := h.GetMemoryInfo(); ret == nvml.SUCCESS {
			s.MemoryUsedBytes, s.MemoryTotalBytes = m.Used, m.Total
		}
		if dh.parent != "" {
			out = append(out, s) // NVML has nothing more for a MIG instance
			continue
		}
		if u, ret := h.GetUtilizationRates(); ret == nvml.SUCCESS {
			s.UtilizationKnown, s.UtilizationPercent, s.MemoryUtilPercent = true, u.Gpu, u.Memory
		}
		if t, ret := h.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
			s.Telemetry.Temperature = Some(t)
		}
		if p, ret := h.GetPowerUsage(); ret == nvml.SUCCESS {
			s.Telemetry.Power = Some(p)
		}
		s.Processes = processUtilization(h)
		n.telemetry(h, dh.uuid, &s.Telemetry)
		out = append(out, s)
	}
	return out, nil
}

// memoryTempUnsupported is the value NVML's field API gives where a GPU has no memory
// sensor (dcgm-exporter shows it as 9223372036854775794): never exported.
const memoryTempUnsupported = 1 << 40

// telemetry reads a whole GPU's slower-moving numbers; what NVML does not support stays
// unset.
func (n *NVML) telemetry(h nvml.Device, uuid string, t *Telemetry) {
	if v, ret := h.GetClockInfo(nvml.CLOCK_SM); ret == nvml.SUCCESS {
		t.SMClockMHz = Some(v)
	}
	if v, ret := h.GetClockInfo(nvml.CLOCK_MEM); ret == nvml.SUCCESS {
		t.MemoryClockMHz = Some(v)
	}
	if v, ret := h.GetTotalEnergyConsumption(); ret == nvml.SUCCESS {
		t.EnergyMillijoules = Some(v)
	}
	if v, ret := h.GetPcieReplayCounter(); ret == nvml.SUCCESS && v >= 0 {
		t.PCIeReplays = Some(uint64(v))
	}
	if v, ret := h.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.VOLATILE_ECC); ret == nvml.SUCCESS {
		t.ECCCorrected = Some(v)
	}
	if v, ret := h.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC); ret == nvml.SUCCESS {
		t.ECCUncorrected = Some(v)
	}
	if corr, unc, _, failed, ret := h.GetRemappedRows(); ret == nvml.SUCCESS && corr >= 0 && unc >= 0 {
		t.RemappedCorrectable, t.RemappedUncorrectable, t.RemapFailure = Some(uint64(corr)), Some(uint64(unc)), Some(failed)
	}
	fields := []nvml.FieldValue{{FieldId: nvml.FI_DEV_MEMORY_TEMP}}
	if ret := h.GetFieldValues(fields); ret == nvml.SUCCESS && nvml.Return(fields[0].NvmlReturn) == nvml.SUCCESS {
		if v, ok := fieldUint(fields[0]); ok && v < memoryTempUnsupported {
			t.MemoryTemperature = Some(uint32(v))
		}
	}
	n.mu.Lock()
	t.LastXID, t.XIDs = n.anyXIDs[uuid], n.xidCounts[uuid]
	n.mu.Unlock()
}

// fieldUint reads an unsigned field value.
func fieldUint(f nvml.FieldValue) (uint64, bool) {
	switch nvml.ValueType(f.ValueType) {
	case nvml.VALUE_TYPE_UNSIGNED_INT:
		return uint64(binary.LittleEndian.Uint32(f.Value[:4])), true
	case nvml.VALUE_TYPE_UNSIGNED_LONG, nvml.VALUE_TYPE_UNSIGNED_LONG_LONG:
		return binary.LittleEndian.Uint64(f.Value[:]), true
	}
	return 0, false
}

// deviceInfo is what names a device in the metrics, read once per device.
func (n *NVML) deviceInfo(dh handle) DeviceInfo {
	n.mu.Lock()
	info, ok := n.info[dh.uuid]
	driver := n.driver
	n.mu.Unlock()
	if ok {
		return info
	}
	info = DeviceInfo{Index: dh.index, Minor: -1, DriverVersion: driver}
	if dh.parent != "" {
		if gi, ret := dh.h.GetGpuInstanceId(); ret == nvml.SUCCESS {
			info.GPUInstanceID = gi
		}
		if attrs, ret := dh.h.GetAttributes(); ret == nvml.SUCCESS {
			info.MIGProfile = ProfileName(int(attrs.GpuInstanceSliceCount), attrs.MemorySizeMB)
		}
		// The rest names the physical GPU, as dcgm-exporter's MIG series do.
		if parent, ret := dh.h.GetDeviceHandleFromMigDeviceHandle(); ret == nvml.SUCCESS {
			dh.h = parent
		}
	}
	if name, ret := dh.h.GetName(); ret == nvml.SUCCESS {
		info.Model = name
	}
	if minor, ret := dh.h.GetMinorNumber(); ret == nvml.SUCCESS {
		info.Minor = minor
	}
	if pci, ret := dh.h.GetPciInfo(); ret == nvml.SUCCESS {
		info.PCIBusID = cString(pci.BusId[:])
	}
	n.mu.Lock()
	if n.info != nil {
		n.info[dh.uuid] = info
	}
	n.mu.Unlock()
	return info
}

// cString is a NUL-terminated C string.
func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// processUtilization is each process's latest per-process sample on a GPU (NVML keeps
// several per process in its buffer), ordered by PID; nil where NVML has none.
func processUtilization(h nvml.Device) []ProcessUtilization {
	samples, ret := h.GetProcessUtilization(0)
	if ret != nvml.SUCCESS {
		return nil
	}
	latest := map[uint32]nvml.ProcessUtilizationSample{}
	for _, p := range samples {
		if cur, ok := latest[p.Pid]; !ok || p.TimeStamp >= cur.TimeStamp {
			latest[p.Pid] = p
		}
	}
	out := make([]ProcessUtilization, 0, len(latest))
	for pid, p := range latest {
		out = append(out, ProcessUtilization{PID: int(pid), SMPercent: p.SmUtil})
	}
	slices.SortFunc(out, func(a, b ProcessUtilization) int { return a.PID - b.PID })
	return out
}

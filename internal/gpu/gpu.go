// Package gpu is gpuwarden's view of the GPUs in a node: a small interface shaped for the
// controllers, an adapter over NVML (github.com/NVIDIA/go-nvml), and the domain types both
// speak. The simulated GPUs of --fake-gpus live in the fakegpu package.
package gpu

import (
	"context"
	"errors"
	"fmt"
)

// MIGMode says whether a GPU is partitioned.
type MIGMode string

// MIG modes.
const (
	MIGEnabled     MIGMode = "Enabled"
	MIGDisabled    MIGMode = "Disabled"
	MIGUnsupported MIGMode = "Unsupported"
)

// Health says whether a GPU can be given out.
type Health string

// Health values.
const (
	Healthy   Health = "Healthy"
	Unhealthy Health = "Unhealthy" // NVML errors or XID events
	Lost      Health = "Lost"      // fell off the bus
)

// Device is one physical GPU.
type Device struct {
	Index       int
	UUID        string
	Model       string
	MemoryBytes uint64
	MIG         MIGMode
	// TotalSlices is the GPU's number of compute slices (7 on A100 and H100); 0 without MIG.
	TotalSlices int
	// Instances are the MIG instances when MIG is enabled.
	Instances     []MIGInstance
	Health        Health
	HealthMessage string
	// UtilizationPercent is the GPU utilisation when it was read.
	UtilizationPercent uint32
	// LastXID is the last critical XID error NVML reported for the GPU, 0 if none.
	LastXID uint64
}

// MIGInstance is one MIG slice of a GPU.
type MIGInstance struct {
	UUID              string
	Profile           string // e.g. 3g.40gb
	GPUInstanceID     int
	ComputeInstanceID int
	// Slices is the instance's compute slices; its weight is Slices/TotalSlices of the GPU.
	Slices      int
	MemoryBytes uint64
}

// Process is a process using a GPU or a MIG instance.
type Process struct {
	PID             int
	UsedMemoryBytes uint64
	// DeviceUUID is the GPU's UUID, or the MIG instance's.
	DeviceUUID string
}

// Sample is a GPU's or a MIG instance's fast-moving numbers (temperature and power are in
// Telemetry, where NVML may not have them).
type Sample struct {
	UUID string
	// Parent is the GPU's UUID for a MIG instance, empty for a whole GPU.
	Parent string
	// UtilizationKnown is false where NVML gives no utilisation (MIG instances).
	UtilizationKnown   bool
	UtilizationPercent uint32
	MemoryUtilPercent  uint32
	MemoryUsedBytes    uint64
	MemoryTotalBytes   uint64
	// Processes are NVML's per-process utilisation samples, where it has them.
	Processes []ProcessUtilization
	// Telemetry is what the metrics export beyond the numbers above.
	Telemetry Telemetry
}

// Opt is a value NVML may not have: OK is false where the call is not supported (or
// failed), and such a value is never exported.
type Opt[T any] struct {
	V  T
	OK bool
}

// Some is a value NVML gave.
func Some[T any](v T) Opt[T] { return Opt[T]{V: v, OK: true} }

// Telemetry is a device's slower-moving numbers, read for the metrics (dcgm-exporter's
// default counters). A MIG instance has only Info.
type Telemetry struct {
	Info                  DeviceInfo
	Temperature           Opt[uint32] // °C
	Power                 Opt[uint32] // mW
	MemoryTemperature     Opt[uint32] // °C
	SMClockMHz            Opt[uint32]
	MemoryClockMHz        Opt[uint32]
	EnergyMillijoules     Opt[uint64] // since the driver loaded
	PCIeReplays           Opt[uint64]
	ECCCorrected          Opt[uint64] // volatile totals
	ECCUncorrected        Opt[uint64]
	RemappedCorrectable   Opt[uint64]
	RemappedUncorrectable Opt[uint64]
	RemapFailure          Opt[bool]
	// LastXID is the last XID of any kind NVML reported for the GPU, 0 if none, and XIDs
	// how many were reported since gpuwarden started.
	LastXID uint64
	XIDs    uint64
}

// DeviceInfo is what names a device in the metrics.
type DeviceInfo struct {
	Index         int    // the physical GPU's index (the parent's for a MIG instance)
	Minor         int    // /dev/nvidia<minor>; -1 where unknown
	PCIBusID      string // e.g. 00000000:3B:00.0
	Model         string
	DriverVersion string
	// MIGProfile and GPUInstanceID are set for a MIG instance.
	MIGProfile    string
	GPUInstanceID int
}

// ProcessUtilization is one process's share of a GPU's utilisation.
type ProcessUtilization struct {
	PID       int
	SMPercent uint32
}

// Backend reads the node's GPUs. Implementations are safe for concurrent use.
type Backend interface {
	// Devices lists every GPU with its MIG instances and health. A host without an NVIDIA
	// driver has no GPUs: Devices returns none and ErrNoDriver.
	Devices(ctx context.Context) ([]Device, error)
	// Processes lists the processes on every GPU and MIG instance.
	Processes(ctx context.Context) ([]Process, error)
	// Samples returns every reachable GPU's and MIG instance's current utilisation, memory,
	// temperature and power, and per-process utilisation where NVML has it.
	Samples(ctx context.Context) ([]Sample, error)
}

// ErrNoDriver says the NVIDIA driver or library is missing: the node has no usable GPUs.
var ErrNoDriver = errors.New("no NVIDIA driver: NVML could not be loaded")

// NVMLError is a failed NVML call.
type NVMLError struct {
	Op   string
	Code int
	Text string
}

func (e *NVMLError) Error() string { return fmt.Sprintf("nvml %s: %s (code %d)", e.Op, e.Text, e.Code) }

package telemetry

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpuwarden/gpuwarden/internal/gpu"
)

// Holder is who holds a GPU or a MIG instance: the labels dcgm-exporter cannot give on a
// plain Docker host.
type Holder struct {
	User, Container, Allocation string
}

// field is one dcgm-exporter counter: its name, type and help as in dcgm-exporter's
// etc/default-counters.csv, and how a sample gives its value (false: not exported).
type field struct {
	name, help string
	typ        prometheus.ValueType
	// mig: NVML gives it for a MIG instance too.
	mig   bool
	value func(s *gpu.Sample) (float64, bool)
	descs variants
}

func opt[T uint32 | uint64](o gpu.Opt[T], scale float64) (float64, bool) {
	return float64(o.V) * scale, o.OK
}

const mib = 1 << 20

var fields = []*field{
	{name: "DCGM_FI_DEV_SM_CLOCK", help: "SM clock frequency (in MHz).", typ: prometheus.GaugeValue,
		value: func(s *gpu.Sample) (float64, bool) { return opt(s.Telemetry.SMClockMHz, 1) }},
	{name: "DCGM_FI_DEV_MEM_CLOCK", help: "Memory clock frequency (in MHz).", typ: prometheus.GaugeValue,
		value: func(s *gpu.Sample) (float64, bool) { return opt(s.Telemetry.MemoryClockMHz, 1) }},
	{name: "DCGM_FI_DEV_MEMORY_TEMP", help: "Memory temperature (in C).", typ: prometheus.GaugeValue,
		value: func(s *gpu.Sample) (float64, bool) { return opt(s.Telemetry.MemoryTemperature, 1) }},
	{name: "DCGM_FI_DEV_GPU_TEMP", help: "GPU temperature (in C).", typ: prometheus.GaugeValue,
		value: func(s *gpu.Sample) (float64, bool) { return opt(s.Telemetry.Temperature, 1) }},
	{name: "DCGM_FI_DEV_POWER_USAGE", help: "Power draw (in W).", typ: prometheus.GaugeValue,
		value: func(s *gpu.Sample) (float64, bool) { return opt(s.Telemetry.Power, 1e-3) }},
	{name: "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", help: "Total energy consumption since boot (in mJ).", typ: prometheus.CounterValue,
		value: func(s *gpu.Sample) (float64, bool) { return opt(s.Telemetry.EnergyMillijoules, 1) }},
	{name: "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", help: "Total number of PCIe retries.", typ: prometheus.CounterValue,
		value: func(s *gpu.Sample) (float64, bool) { return opt(s.Telemetry.PCIeReplays, 1) }},
	{name: "DCGM_FI_DEV_GPU_UTIL", help: "GPU utilization (in %).", typ: prometheus.GaugeValue,
		value: func(s *gpu.Sample) (float64, bool) { return float64(s.UtilizationPercent), s.UtilizationKnown }},
	{name: "DCGM_FI_DEV_MEM_COPY_UTIL", help: "Memory utilization (in %).", typ: prometheus.GaugeValue,
		value: func(s *gpu.Sample) (float64, bool) { return float64(s.MemoryUtilPercent), s.UtilizationKnown }},
	{name: "DCGM_FI_DEV_FB_FREE", help: "Framebuffer memory free (in MiB).", typ: prometheus.GaugeValue, mig: true,
		value: func(s *gpu.Sample) (float64, bool) {
			return float64((s.MemoryTotalBytes - min(s.MemoryUsedBytes, s.MemoryTotalBytes)) / mib), s.MemoryTotalBytes > 0
		}},
	{name: "DCGM_FI_DEV_FB_USED", help: "Framebuffer memory used (in MiB).", typ: prometheus.GaugeValue, mig: true,
		value: func(s *gpu.Sample) (float64, bool) { return float64(s.MemoryUsedBytes / mib), s.MemoryTotalBytes > 0 }},
	{name: "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", help: "Total number of single-bit volatile ECC errors.", typ: prometheus.CounterValue,
		value: func(s *gpu.Sample) (float64, bool) { return opt(s.Telemetry.ECCCorrected, 1) }},
	{name: "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", help: "Total number of double-bit volatile ECC errors.", typ: prometheus.CounterValue,
		value: func(s *gpu.Sample) (float64, bool) { return opt(s.Telemetry.ECCUncorrected, 1) }},
	{name: "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", help: "Number of remapped rows for uncorrectable errors", typ: prometheus.CounterValue,
		value: func(s *gpu.Sample) (float64, bool) { return opt(s.Telemetry.RemappedUncorrectable, 1) }},
	{name: "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", help: "Number of remapped rows for correctable errors", typ: prometheus.CounterValue,
		value: func(s *gpu.Sample) (float64, bool) { return opt(s.Telemetry.RemappedCorrectable, 1) }},
	{name: "DCGM_FI_DEV_ROW_REMAP_FAILURE", help: "Whether remapping of rows has failed", typ: prometheus.GaugeValue,
		value: func(s *gpu.Sample) (float64, bool) {
			f := s.Telemetry.RemapFailure
			if f.V {
				return 1, f.OK
			}
			return 0, f.OK
		}},
}

// xidCount counts XIDs, so that a repeat of the same XID is seen too (DCGM_FI_DEV_XID_ERRORS
// holds only the last one's code).
var xidCountDesc = prometheus.NewDesc("gpuwarden_gpu_xid_errors_total", "XID errors NVML reported for the GPU since gpuwarden started.",
	[]string{"gpu", "UUID"}, nil)

// xidField is DCGM_FI_DEV_XID_ERRORS: the last XID, with its code and meaning as labels.
var xidField = &field{name: "DCGM_FI_DEV_XID_ERRORS", help: "Value of the last XID error encountered.", typ: prometheus.GaugeValue}

// The labels of dcgm-exporter's series: every series has base; a MIG instance's adds mig
// (whole GPUs carry none, which rules written for dcgm-exporter rely on); a held device's
// adds holder.
var (
	baseLabels   = []string{"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"}
	migLabels    = []string{"GPU_I_PROFILE", "GPU_I_ID"}
	holderLabels = []string{"user", "container", "allocation"}
	xidLabels    = []string{"err_code", "err_msg"}
)

// variants are a field's descriptors by [MIG instance][held].
type variants [2][2]*prometheus.Desc

func newVariants(name, help string, extra ...string) variants {
	var v variants
	for m := range 2 {
		for h := range 2 {
			labels := append([]string(nil), baseLabels...)
			if m == 1 {
				labels = append(labels, migLabels...)
			}
			if h == 1 {
				labels = append(labels, holderLabels...)
			}
			v[m][h] = prometheus.NewDesc(name, help, append(labels, extra...), nil)
		}
	}
	return v
}

func init() {
	for _, f := range fields {
		f.descs = newVariants(f.name, f.help)
	}
	xidField.descs = newVariants(xidField.name, xidField.help, xidLabels...)
}

// xidMessages are what NVIDIA's XID catalogue calls the common XIDs.
var xidMessages = map[uint64]string{
	0: "No Error", 13: "Graphics Engine Exception", 31: "GPU memory page fault", 43: "GPU stopped processing",
	45: "Preemptive cleanup, due to previous errors", 48: "Double Bit ECC Error", 61: "Internal micro-controller breakpoint/warning",
	62: "Internal micro-controller halt", 63: "ECC page retirement or row remapping recording event",
	64: "ECC page retirement or row remapper recording failure", 68: "NVDEC0 Exception", 74: "NVLINK Error",
	79: "GPU has fallen off the bus", 92: "High single-bit ECC error rate", 94: "Contained ECC error",
	95: "Uncontained ECC error", 119: "GSP RPC Timeout", 120: "GSP Error",
}

// labelValues are a sample's label values in the order of its descriptor.
func labelValues(s *gpu.Sample, node string, h *Holder) []string {
	info := s.Telemetry.Info
	minor := info.Minor
	if minor < 0 {
		minor = info.Index
	}
	uuid := s.UUID
	if s.Parent != "" {
		uuid = s.Parent // dcgm-exporter names the physical GPU; GPU_I_ID the instance
	}
	out := []string{strconv.Itoa(info.Index), uuid, info.PCIBusID, fmt.Sprintf("nvidia%d", minor), info.Model, node, info.DriverVersion}
	if s.Parent != "" {
		out = append(out, info.MIGProfile, strconv.Itoa(info.GPUInstanceID))
	}
	if h != nil {
		out = append(out, h.User, h.Container, h.Allocation)
	}
	return out
}

// collectDevice sends one device's series.
func collectDevice(ch chan<- prometheus.Metric, s *gpu.Sample, node string, h *Holder) {
	m, held := 0, 0
	if s.Parent != "" {
		m = 1
	}
	if h != nil {
		held = 1
	}
	labels := labelValues(s, node, h)
	for _, f := range fields {
		if m == 1 && !f.mig {
			continue
		}
		if v, ok := f.value(s); ok {
			ch <- prometheus.MustNewConstMetric(f.descs[m][held], f.typ, v, labels...)
		}
	}
	if m == 0 {
		xid := s.Telemetry.LastXID
		ch <- prometheus.MustNewConstMetric(xidField.descs[0][held], xidField.typ, float64(xid),
			append(labels, strconv.FormatUint(xid, 10), xidMessages[xid])...)
		ch <- prometheus.MustNewConstMetric(xidCountDesc, prometheus.CounterValue, float64(s.Telemetry.XIDs), labels[0], labels[1])
	}
}

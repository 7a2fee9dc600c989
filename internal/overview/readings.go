package overview

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The dcgm-exporter series a device's reading is made of (docs/metrics.md).
const (
	metricUtilization = "DCGM_FI_DEV_GPU_UTIL"
	metricMemoryUsed  = "DCGM_FI_DEV_FB_USED"
	metricMemoryFree  = "DCGM_FI_DEV_FB_FREE"
	metricTemperature = "DCGM_FI_DEV_GPU_TEMP"
	metricPower       = "DCGM_FI_DEV_POWER_USAGE"
)

const mib = 1 << 20

// Key is the key of a device's reading: a whole GPU's UUID, or for a MIG instance its
// GPU's UUID and GPU instance ID (dcgm-exporter names the physical GPU in UUID).
func Key(uuid string, gpuInstanceID int32, mig bool) string {
	if !mig {
		return uuid
	}
	return uuid + "/" + strconv.Itoa(int(gpuInstanceID))
}

// Readings reads the devices' readings out of metric families (a scrape of a node's
// /metrics, or gpuwarden's own registry), by Key.
func Readings(families []*dto.MetricFamily) map[string]Reading {
	out := map[string]Reading{}
	free := map[string]int64{}
	for _, f := range families {
		name := f.GetName()
		switch name {
		case metricUtilization, metricMemoryUsed, metricMemoryFree, metricTemperature, metricPower:
		default:
			continue
		}
		for _, m := range f.GetMetric() {
			uuid, gi := "", ""
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "UUID":
					uuid = l.GetValue()
				case "GPU_I_ID":
					gi = l.GetValue()
				}
			}
			if uuid == "" {
				continue
			}
			key := uuid
			if gi != "" {
				key += "/" + gi
			}
			v := value(m)
			r := out[key]
			switch name {
			case metricUtilization:
				r.UtilizationPercent = &v
			case metricMemoryUsed:
				r.MemoryUsedBytes = ptr(int64(v) * mib)
			case metricMemoryFree:
				free[key] = int64(v) * mib
			case metricTemperature:
				r.TemperatureC = &v
			case metricPower:
				r.PowerWatts = &v
			}
			out[key] = r
		}
	}
	// dcgm-exporter has no total series: it is used + free.
	for k, f := range free {
		if r := out[k]; r.MemoryUsedBytes != nil {
			r.MemoryTotalBytes = ptr(*r.MemoryUsedBytes + f)
			out[k] = r
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// maxMetricsBytes bounds a scrape read.
const maxMetricsBytes = 32 << 20

// Scrape reads the devices' readings from a node's metrics endpoint (Prometheus text).
func Scrape(ctx context.Context, url string) (map[string]Reading, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("the metrics address %q: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the GPUs' metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading the GPUs' metrics at %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, maxMetricsBytes))
	if err != nil {
		return nil, fmt.Errorf("reading the GPUs' metrics at %s: %w", url, err)
	}
	list := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		list = append(list, f)
	}
	return Readings(list), nil
}

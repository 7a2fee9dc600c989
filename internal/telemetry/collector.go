package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	sampleAgeDesc = prometheus.NewDesc("gpuwarden_gpu_sample_age_seconds",
		"Seconds since the GPUs were last read for the metrics; it grows while an NVML call hangs.", nil, nil)
	sampleIntervalDesc = prometheus.NewDesc("gpuwarden_gpu_sample_interval_seconds",
		"How often the GPUs are read for the metrics.", nil, nil)
	nvmlUpDesc = prometheus.NewDesc("gpuwarden_nvml_up",
		"1 while the last reading of the GPUs succeeded, 0 when NVML failed or has no driver.", nil, nil)
)

// Collector renders the Sampler's latest reading at scrape time: dcgm-exporter's series
// for every GPU and MIG instance, with the holder's labels where one is held. It never
// calls NVML. It is unchecked (describes nothing): a MIG instance's series carry labels
// a whole GPU's do not, as dcgm-exporter's do.
type Collector struct {
	Sampler *Sampler
	// Node is the Hostname label.
	Node string
	// Holders gives who holds each device, by GPU or MIG instance UUID; it must not block.
	Holders func() map[string]Holder
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	snap, age := c.Sampler.Latest()
	ch <- prometheus.MustNewConstMetric(sampleAgeDesc, prometheus.GaugeValue, age.Seconds())
	ch <- prometheus.MustNewConstMetric(sampleIntervalDesc, prometheus.GaugeValue, c.Sampler.Interval.Seconds())
	up := 1.0
	if snap.Err != nil || snap.At.IsZero() { // failing, no driver, or not read yet
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(nvmlUpDesc, prometheus.GaugeValue, up)
	var holders map[string]Holder
	if c.Holders != nil {
		holders = c.Holders()
	}
	for i := range snap.Samples {
		s := &snap.Samples[i]
		var h *Holder
		if x, ok := holders[s.UUID]; ok {
			h = &x
		}
		collectDevice(ch, s, c.Node, h)
	}
}

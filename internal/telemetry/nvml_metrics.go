package telemetry

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpuwarden/gpuwarden/internal/gpu"
)

var (
	nvmlCallSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gpuwarden_nvml_call_duration_seconds",
		Help:    "Duration of gpuwarden's NVML reads, by call (devices, processes, samples); NVML calls serialise on the driver's lock.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
	}, []string{"call"})
	nvmlErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_nvml_errors_total",
		Help: "NVML reads that failed, by call (devices, processes, samples).",
	}, []string{"call"})
)

// Metrics are the collectors of this package that are not per manager, with a zero series
// for every call.
func Metrics() []prometheus.Collector {
	for _, call := range []string{"devices", "processes", "samples"} {
		nvmlCallSeconds.WithLabelValues(call)
		nvmlErrors.WithLabelValues(call)
	}
	return []prometheus.Collector{nvmlCallSeconds, nvmlErrors}
}

// Instrumented measures every read of a GPU back end.
type Instrumented struct{ gpu.Backend }

var _ gpu.Backend = Instrumented{}

func observe(call string, start time.Time, err error) {
	nvmlCallSeconds.WithLabelValues(call).Observe(time.Since(start).Seconds())
	if err != nil {
		nvmlErrors.WithLabelValues(call).Inc()
	}
}

// Devices implements gpu.Backend.
func (i Instrumented) Devices(ctx context.Context) (out []gpu.Device, err error) {
	defer func(start time.Time) { observe("devices", start, err) }(time.Now())
	return i.Backend.Devices(ctx)
}

// Processes implements gpu.Backend.
func (i Instrumented) Processes(ctx context.Context) (out []gpu.Process, err error) {
	defer func(start time.Time) { observe("processes", start, err) }(time.Now())
	return i.Backend.Processes(ctx)
}

// Samples implements gpu.Backend.
func (i Instrumented) Samples(ctx context.Context) (out []gpu.Sample, err error) {
	defer func(start time.Time) { observe("samples", start, err) }(time.Now())
	return i.Backend.Samples(ctx)
}

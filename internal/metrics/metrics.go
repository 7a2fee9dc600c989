package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"

	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/telemetry"
)

var (
	ledgerWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_ledger_writes_total",
		Help: "Writes of the allocation ledger by this node's passes, by result: written, or conflict (another pass wrote it first; the pass decides again).",
	}, []string{"result"})
	allocationRejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_allocation_rejections_total",
		Help: "GPUAllocations rejected, by reason (QuotaExceeded, ContainerLimitExceeded, MaxContainersExceeded, FullGPUNotAllowed, Unsatisfiable, SourceNotAllowed, …).",
	}, []string{"reason"})
	unmanagedByHolder = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gpuwarden_unmanaged_gpu_process",
		Help: "GPU processes that belong to no allocation (seen in two scans in a row), by kind (container, host), user, container and GPU.",
	}, []string{"kind", "user", "container", "UUID"})
	scrapeSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "gpuwarden_scrape_duration_seconds",
		Help:    "Time gpuwarden's own collectors took to render a scrape of /metrics (served from memory: no NVML or Docker call).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 3, 10),
	})
)

// processMetrics are the collectors shared by every manager of the process.
func processMetrics() []prometheus.Collector {
	return append([]prometheus.Collector{
		dockerOutages, containerEvents, containerActions, unallocatedGPUContainers, unmanagedProcesses, unmanagedDetections,
		containersByIdleState, lifecycleNotices, stopDelaySeconds, sampleRoundSeconds, webhookPosts,
		allocationRejections, unmanagedByHolder, scrapeSeconds, ledgerWrites,
	}, append(telemetry.Metrics(), gateway.Metrics()...)...)
}

// initSeries creates the series of every known label value at zero, so that rate() and
// increase() see the first event and dashboards show a 0, not "no data".
func initSeries() {
	for _, r := range []string{"written", "conflict"} {
		ledgerWrites.WithLabelValues(r)
	}
	modes := []string{string(gpuwardenv1alpha1.ModeEnforce), string(gpuwardenv1alpha1.ModeDryRun), string(gpuwardenv1alpha1.ModeNotifyOnly)}
	for _, mode := range modes {
		for _, action := range []lifecycle.Action{lifecycle.Stop, lifecycle.Remove, lifecycle.ReleaseGPUs} {
			containerActions.WithLabelValues(string(action), mode)
		}
		for _, kind := range []string{lifecycle.IdleWarning, lifecycle.IdleInfo, lifecycle.IdleStop, lifecycle.RuntimeWarning, lifecycle.RuntimeStop} {
			lifecycleNotices.WithLabelValues(kind, mode)
		}
	}
	for _, reason := range []string{gpuwardenv1alpha1.ReasonQuotaExceeded, gpuwardenv1alpha1.ReasonContainerLimitExceeded,
		gpuwardenv1alpha1.ReasonMaxContainersExceeded, gpuwardenv1alpha1.ReasonFullGPUNotAllowed, gpuwardenv1alpha1.ReasonUnsatisfiable,
		gpuwardenv1alpha1.ReasonSourceNotAllowed, gpuwardenv1alpha1.ReasonNoCapacity} {
		allocationRejections.WithLabelValues(reason)
		unallocatedGPUContainers.WithLabelValues(reason)
	}
	for _, kind := range []string{"container", "host"} {
		unmanagedProcesses.WithLabelValues(kind)
		unmanagedDetections.WithLabelValues(kind)
	}
	for _, reason := range []string{"idle", "max_runtime"} {
		stopDelaySeconds.WithLabelValues(reason)
	}
	for _, v := range []lifecycle.Verdict{lifecycle.Active, lifecycle.Idle, lifecycle.NoVerdict, lifecycle.InGrace, verdictExempt} {
		containersByIdleState.WithLabelValues(string(v))
	}
	for _, result := range []string{"ok", "failed"} {
		webhookPosts.WithLabelValues(result)
	}
}

var initOnce sync.Once

// registerProcessMetrics registers the process-wide collectors once; a second manager in
// the same process (tests run several) shares them.
func registerProcessMetrics(reg prometheus.Registerer) error {
	initOnce.Do(initSeries)
	for _, c := range append(processMetrics(), live) {
		if err := reg.Register(c); err != nil && !errors.As(err, &prometheus.AlreadyRegisteredError{}) {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}

// live are the collectors of the managers running in this process. It is registered once
// and unchecked (it describes nothing): dcgm-exporter's MIG series carry labels its whole-GPU
// series do not.
var live = &liveCollectors{}

type liveCollectors struct {
	mu  sync.Mutex
	set map[*registered]bool
}

func (l *liveCollectors) Describe(chan<- *prometheus.Desc) {}

func (l *liveCollectors) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	l.mu.Lock()
	list := make([]*registered, 0, len(l.set))
	for r := range l.set {
		list = append(list, r)
	}
	l.mu.Unlock()
	for _, r := range list {
		for _, c := range r.collectors {
			c.Collect(ch)
		}
	}
	scrapeSeconds.Observe(time.Since(start).Seconds())
}

// registered serves one manager's collectors while it runs, so that the series of a
// stopped manager never linger.
type registered struct {
	collectors []prometheus.Collector
}

func (r *registered) NeedLeaderElection() bool { return false }

func (r *registered) Start(ctx context.Context) error {
	live.mu.Lock()
	if live.set == nil {
		live.set = map[*registered]bool{}
	}
	live.set[r] = true
	live.mu.Unlock()
	<-ctx.Done()
	live.mu.Lock()
	delete(live.set, r)
	live.mu.Unlock()
	return nil
}

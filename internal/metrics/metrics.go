// Package metrics defines gpuwarden's own Prometheus metrics (the controllers' counters and
// histograms, registered once by Register) and serves each manager's scrape-time collectors.
package metrics

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
	LedgerWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_ledger_writes_total",
		Help: "Writes of the allocation ledger by this node's passes, by result: written, or conflict (another pass wrote it first; the pass decides again).",
	}, []string{"result"})
	AllocationRejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_allocation_rejections_total",
		Help: "GPUAllocations rejected, by reason (QuotaExceeded, ContainerLimitExceeded, MaxContainersExceeded, FullGPUNotAllowed, Unsatisfiable, SourceNotAllowed, …).",
	}, []string{"reason"})
	UnmanagedByHolder = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gpuwarden_unmanaged_gpu_process",
		Help: "GPU processes that belong to no allocation (seen in two scans in a row), by kind (container, host), user, container and GPU.",
	}, []string{"kind", "user", "container", "UUID"})
	ReservationSteps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_reservation_steps_total",
		Help: "GPUReservation steps, by step (accepted, rejected, active, ended, released_unused, displaced) and reason (for rejected).",
	}, []string{"step", "reason"})
	Reservations = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gpuwarden_reservations",
		Help: "GPUReservations by phase (Pending, Accepted, Active, Ended, Rejected), as the allocator last saw them.",
	}, []string{"phase"})
	ScrapeSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "gpuwarden_scrape_duration_seconds",
		Help:    "Time gpuwarden's own collectors took to render a scrape of /metrics (served from memory: no NVML or Docker call).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 3, 10),
	})
)

// Collectors are the collectors shared by every manager of the process.
func Collectors() []prometheus.Collector {
	return append([]prometheus.Collector{
		DockerOutages, ContainerEvents, ContainerActions, CheckpointHooks, UnallocatedGPUContainers, UnmanagedProcesses, UnmanagedDetections,
		ContainersByIdleState, LifecycleNotices, StopDelaySeconds, SampleRoundSeconds, NoticeDeliveries,
		AllocationRejections, UnmanagedByHolder, ScrapeSeconds, LedgerWrites, ReservationSteps, Reservations,
	}, append(telemetry.Metrics(), gateway.Metrics()...)...)
}

// initSeries creates the series of every known label value at zero, so that rate() and
// increase() see the first event and dashboards show a 0, not "no data".
func initSeries() {
	for _, r := range []string{"written", "conflict"} {
		LedgerWrites.WithLabelValues(r)
	}
	for _, s := range []string{"accepted", "active", "ended", "released_unused", "displaced"} {
		ReservationSteps.WithLabelValues(s, "")
	}
	for _, p := range []gpuwardenv1alpha1.ReservationPhase{gpuwardenv1alpha1.ReservationPending, gpuwardenv1alpha1.ReservationAccepted,
		gpuwardenv1alpha1.ReservationActive, gpuwardenv1alpha1.ReservationEnded, gpuwardenv1alpha1.ReservationRejected} {
		Reservations.WithLabelValues(string(p))
	}
	for _, o := range []string{"ok", "failed", "timeout", "error"} {
		CheckpointHooks.WithLabelValues(o)
	}
	modes := []string{string(gpuwardenv1alpha1.ModeEnforce), string(gpuwardenv1alpha1.ModeDryRun), string(gpuwardenv1alpha1.ModeNotifyOnly)}
	for _, mode := range modes {
		for _, action := range []lifecycle.Action{lifecycle.Stop, lifecycle.Remove, lifecycle.ReleaseGPUs} {
			ContainerActions.WithLabelValues(string(action), mode)
		}
		for _, kind := range []string{lifecycle.IdleWarning, lifecycle.IdleInfo, lifecycle.IdleStop, lifecycle.RuntimeWarning, lifecycle.RuntimeStop} {
			LifecycleNotices.WithLabelValues(kind, mode)
		}
	}
	for _, reason := range []string{gpuwardenv1alpha1.ReasonQuotaExceeded, gpuwardenv1alpha1.ReasonContainerLimitExceeded,
		gpuwardenv1alpha1.ReasonMaxContainersExceeded, gpuwardenv1alpha1.ReasonFullGPUNotAllowed, gpuwardenv1alpha1.ReasonUnsatisfiable,
		gpuwardenv1alpha1.ReasonSourceNotAllowed, gpuwardenv1alpha1.ReasonNoCapacity, gpuwardenv1alpha1.ReasonBudgetExceeded} {
		AllocationRejections.WithLabelValues(reason)
		UnallocatedGPUContainers.WithLabelValues(reason)
	}
	for _, kind := range []string{"container", "host"} {
		UnmanagedProcesses.WithLabelValues(kind)
		UnmanagedDetections.WithLabelValues(kind)
	}
	for _, reason := range []string{"idle", "max_runtime"} {
		StopDelaySeconds.WithLabelValues(reason)
	}
	for _, v := range []lifecycle.Verdict{lifecycle.Active, lifecycle.Idle, lifecycle.NoVerdict, lifecycle.InGrace, lifecycle.Exempt} {
		ContainersByIdleState.WithLabelValues(string(v))
	}
	for _, channel := range []string{"file", "webhook", "chat", "email"} {
		for _, result := range []string{"ok", "failed", "dropped", "refused"} {
			NoticeDeliveries.WithLabelValues(channel, result)
		}
	}
}

// Reset empties every process-wide metric and makes its bounded series again, as a fresh
// process has them (tests that render a golden exposition).
func Reset() {
	for _, c := range Collectors() {
		if v, ok := c.(interface{ Reset() }); ok {
			v.Reset()
		}
	}
	initSeries()
}

var initOnce sync.Once

// Register registers gpuwarden's process-wide metrics with reg once, with every series of a
// bounded label set present from the start; a second manager in the same process (tests
// run several) shares them. The per-manager collectors are served through Scraped.
func Register(reg prometheus.Registerer) error {
	initOnce.Do(initSeries)
	for _, c := range append(Collectors(), running) {
		if err := reg.Register(c); err != nil && !errors.As(err, &prometheus.AlreadyRegisteredError{}) {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}

// running is the union of the Scraped collectors of the managers running in this process.
// It is registered once and unchecked (it describes nothing): dcgm-exporter's MIG series
// carry labels its whole-GPU series do not.
var running = &runningCollectors{}

type runningCollectors struct {
	mu  sync.Mutex
	set map[*Scraped]bool
}

func (l *runningCollectors) Describe(chan<- *prometheus.Desc) {}

func (l *runningCollectors) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	l.mu.Lock()
	list := make([]*Scraped, 0, len(l.set))
	for r := range l.set {
		list = append(list, r)
	}
	l.mu.Unlock()
	for _, r := range list {
		for _, c := range r.Collectors {
			c.Collect(ch)
		}
	}
	ScrapeSeconds.Observe(time.Since(start).Seconds())
}

func (l *runningCollectors) add(r *Scraped) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set == nil {
		l.set = map[*Scraped]bool{}
	}
	l.set[r] = true
}

func (l *runningCollectors) remove(r *Scraped) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.set, r)
}

// Scraped serves one manager's scrape-time collectors while it runs (add it to the manager
// as a runnable), so that the series of a stopped manager never linger.
type Scraped struct {
	Collectors []prometheus.Collector
}

// NeedLeaderElection: a standby serves its metrics too.
func (r *Scraped) NeedLeaderElection() bool { return false }

// Start serves the collectors until ctx ends.
func (r *Scraped) Start(ctx context.Context) error {
	running.add(r)
	<-ctx.Done()
	running.remove(r)
	return nil
}

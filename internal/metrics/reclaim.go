package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	ContainersByIdleState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gpuwarden_containers_idle_state",
		Help: "Running GPU containers by idle state at the last sample round (active, idle, unknown, grace, exempt).",
	}, []string{"state"})
	LifecycleNotices = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_lifecycle_notices_total",
		Help: "Idle and runtime warnings and stops due, by kind (idle_warning, idle_notice, idle_stop, runtime_warning, runtime_stop) and mode.",
	}, []string{"kind", "mode"})
	StopDelaySeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gpuwarden_lifecycle_stop_delay_seconds",
		Help:    "Delay from the idle or runtime deadline to the stop, by reason (idle, max_runtime).",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 900, 3600},
	}, []string{"reason"})
	SampleRoundSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "gpuwarden_sample_round_duration_seconds",
		Help:    "Duration of one sample round over every running GPU container.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	})
	NoticeDeliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_notice_deliveries_total",
		Help: "Notices delivered, by channel (file, webhook: a policy's, chat: a user's webhook, email) and result (ok, failed after retries, dropped: the queue was full, refused: an address notices must not reach).",
	}, []string{"channel", "result"})
)

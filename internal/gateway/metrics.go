package gateway

import (
	"encoding/json"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_gateway_requests_total",
		Help: "Requests to the Docker gateway, by endpoint class (ping, list, create, container, exec, image, build, network, volume, events, kubeconfig, other), outcome (allowed, refused, failed) and caller kind (user, admin).",
	}, []string{"class", "outcome", "caller"})
	allocationWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "gpuwarden_gateway_allocation_wait_seconds",
		Help:    "How long a create through the gateway waited for its GPUAllocation to be decided.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180},
	})
	openStreams = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gpuwarden_gateway_open_streams",
		Help: "Attach and exec streams open through the gateway.",
	})
)

// Metrics are the gateway's collectors, for the manager to register.
func Metrics() []prometheus.Collector {
	return []prometheus.Collector{requests, allocationWait, openStreams}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	DockerUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gpuwarden_docker_up",
		Help: "1 while the Docker engine is listed and its events stream open, 0 during an outage (nothing is released then).",
	})
	DockerOutages = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gpuwarden_docker_outages_total",
		Help: "Times the Docker engine could not be listed or its events stream broke.",
	})
	ContainerEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_docker_container_events_total",
		Help: "Container events seen, by action (create, start, stop, die, destroy, …).",
	}, []string{"action"})
	ContainerActions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_lifecycle_actions_total",
		Help: "Actions gpuwarden took or would take on containers, by action (remove, release, stop) and mode (Enforce, DryRun, NotifyOnly).",
	}, []string{"action", "mode"})
	CheckpointHooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_checkpoint_hooks_total",
		Help: "Checkpoint hooks run before a stop gpuwarden made, by outcome (ok, failed, timeout, error).",
	}, []string{"outcome"})
	UnallocatedGPUContainers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_unallocated_gpu_containers_total",
		Help: "GPU containers created outside gpuwarden that could not be given an allocation, by reason (QuotaExceeded, …, OwnerUnknown).",
	}, []string{"reason"})
	UnmanagedProcesses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gpuwarden_unmanaged_gpu_processes",
		Help: "GPU processes that belong to no allocation, seen in two scans in a row, by kind (container, host).",
	}, []string{"kind"})
	UnmanagedDetections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuwarden_unmanaged_gpu_detections_total",
		Help: "Unmanaged GPU processes detected, by kind (container, host).",
	}, []string{"kind"})
)

package controllers

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/proc"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/telemetry"
	"github.com/gpuwarden/gpuwarden/internal/watchdog"
)

// Options are what every controller of one node needs.
type Options struct {
	// NodeName is the GPU node the controllers govern.
	NodeName string
	// Clock is the time source of every controller; the real clock when nil.
	Clock clock.Clock
	// GPUs is the node's GPU back end; nil runs no inventory.
	GPUs gpu.Backend
	// Groups resolves users' host groups; the host's group database (cached) when nil.
	Groups resolve.Groups
	// Audit is the audit log; nil records nothing.
	Audit audit.Logger
	// Docker is the node's Docker engine; nil runs no container controllers.
	Docker docker.Engine
	// DockerRetry is the first wait before reconnecting to Docker.
	DockerRetry time.Duration
	// Proc is the /proc tree GPU processes are mapped through.
	Proc proc.FS
	// ScanInterval is how often GPU processes are checked for unmanaged use.
	ScanInterval time.Duration
	// SampleInterval is how often running GPU containers are sampled for idle detection.
	SampleInterval time.Duration
	// Retention is how long released allocations stay visible (DefaultRetention when 0).
	Retention time.Duration
	// TelemetryInterval is how often the GPUs are read for the metrics; by default the
	// shorter of telemetry.DefaultInterval and SampleInterval; negative: never (no /metrics).
	TelemetryInterval time.Duration
	// AllowLocalWebhooks lets policies post notices to loopback and link-local addresses.
	AllowLocalWebhooks bool
	// Gateway serves the Docker API in front of Docker when its Socket is set.
	Gateway GatewayOptions
	// Health receives the checks of the parts whose wedging should restart the process
	// (the Docker engine answering, the sampler's rounds); optional.
	Health *watchdog.Health
}

// DefaultOptions are the defaults of the fields a command line sets.
func DefaultOptions() Options {
	return Options{DockerRetry: DefaultDockerRetry, ScanInterval: DefaultScanInterval, SampleInterval: DefaultSampleInterval, Retention: DefaultRetention, Proc: proc.FS{Root: "/proc"}}
}

// Setup registers every controller of a node with mgr.
func Setup(mgr ctrl.Manager, o Options) error {
	if o.NodeName == "" {
		return fmt.Errorf("a node name is required")
	}
	def := DefaultOptions()
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Audit == nil {
		o.Audit = audit.Discard
	}
	if o.DockerRetry == 0 {
		o.DockerRetry = def.DockerRetry
	}
	if o.ScanInterval == 0 {
		o.ScanInterval = def.ScanInterval
	}
	if o.SampleInterval == 0 {
		o.SampleInterval = def.SampleInterval
	}
	if o.TelemetryInterval == 0 {
		o.TelemetryInterval = min(telemetry.DefaultInterval, o.SampleInterval)
	}
	if o.GPUs != nil {
		o.GPUs = telemetry.Instrumented{Backend: o.GPUs}
	}
	if o.Groups == nil {
		// Group membership changes rarely; a minute's delay is the price of not asking
		// NSS (and LDAP behind it) for every user on every pass.
		o.Groups = &resolve.CachedGroups{Groups: resolve.HostGroups{}, TTL: time.Minute, Clock: o.Clock}
	}
	if err := registerProcessMetrics(metrics.Registry); err != nil {
		return err
	}
	gov := &Governance{Client: mgr.GetCache(), NodeName: o.NodeName, Clock: o.Clock, Quotas: &QuotaBook{}}
	collectors := []prometheus.Collector{gov}
	if o.GPUs != nil && o.TelemetryInterval > 0 {
		sampler := &telemetry.Sampler{GPUs: o.GPUs, Interval: o.TelemetryInterval, Clock: o.Clock}
		if err := mgr.Add(sampler); err != nil {
			return fmt.Errorf("adding the GPU telemetry sampler: %w", err)
		}
		collectors = append(collectors, &telemetry.Collector{Sampler: sampler, Node: o.NodeName, Holders: gov.Holders})
	}
	if err := mgr.Add(&registered{collectors: collectors}); err != nil {
		return fmt.Errorf("adding the metrics: %w", err)
	}
	if err := (&GPUQuotaReconciler{Client: mgr.GetClient(), Audit: o.Audit}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the GPUQuota controller: %w", err)
	}
	if err := (&ContainerPolicyReconciler{
		Client: mgr.GetClient(), Clock: o.Clock, Recorder: mgr.GetEventRecorder("gpuwarden-containerpolicy"), Audit: o.Audit,
		// Host names are looked up too: a name may point at the machine itself.
		AllowLocalWebhooks: o.AllowLocalWebhooks, Resolver: net.DefaultResolver,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the ContainerPolicy controller: %w", err)
	}
	if err := (&AllocationReconciler{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), NodeName: o.NodeName, GPUs: o.GPUs, Groups: o.Groups, Clock: o.Clock,
		Recorder: mgr.GetEventRecorder("gpuwarden-allocation"), Audit: o.Audit, Quotas: gov.Quotas, Retention: o.Retention,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the allocation controller: %w", err)
	}
	if o.GPUs != nil {
		if err := (&InventoryReconciler{Client: mgr.GetClient(), GPUs: o.GPUs, NodeName: o.NodeName, Clock: o.Clock}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the inventory controller: %w", err)
		}
	}
	if o.Docker != nil {
		return setupContainers(mgr, o, gov)
	}
	return nil
}

// setupContainers registers what watches and acts on the node's Docker containers.
func setupContainers(mgr ctrl.Manager, o Options, gov *Governance) error {
	// Only where a Docker engine is configured: its absence is no outage.
	if err := metrics.Registry.Register(dockerUp); err != nil && !errors.As(err, &prometheus.AlreadyRegisteredError{}) {
		return fmt.Errorf("registering metrics: %w", err)
	}
	if o.Health != nil {
		o.Health.Add("docker", watchdog.Responds(o.Docker.Ping))
	}
	store := NewContainerStore()
	owners := &Owners{Proc: o.Proc}
	changed := make(chan event.GenericEvent, 1024)
	if err := mgr.Add(&ContainerWatcher{
		Engine: o.Docker, Store: store, Client: mgr.GetClient(), NodeName: o.NodeName, Clock: o.Clock,
		Recorder: mgr.GetEventRecorder("gpuwarden-container"), Audit: o.Audit, Owners: owners, Changed: changed, RetryInterval: o.DockerRetry,
	}); err != nil {
		return fmt.Errorf("adding the container watcher: %w", err)
	}
	containers := &ContainerReconciler{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Engine: o.Docker, Store: store, NodeName: o.NodeName, Groups: o.Groups, Clock: o.Clock,
		Recorder: mgr.GetEventRecorder("gpuwarden-container"), Audit: o.Audit, Owners: owners, Changed: changed,
	}
	if err := containers.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the container controller: %w", err)
	}
	notifier := &Notifier{Engine: o.Docker, AllowLocal: o.AllowLocalWebhooks, Resolver: net.DefaultResolver}
	reclaim := &Reclaimer{Containers: containers, Notifier: notifier}
	gov.Store, gov.Reclaim = store, reclaim
	if err := mgr.Add(notifier); err != nil {
		return fmt.Errorf("adding the notifier: %w", err)
	}
	sampler := &Sampler{Client: mgr.GetClient(), Engine: o.Docker, GPUs: o.GPUs, Proc: o.Proc, Store: store, NodeName: o.NodeName,
		Clock: o.Clock, Interval: o.SampleInterval, Reclaim: reclaim, Audit: o.Audit,
		// A round that has not finished in three intervals (and a minute) is stuck.
		Heartbeat: &watchdog.Heartbeat{Clock: o.Clock, MaxAge: 3*o.SampleInterval + time.Minute}}
	if o.Health != nil {
		o.Health.Add("sampler", sampler.Heartbeat.Check)
	}
	if err := mgr.Add(sampler); err != nil {
		return fmt.Errorf("adding the sampler: %w", err)
	}
	if err := mgr.AddMetricsServerExtraHandler(ExplainPath, &Explainer{Reclaim: reclaim, Store: store, Interval: o.SampleInterval}); err != nil {
		return fmt.Errorf("serving %s: %w", ExplainPath, err)
	}
	if o.Gateway.Socket != "" {
		if err := setupGateway(mgr, o); err != nil {
			return err
		}
		if err := mgr.Add(&GatewayStrays{Client: mgr.GetClient(), Store: store, NodeName: o.NodeName, Clock: o.Clock,
			After: o.Gateway.BindWait + time.Minute, Interval: 10 * time.Second}); err != nil {
			return fmt.Errorf("adding the sweep of gateway allocations without a container: %w", err)
		}
	}
	if o.GPUs == nil {
		return nil
	}
	if err := mgr.Add(&UnmanagedScanner{
		Client: mgr.GetClient(), GPUs: o.GPUs, Proc: o.Proc, Owners: owners, Store: store, NodeName: o.NodeName,
		Recorder: mgr.GetEventRecorder("gpuwarden-detection"), Audit: o.Audit, Interval: o.ScanInterval,
	}); err != nil {
		return fmt.Errorf("adding the unmanaged GPU scanner: %w", err)
	}
	return nil
}

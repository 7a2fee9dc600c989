// Package controllers wires gpuwarden's controllers of one node: each lives in a package of
// its own below (allocation, containers, reclaim, gateway, inventory, specs, unmanaged,
// governance), and Setup is the one place that builds and connects them.
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
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/gpuwarden/gpuwarden/controllers/allocation"
	"github.com/gpuwarden/gpuwarden/controllers/containers"
	"github.com/gpuwarden/gpuwarden/controllers/gateway"
	"github.com/gpuwarden/gpuwarden/controllers/governance"
	"github.com/gpuwarden/gpuwarden/controllers/inventory"
	"github.com/gpuwarden/gpuwarden/controllers/reclaim"
	"github.com/gpuwarden/gpuwarden/controllers/specs"
	"github.com/gpuwarden/gpuwarden/controllers/unmanaged"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	internalallocation "github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/proc"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/telemetry"
	"github.com/gpuwarden/gpuwarden/internal/watchdog"
)

// Defaults of the controllers that a command line sets.
const (
	DefaultDockerRetry     = containers.DefaultDockerRetry
	DefaultScanInterval    = unmanaged.DefaultScanInterval
	DefaultSampleInterval  = reclaim.DefaultSampleInterval
	DefaultRetention       = allocation.DefaultRetention
	DefaultGatewayBindWait = gateway.DefaultBindWait
	// DefaultGatewayNoticeAfter is how long a create waits before its start is told.
	DefaultGatewayNoticeAfter = gateway.DefaultNoticeAfter
	// DefaultFairShareHalfLife is the queue's fair-share half-life.
	DefaultFairShareHalfLife = internalallocation.DefaultHalfLife
	// ExplainPath serves `gpuwarden explain container` beside /metrics.
	ExplainPath = reclaim.ExplainPath
)

// GatewayOptions configure the Docker gateway.
type GatewayOptions = gateway.Options

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
	// ClusterAllocator has the nodes' controllers elect one allocator for all of them (a
	// Lease); unset, each decides for its own node. AllocatorLease is that Lease's
	// duration (allocation.DefaultLeaseDuration when 0; renewed within two thirds of it).
	ClusterAllocator bool
	AllocatorLease   time.Duration
	// LedgerFlushAt is how many changes the ledger's head holds before they move to its
	// per-node shards (ledger.DefaultFlushAt when 0).
	LedgerFlushAt int
	// FairShareHalfLife is how fast the queue's fair share forgets past use
	// (DefaultFairShareHalfLife when 0); FairShareAgeWeight the fair-share credit of an
	// hour waited (0: age only breaks ties).
	FairShareHalfLife  time.Duration
	FairShareAgeWeight float64
	// TelemetryInterval is how often the GPUs are read for the metrics; by default the
	// shorter of telemetry.DefaultInterval and SampleInterval; negative: never (no /metrics).
	TelemetryInterval time.Duration
	// AllowLocalWebhooks lets policies post notices to loopback and link-local addresses.
	AllowLocalWebhooks bool
	// Mail sends notices by e-mail; none when nil.
	Mail notify.Mailer
	// EmailTemplate makes the address of a user who sets none of their own ("{user}@…").
	EmailTemplate string
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
	if err := metrics.Register(crmetrics.Registry); err != nil {
		return err
	}
	quotas := &internalallocation.QuotaBook{}
	gov := &governance.Collector{Client: mgr.GetCache(), NodeName: o.NodeName, Clock: o.Clock, Quotas: quotas}
	collectors := []prometheus.Collector{gov}
	if o.GPUs != nil && o.TelemetryInterval > 0 {
		sampler := &telemetry.Sampler{GPUs: o.GPUs, Interval: o.TelemetryInterval, Clock: o.Clock}
		if err := mgr.Add(sampler); err != nil {
			return fmt.Errorf("adding the GPU telemetry sampler: %w", err)
		}
		collectors = append(collectors, &telemetry.Collector{Sampler: sampler, Node: o.NodeName, Holders: gov.Holders})
	}
	if err := mgr.Add(&metrics.Scraped{Collectors: collectors}); err != nil {
		return fmt.Errorf("adding the metrics: %w", err)
	}
	if err := (&specs.GPUQuotaReconciler{Client: mgr.GetClient(), Audit: o.Audit}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the GPUQuota controller: %w", err)
	}
	if err := (&specs.NotificationProfileReconciler{
		Client: mgr.GetClient(), AllowLocalWebhooks: o.AllowLocalWebhooks, Resolver: net.DefaultResolver,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the notification profile controller: %w", err)
	}
	if err := (&specs.ContainerPolicyReconciler{
		Client: mgr.GetClient(), Clock: o.Clock, Recorder: mgr.GetEventRecorder("gpuwarden-containerpolicy"), Audit: o.Audit,
		// Host names are looked up too: a name may point at the machine itself.
		AllowLocalWebhooks: o.AllowLocalWebhooks, Resolver: net.DefaultResolver,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the ContainerPolicy controller: %w", err)
	}
	var cluster *allocation.Elector
	if o.ClusterAllocator {
		cluster = &allocation.Elector{Config: mgr.GetConfig(), Namespace: ledger.DefaultNamespace, Node: o.NodeName}
		if o.AllocatorLease > 0 {
			cluster.LeaseDuration, cluster.RenewDeadline, cluster.RetryPeriod = o.AllocatorLease, o.AllocatorLease*2/3, o.AllocatorLease/7
		}
	}
	// One notifier for every notice of the node (it bounds each user's deliveries); without
	// a Docker engine it writes no files into containers.
	notifier := &notify.Notifier{Engine: o.Docker, AllowLocal: o.AllowLocalWebhooks, Resolver: net.DefaultResolver,
		Directory: notify.Profiles{Reader: mgr.GetClient(), EmailTemplate: o.EmailTemplate}, Mail: o.Mail}
	if err := mgr.Add(notifier); err != nil {
		return fmt.Errorf("adding the notifier: %w", err)
	}
	allocator := &allocation.Reconciler{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), NodeName: o.NodeName, GPUs: o.GPUs, Groups: o.Groups, Clock: o.Clock,
		Recorder: mgr.GetEventRecorder("gpuwarden-allocation"), Audit: o.Audit, Quotas: quotas, Retention: o.Retention, Cluster: cluster,
		LedgerFlushAt: o.LedgerFlushAt, Queue: allocation.QueueOptions{HalfLife: o.FairShareHalfLife, AgeWeight: o.FairShareAgeWeight, StopSlack: o.SampleInterval},
		Notices: notifier,
	}
	var store *containerstore.Store
	if o.Docker != nil {
		store = containerstore.New()
		allocator.Containers = store
	}
	if err := allocator.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the allocation controller: %w", err)
	}
	if o.GPUs != nil {
		if err := (&inventory.Reconciler{Client: mgr.GetClient(), GPUs: o.GPUs, NodeName: o.NodeName, Clock: o.Clock}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the inventory controller: %w", err)
		}
	}
	if o.Docker != nil {
		return setupContainers(mgr, o, gov, store, notifier)
	}
	return nil
}

// setupContainers registers what watches and acts on the node's Docker containers.
func setupContainers(mgr ctrl.Manager, o Options, gov *governance.Collector, store *containerstore.Store, notifier *notify.Notifier) error {
	// Only where a Docker engine is configured: its absence is no outage.
	if err := crmetrics.Registry.Register(metrics.DockerUp); err != nil && !errors.As(err, &prometheus.AlreadyRegisteredError{}) {
		return fmt.Errorf("registering metrics: %w", err)
	}
	if o.Health != nil {
		o.Health.Add("docker", watchdog.Responds(o.Docker.Ping))
	}
	owners := &containerstore.Owners{Proc: o.Proc}
	changed := make(chan event.GenericEvent, 1024)
	if err := mgr.Add(&containers.Watcher{
		Engine: o.Docker, Store: store, Client: mgr.GetClient(), NodeName: o.NodeName, Clock: o.Clock,
		Recorder: mgr.GetEventRecorder("gpuwarden-container"), Audit: o.Audit, Owners: owners, Changed: changed, RetryInterval: o.DockerRetry,
	}); err != nil {
		return fmt.Errorf("adding the container watcher: %w", err)
	}
	profiles := notify.Profiles{Reader: mgr.GetClient(), EmailTemplate: o.EmailTemplate}
	acts := &actions.Actions{Client: mgr.GetClient(), Engine: o.Docker, Store: store, Groups: o.Groups, Clock: o.Clock,
		Recorder: mgr.GetEventRecorder("gpuwarden-container"), Audit: o.Audit, Notices: notifier}
	if err := (&containers.Reconciler{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Store: store, NodeName: o.NodeName, Clock: o.Clock,
		Recorder: mgr.GetEventRecorder("gpuwarden-container"), Audit: o.Audit, Owners: owners, Actions: acts, Changed: changed,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the container controller: %w", err)
	}
	if err := mgr.Add(&containers.Unused{Client: mgr.GetClient(), Store: store, Actions: acts, NodeName: o.NodeName, Clock: o.Clock,
		Interval: 10 * time.Second}); err != nil {
		return fmt.Errorf("adding the sweep of users' allocations no container uses: %w", err)
	}
	reclaimer := &reclaim.Reclaimer{Client: mgr.GetClient(), Engine: o.Docker, Owners: owners, NodeName: o.NodeName, Clock: o.Clock,
		Recorder: mgr.GetEventRecorder("gpuwarden-container"), Audit: o.Audit, Actions: acts}
	gov.Store, gov.Samples = store, reclaimer
	sampler := &reclaim.Sampler{Client: mgr.GetClient(), Engine: o.Docker, GPUs: o.GPUs, Proc: o.Proc, Store: store, NodeName: o.NodeName,
		Clock: o.Clock, Interval: o.SampleInterval, Reclaim: reclaimer, Audit: o.Audit,
		// A round that has not finished in three intervals (and a minute) is stuck.
		Heartbeat: &watchdog.Heartbeat{Clock: o.Clock, MaxAge: 3*o.SampleInterval + time.Minute}}
	if o.Health != nil {
		o.Health.Add("sampler", sampler.Heartbeat.Check)
	}
	if err := mgr.Add(sampler); err != nil {
		return fmt.Errorf("adding the sampler: %w", err)
	}
	if err := mgr.Add(&reclaim.GiveBack{Client: mgr.GetClient(), Store: store, Owners: owners, Actions: acts, Audit: o.Audit, NodeName: o.NodeName,
		Clock: o.Clock, Interval: 2 * time.Second}); err != nil {
		return fmt.Errorf("adding the give-back of borrowed GPUs: %w", err)
	}
	if err := mgr.AddMetricsServerExtraHandler(ExplainPath, &reclaim.Explainer{Reclaim: reclaimer, Store: store, Owners: owners, Actions: acts, Client: mgr.GetClient(), Interval: o.SampleInterval}); err != nil {
		return fmt.Errorf("serving %s: %w", ExplainPath, err)
	}
	if o.Gateway.Socket != "" {
		settings := &notify.Store{Client: mgr.GetClient(), Directory: notify.Profiles{Reader: mgr.GetAPIReader(), EmailTemplate: o.EmailTemplate},
			Notifier: notifier, Clock: o.Clock, Node: o.NodeName}
		waiter := gateway.NewWaiter()
		if err := gateway.Setup(mgr, o.Gateway, gateway.Node{Name: o.NodeName, Clock: o.Clock, Groups: o.Groups, Audit: o.Audit, HasGPUs: o.GPUs != nil,
			Notifications: settings, Waiter: waiter, Notices: notifier}); err != nil {
			return err
		}
		if err := mgr.Add(&gateway.Digest{Client: mgr.GetClient(), Directory: profiles, Notices: notifier, NodeName: o.NodeName, Clock: o.Clock}); err != nil {
			return fmt.Errorf("adding the daily digest of waiting requests: %w", err)
		}
		if err := mgr.Add(&gateway.Strays{Client: mgr.GetClient(), Store: store, Actions: acts, NodeName: o.NodeName, Clock: o.Clock,
			After: o.Gateway.BindWait + time.Minute, Interval: 10 * time.Second, Waiter: waiter}); err != nil {
			return fmt.Errorf("adding the sweep of gateway allocations without a container: %w", err)
		}
	}
	if o.GPUs == nil {
		return nil
	}
	if err := mgr.Add(&unmanaged.Scanner{
		Client: mgr.GetClient(), GPUs: o.GPUs, Proc: o.Proc, Owners: owners, Store: store, NodeName: o.NodeName,
		Recorder: mgr.GetEventRecorder("gpuwarden-detection"), Audit: o.Audit, Interval: o.ScanInterval,
	}); err != nil {
		return fmt.Errorf("adding the unmanaged GPU scanner: %w", err)
	}
	return nil
}

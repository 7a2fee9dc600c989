// Package manager builds the controller-runtime manager that runs every gpuwarden
// controller, the same way in `gpuwarden server` and `gpuwarden controller`.
package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gpuwarden/gpuwarden/controllers"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/crds"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/proc"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

// Options configure the manager.
type Options struct {
	// NodeName is the GPU node this manager governs.
	NodeName string
	// MetricsBindAddress serves /metrics; "0" turns it off.
	MetricsBindAddress string
	// HealthProbeBindAddress serves /healthz and /readyz; "0" turns it off.
	HealthProbeBindAddress string
	// LeaderElection makes only one replica per node active.
	LeaderElection bool
	// LeaderElectionNamespace holds the leader-election lease.
	LeaderElectionNamespace string
	// Clock is the time source of every controller; the real clock when nil.
	Clock clock.Clock
	// GPUs is the node's GPU back end; nil runs no inventory.
	GPUs gpu.Backend
	// Groups resolves users' host groups; the host's group database when nil.
	Groups resolve.Groups
	// Audit is the audit log; nil records nothing.
	Audit *audit.Writer
	// SkipNameValidation lets tests run several managers in one process.
	SkipNameValidation bool
	// ExtraReadyChecks are added to /readyz (the embedded control plane adds its own).
	ExtraReadyChecks map[string]healthz.Checker
	// Docker is the node's Docker engine; nil runs no container controllers.
	Docker docker.Engine
	// DockerRetry is the first wait before reconnecting to Docker (1 s when zero).
	DockerRetry time.Duration
	// Proc is the /proc tree GPU processes are mapped through.
	Proc proc.FS
	// ScanInterval is how often GPU processes are checked for unmanaged use (30 s when zero).
	ScanInterval time.Duration
	// AllowLocalWebhooks lets policies post notices to loopback and link-local addresses.
	AllowLocalWebhooks bool
}

// InstallCRDs installs or upgrades the CRDs through cfg and waits until they are Established.
func InstallCRDs(ctx context.Context, cfg *rest.Config) error {
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return fmt.Errorf("building a client: %w", err)
	}
	return crds.Install(ctx, c)
}

// The manager's own needs: leader election, CRD installation, events.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// New builds a manager with every controller registered. The CRDs must be installed first.
func New(cfg *rest.Config, o Options) (ctrl.Manager, error) {
	if o.NodeName == "" {
		return nil, errors.New("a node name is required")
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme.New(),
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress:  o.HealthProbeBindAddress,
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        "gpuwarden-" + o.NodeName,
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		// The manager stops as soon as it is asked to: leases are released on the way out.
		LeaderElectionReleaseOnCancel: true,
		Controller:                    config.Controller{SkipNameValidation: &o.SkipNameValidation},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the controller manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("informers", cachesSynced(mgr)); err != nil {
		return nil, err
	}
	for name, check := range o.ExtraReadyChecks {
		if err := mgr.AddReadyzCheck(name, check); err != nil {
			return nil, err
		}
	}
	var auditLog audit.Logger = audit.Discard
	if o.Audit != nil {
		auditLog = o.Audit
		// One audit log per process: a second manager (tests run several) reports the first's.
		if err := metrics.Registry.Register(audit.Collector{W: o.Audit}); err != nil && !errors.As(err, &prometheus.AlreadyRegisteredError{}) {
			return nil, fmt.Errorf("registering audit metrics: %w", err)
		}
	}
	if err := (&controllers.GPUQuotaReconciler{Client: mgr.GetClient(), Audit: auditLog}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the GPUQuota controller: %w", err)
	}
	if err := (&controllers.ContainerPolicyReconciler{
		Client:   mgr.GetClient(),
		Clock:    o.Clock,
		Recorder: mgr.GetEventRecorder("gpuwarden-containerpolicy"),
		Audit:    auditLog,
		// Host names are looked up too: a name may point at the machine itself.
		AllowLocalWebhooks: o.AllowLocalWebhooks, Resolver: net.DefaultResolver,
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the ContainerPolicy controller: %w", err)
	}
	if o.Groups == nil {
		// Group membership changes rarely; a minute's delay is the price of not asking
		// NSS (and LDAP behind it) for every user on every pass.
		o.Groups = &resolve.CachedGroups{Groups: resolve.HostGroups{}, TTL: time.Minute, Clock: o.Clock}
	}
	if err := (&controllers.AllocationReconciler{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), NodeName: o.NodeName, GPUs: o.GPUs, Groups: o.Groups, Clock: o.Clock,
		Recorder: mgr.GetEventRecorder("gpuwarden-allocation"), Audit: auditLog,
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the allocation controller: %w", err)
	}
	if o.GPUs != nil {
		if err := (&controllers.InventoryReconciler{
			Client: mgr.GetClient(), GPUs: o.GPUs, NodeName: o.NodeName, Clock: o.Clock,
		}).SetupWithManager(mgr); err != nil {
			return nil, fmt.Errorf("setting up the inventory controller: %w", err)
		}
	}
	if o.Docker != nil {
		if err := setupContainers(mgr, o, auditLog); err != nil {
			return nil, err
		}
	}
	return mgr, nil
}

// setupContainers registers what watches and acts on the node's Docker containers.
func setupContainers(mgr ctrl.Manager, o Options, auditLog audit.Logger) error {
	store := controllers.NewContainerStore()
	changed := make(chan event.GenericEvent, 1024)
	retryAfter := o.DockerRetry
	if retryAfter == 0 {
		retryAfter = controllers.DefaultDockerRetry
	}
	if err := mgr.Add(&controllers.ContainerWatcher{
		Engine: o.Docker, Store: store, Client: mgr.GetClient(), NodeName: o.NodeName, Clock: o.Clock,
		Recorder: mgr.GetEventRecorder("gpuwarden-container"), Audit: auditLog, Changed: changed, RetryInterval: retryAfter,
	}); err != nil {
		return fmt.Errorf("adding the container watcher: %w", err)
	}
	if err := (&controllers.ContainerReconciler{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Engine: o.Docker, Store: store, NodeName: o.NodeName, Groups: o.Groups, Clock: o.Clock,
		Recorder: mgr.GetEventRecorder("gpuwarden-container"), Audit: auditLog, Proc: o.Proc, Changed: changed,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the container controller: %w", err)
	}
	if o.GPUs == nil {
		return nil
	}
	if err := mgr.Add(&controllers.UnmanagedScanner{
		Client: mgr.GetClient(), GPUs: o.GPUs, Proc: o.Proc, Store: store, NodeName: o.NodeName,
		Recorder: mgr.GetEventRecorder("gpuwarden-detection"), Audit: auditLog, Interval: o.ScanInterval,
	}); err != nil {
		return fmt.Errorf("adding the unmanaged GPU scanner: %w", err)
	}
	return nil
}

// cachesSynced is ready once the manager's informers have synced.
func cachesSynced(mgr ctrl.Manager) healthz.Checker {
	return func(req *http.Request) error {
		// Answer promptly: a probe must not hang while informers are still listing.
		ctx, cancel := context.WithTimeout(req.Context(), 200*time.Millisecond)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("informer caches have not synced")
		}
		return nil
	}
}

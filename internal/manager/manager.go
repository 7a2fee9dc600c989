// Package manager builds the controller-runtime manager the gpuwarden controllers run on,
// the same way in `gpuwarden server` and `gpuwarden controller`: serving, leader election,
// readiness. It knows nothing of the controllers (controllers.Setup registers them).
package manager

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

// Options configure the manager: serving, leader election and readiness. The controllers
// are registered on it apart (controllers.Setup).
type Options struct {
	// NodeName is the GPU node this manager governs; it names the leader-election lease.
	NodeName string
	// MetricsBindAddress serves /metrics; "0" turns it off.
	MetricsBindAddress string
	// Profiling also serves Go's profiles at /debug/pprof/ on the metrics address.
	Profiling bool
	// HealthProbeBindAddress serves /healthz and /readyz; "0" turns it off.
	HealthProbeBindAddress string
	// LeaderElection makes only one replica per node active.
	LeaderElection bool
	// LeaderElectionNamespace holds the leader-election lease.
	LeaderElectionNamespace string
	// Audit is the audit log whose metrics /metrics shows; nil shows none.
	Audit *audit.Writer
	// SkipNameValidation lets tests run several managers in one process.
	SkipNameValidation bool
	// ExtraReadyChecks are added to /readyz (the embedded control plane adds its own).
	ExtraReadyChecks map[string]healthz.Checker
	// Watched narrows the informer of a kind to one object: the allocation ledger's
	// ConfigMap, so that a controller does not watch every ConfigMap in the cluster.
	Watched map[client.Object]client.ObjectKey
	// Scoped narrows the informer of a kind to the objects a field selector picks: a node's
	// own allocations and GPUs, where the cluster's allocator decides for every node.
	Scoped map[client.Object]fields.Selector
}

// The manager's own needs: leader election, CRD installation, events.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// New builds a manager; the CRDs must be installed first.
func New(cfg *rest.Config, o Options) (ctrl.Manager, error) {
	if o.NodeName == "" {
		return nil, errors.New("a node name is required")
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme.New(),
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsBindAddress, ExtraHandlers: profiles(o.Profiling)},
		Cache:                   cache.Options{ByObject: byObject(o.Watched, o.Scoped)},
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
	if o.Audit != nil {
		// One audit log per process: a second manager (tests run several) reports the first's.
		if err := metrics.Registry.Register(audit.Collector{W: o.Audit}); err != nil && !errors.As(err, &prometheus.AlreadyRegisteredError{}) {
			return nil, fmt.Errorf("registering audit metrics: %w", err)
		}
	}
	// Every Event message is escaped, whichever controller records it.
	return escapingManager{Manager: mgr}, nil
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

// byObject scopes each kind's informer to the one object named, or to the objects the
// field selector picks.
func byObject(watched map[client.Object]client.ObjectKey, scoped map[client.Object]fields.Selector) map[client.Object]cache.ByObject {
	out := map[client.Object]cache.ByObject{}
	for obj, key := range watched {
		out[obj] = cache.ByObject{Namespaces: map[string]cache.Config{key.Namespace: {}}, Field: fields.OneTermEqualSelector("metadata.name", key.Name)}
	}
	for obj, sel := range scoped {
		out[obj] = cache.ByObject{Field: sel}
	}
	return out
}

// profiles are the handlers of Go's profiles, under /debug/pprof/, when on.
func profiles(on bool) map[string]http.Handler {
	if !on {
		return nil
	}
	return map[string]http.Handler{
		"/debug/pprof/":        http.HandlerFunc(pprof.Index),
		"/debug/pprof/cmdline": http.HandlerFunc(pprof.Cmdline),
		"/debug/pprof/profile": http.HandlerFunc(pprof.Profile),
		"/debug/pprof/symbol":  http.HandlerFunc(pprof.Symbol),
		"/debug/pprof/trace":   http.HandlerFunc(pprof.Trace),
	}
}

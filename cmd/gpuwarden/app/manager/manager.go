// Package manager builds the controller manager of `gpuwarden server` and `gpuwarden
// controller` from their flags, with every controller on it, and runs it.
package manager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/options"
	"github.com/gpuwarden/gpuwarden/controllers"
	"github.com/gpuwarden/gpuwarden/controllers/allocation"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	basemanager "github.com/gpuwarden/gpuwarden/internal/manager"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/proc"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/statuspage"
	"github.com/gpuwarden/gpuwarden/internal/watchdog"
)

// Extras are what a command adds to the flags.
type Extras struct {
	// ReadyChecks are added to /readyz.
	ReadyChecks map[string]healthz.Checker
	// Kubeconfigs issues callers of the gateway their own kubeconfigs; set by `server`,
	// which holds the control plane's CA.
	Kubeconfigs func(user string, admin bool, validity time.Duration) ([]byte, error)
	// ImageOwners is where the gateway records who made which image name; set by `server`
	// (in its data dir), gateway.DefaultImageOwners when empty.
	ImageOwners string
}

// Manager is the controller manager with every controller registered, and all that Run
// needs: New builds it whole, so there is nothing to call in between.
type Manager struct {
	ctrl.Manager
	audit *audit.Reported
	// health is what the systemd watchdog is pinged for.
	health *watchdog.Health
	// gatewayUp is closed once the gateway listens; nil: no gateway.
	gatewayUp <-chan struct{}
	// page is the status page; nil when --web-bind-address is off.
	page *statuspage.Page
}

// New opens the audit log and the GPU back end, builds the manager against cfg and registers
// every controller on it. o must have been completed and validated. Logs go to ctx's
// logger (ctrl.Log when ctx carries none). Close the Manager once it has stopped.
func New(ctx context.Context, o options.ManagerOptions, cfg *rest.Config, x Extras) (*Manager, error) {
	auditLog, err := audit.OpenReported(ctx, audit.Options{Path: o.AuditLog, Node: o.NodeName, Source: "gpuwarden"})
	if err != nil {
		return nil, fmt.Errorf("--audit-log: %w", err)
	}
	m, err := build(o, cfg, x, auditLog)
	if err != nil {
		auditLog.Close()
		return nil, err
	}
	auditLog.ReportTo(m.GetEventRecorder("gpuwarden-audit"))
	return m, nil
}

func build(o options.ManagerOptions, cfg *rest.Config, x Extras, auditLog *audit.Reported) (*Manager, error) {
	gpus, watcher, err := openGPUs(o)
	if err != nil {
		return nil, err
	}
	co, gatewayUp, err := controllerOptions(o, x, gpus)
	if err != nil {
		return nil, err
	}
	co.Audit = auditLog.Writer
	var scoped map[client.Object]fields.Selector
	if o.ClusterAllocator {
		// The elected allocator watches every node's objects; this node's own controllers
		// need only this node's.
		scoped = allocation.NodeScoped(o.NodeName)
	}
	mgr, err := basemanager.New(cfg, basemanager.Options{
		NodeName:                o.NodeName,
		MetricsBindAddress:      o.MetricsBindAddress,
		Profiling:               o.Profiling,
		HealthProbeBindAddress:  o.HealthProbeBindAddress,
		LeaderElection:          o.LeaderElect,
		LeaderElectionNamespace: "kube-system",
		Audit:                   auditLog.Writer,
		ExtraReadyChecks:        x.ReadyChecks,
		Watched:                 ledger.Watched(),
		Scoped:                  scoped,
	})
	if err != nil {
		return nil, err
	}
	if err := controllers.Setup(mgr, co); err != nil {
		return nil, err
	}
	if watcher != nil {
		if err := mgr.Add(watcher); err != nil {
			return nil, err
		}
	}
	co.Health.Add("api", func(ctx context.Context) error {
		return mgr.GetAPIReader().List(ctx, &gpuwardenv1alpha1.GPUQuotaList{}, client.Limit(1))
	})
	page, err := statusPage(o, mgr)
	if err != nil {
		return nil, err
	}
	return &Manager{Manager: mgr, audit: auditLog, health: co.Health, gatewayUp: gatewayUp, page: page}, nil
}

// statusPage listens for the status page at --web-bind-address, so that a port in use fails
// the start, and adds it to mgr; nil when the flag turns it off.
func statusPage(o options.ManagerOptions, mgr ctrl.Manager) (*statuspage.Page, error) {
	if !o.WebOn() {
		return nil, nil
	}
	auditLog := o.AuditLog
	if auditLog == "" {
		auditLog = audit.DefaultPath // as the writer takes it
	}
	page, err := statuspage.New(statuspage.Options{Addr: o.WebBindAddress, Flag: "--web-bind-address", Reader: mgr.GetClient(),
		Gatherer: crmetrics.Registry, Node: o.NodeName, AuditLog: auditLog})
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(page); err != nil {
		_ = page.Close()
		return nil, fmt.Errorf("adding the status page: %w", err)
	}
	return page, nil
}

// openGPUs returns the GPU back end of the flags and, with --fake-gpus-control, the watcher
// of its control file.
func openGPUs(o options.ManagerOptions) (gpu.Backend, *gpu.ControlWatcher, error) {
	gpus, watcher, err := gpu.Open(gpu.Config{Fake: o.FakeGPUs, Node: o.NodeName, Control: o.FakeGPUsControl})
	var controlErr *gpu.ControlError
	switch {
	case errors.As(err, &controlErr):
		return nil, nil, fmt.Errorf("--fake-gpus-control: %w", controlErr.Err)
	case err != nil:
		return nil, nil, fmt.Errorf("--fake-gpus: %w", err)
	}
	return gpus, watcher, nil
}

// controllerOptions returns the controllers' options from the flags, with a new watchdog
// Health they register their checks with, and the channel closed once the gateway listens
// (nil: no gateway). The audit log is the caller's to set.
func controllerOptions(o options.ManagerOptions, x Extras, gpus gpu.Backend) (controllers.Options, <-chan struct{}, error) {
	var engine docker.Engine
	var gw controllers.GatewayOptions
	var gatewayUp chan struct{}
	if o.DockerHost != options.NoDocker {
		c, err := docker.New(o.DockerHost)
		if err != nil {
			return controllers.Options{}, nil, fmt.Errorf("--docker-host: %w", err)
		}
		engine = c
		if o.GatewaySocket != "" {
			dial, err := docker.Dialer(o.DockerHost)
			if err != nil {
				return controllers.Options{}, nil, fmt.Errorf("--docker-host %w", err)
			}
			gatewayUp = make(chan struct{})
			imageOwners := x.ImageOwners
			if imageOwners == "" {
				imageOwners = gateway.DefaultImageOwners
			}
			auditLog := o.AuditLog
			if auditLog == "" {
				auditLog = audit.DefaultPath // as the writer takes it
			}
			gw = controllers.GatewayOptions{Socket: o.GatewaySocket, DialDocker: dial, AdminGroup: o.GatewayAdminGroup, RootGroup: o.GatewayRootGroup,
				AllowMounts: o.GatewayAllowMounts, BindWait: o.GatewayBindWait, NoticeAfter: o.GatewayNoticeAfter, Kubeconfigs: x.Kubeconfigs, Limits: o.GatewayLimits,
				ImageOwners: imageOwners, AuditLog: auditLog, Listening: sync.OnceFunc(func() { close(gatewayUp) })}
		}
	}
	telemetry := o.TelemetryInterval
	if o.MetricsBindAddress == "0" && !o.WebOn() {
		telemetry = -1 // nobody scrapes and no page shows them: the GPUs are not read for metrics
	}
	var mail notify.Mailer
	if o.SMTPServer != "" {
		relay, err := notify.ParseSMTP(o.SMTPServer, o.SMTPFrom)
		if err != nil {
			return controllers.Options{}, nil, err
		}
		mail = relay
	}
	return controllers.Options{
		Mail:               mail,
		EmailTemplate:      o.NotifyEmailTemplate,
		Health:             &watchdog.Health{},
		NodeName:           o.NodeName,
		Docker:             engine,
		Proc:               proc.FS{Root: o.ProcRoot},
		ScanInterval:       o.ScanInterval,
		SampleInterval:     o.SampleInterval,
		Retention:          o.AllocationRetention,
		ClusterAllocator:   o.ClusterAllocator,
		AllocatorLease:     o.AllocatorLeaseDuration,
		LedgerFlushAt:      o.LedgerFlushAt,
		FairShareHalfLife:  o.FairShareHalfLife,
		FairShareAgeWeight: o.FairShareAgeWeight,
		TelemetryInterval:  telemetry,
		Gateway:            gw,
		AllowLocalWebhooks: o.AllowLocalWebhooks,
		GPUs:               gpus,
	}, gatewayUp, nil
}

// Run starts the manager, calls ready once its caches have synced and the gateway listens
// (and tells systemd, then pings its watchdog while every part answers), and returns when
// ctx ends (nil) or the manager fails.
func (m *Manager) Run(ctx context.Context, ready func()) error {
	notifier := &watchdog.Notifier{Health: m.health, Clock: clock.RealClock{}, Log: ctrl.LoggerFrom(ctx).WithName("watchdog")}
	err := notifier.Serve(ctx, m.Start, m.up, ready)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("controller manager: %w", err)
	}
	return nil
}

// up waits for the caches to sync and the gateway, if any, to listen. The informer of every
// gpuwarden kind is waited for by name: the controllers watch them all, and one a
// controller has not asked for yet is not among those WaitForCacheSync waits for.
func (m *Manager) up(ctx context.Context) bool {
	for _, obj := range scheme.Kinds(m.GetScheme(), gpuwardenv1alpha1.GroupVersion) {
		if _, err := m.GetCache().GetInformer(ctx, obj); err != nil { // blocks until synced
			return false
		}
	}
	if !m.GetCache().WaitForCacheSync(ctx) {
		return false
	}
	if m.gatewayUp == nil {
		return true
	}
	select {
	case <-m.gatewayUp:
		return true
	case <-ctx.Done():
		return false
	}
}

// Close flushes and closes the audit log, and the status page's listener if the manager
// never served it; call it once Run has returned.
func (m *Manager) Close() error {
	if m.page != nil {
		_ = m.page.Close()
	}
	return m.audit.Close()
}

package common

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/gpuwarden/gpuwarden/controllers"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/fatal"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/manager"
	"github.com/gpuwarden/gpuwarden/internal/proc"
	"github.com/gpuwarden/gpuwarden/internal/watchdog"
)

// ManagerOptions are the flags both `server` and `controller` take for the controller manager.
type ManagerOptions struct {
	AuditLog               string
	FakeGPUs               string
	NodeName               string
	MetricsBindAddress     string
	HealthProbeBindAddress string
	LeaderElect            bool
	DockerHost             string
	ProcRoot               string
	ScanInterval           time.Duration
	SampleInterval         time.Duration
	AllocationRetention    time.Duration
	TelemetryInterval      time.Duration
	AllowLocalWebhooks     bool
	// FakeGPUsControl is the control file the simulated GPUs re-read (README.md, "Simulated GPUs driven from outside").
	FakeGPUsControl string
	// The Docker gateway.
	GatewaySocket      string
	GatewayAdminGroup  string
	GatewayRootGroup   string
	GatewayAllowMounts []string
	GatewayBindWait    time.Duration
	// GatewayLimits cap connections and requests per user and in all.
	GatewayLimits gateway.Limits
	// Kubeconfigs issues callers of the gateway their own kubeconfigs; set by `server`,
	// which holds the control plane's CA.
	Kubeconfigs func(user string, admin bool, validity time.Duration) ([]byte, error)

	// health is what the systemd watchdog is pinged for; gatewayUp is closed once the
	// gateway listens (nil: no gateway).
	health    *watchdog.Health
	gatewayUp chan struct{}

	// fake is the simulated machine of --fake-gpus, once GPUs has built it.
	fake *fakegpu.Server

	// GatewayImageOwners is where the gateway records who made which image name; set by
	// `server` (in its data dir), gateway.DefaultImageOwners otherwise.
	GatewayImageOwners string
}

// NoDocker is the --docker-host value that runs no container controllers.
const NoDocker = "none"

// AddFlags registers the flags with defaults for the mode.
func (o *ManagerOptions) AddFlags(fs *pflag.FlagSet, metricsDefault, probeDefault string, leaderElectDefault bool) {
	fs.StringVar(&o.NodeName, "node-name", "", "name of this GPU node (default: the host name)")
	fs.StringVar(&o.FakeGPUs, "fake-gpus", "", "simulate GPUs instead of reading NVML: "+strings.Join(fakegpu.Profiles, ", "))
	fs.StringVar(&o.AuditLog, "audit-log", audit.DefaultPath, "the audit log (JSON Lines, rotated and compressed beside it)")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", metricsDefault, `address of the Prometheus /metrics endpoint ("0" turns it off)`)
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", probeDefault, `address of /healthz and /readyz ("0" turns them off)`)
	fs.BoolVar(&o.LeaderElect, "leader-elect", leaderElectDefault, "elect one active controller per node through a Lease")
	fs.StringVar(&o.DockerHost, "docker-host", "", `the Docker engine (unix:///var/run/docker.sock, tcp://…; default: $DOCKER_HOST, else the standard socket; "none" watches no containers)`)
	fs.StringVar(&o.ProcRoot, "proc-root", "/proc", "the /proc tree GPU processes are mapped to containers and users through")
	fs.BoolVar(&o.AllowLocalWebhooks, "allow-local-webhooks", false, "let ContainerPolicies post notices to loopback and link-local addresses (refused by default)")
	fs.StringVar(&o.FakeGPUsControl, "fake-gpus-control", "", "with --fake-gpus: a YAML or JSON file the simulated GPUs re-read when it changes (utilization, memoryUsedMiB, temperature, power, lost, xid, processes; see the README)")
	fs.DurationVar(&o.SampleInterval, "sample-interval", controllers.DefaultOptions().SampleInterval, "how often running GPU containers are sampled for idle detection (at least 1s)")
	fs.DurationVar(&o.AllocationRetention, "allocation-retention", controllers.DefaultOptions().Retention, "how long released allocations stay visible (kubectl get ga) before they are deleted; at least 1m")
	fs.DurationVar(&o.TelemetryInterval, "telemetry-interval", 0, "how often the GPUs are read for /metrics (default: 15s, or --sample-interval when shorter); a scrape serves the last reading")
	fs.StringVar(&o.GatewaySocket, "gateway-socket", gateway.DefaultSocket, `the Docker gateway's Unix socket (mode 0666; users set DOCKER_HOST=unix://… to it); "" serves none`)
	fs.StringVar(&o.GatewayAdminGroup, "gateway-admin-group", gateway.DefaultAdminGroup, "the host group whose members (and root) see and manage every container through the gateway")
	fs.StringVar(&o.GatewayRootGroup, "gateway-root-group", "", "a host group whose members' containers may run as any user, root included: on an engine without user-namespace remapping this equals membership of the docker group (default: none; everyone's containers run as their own uid)")
	fs.StringSliceVar(&o.GatewayAllowMounts, "gateway-allow-mount", nil, "a host path prefix anyone may bind-mount through the gateway, beside their home directory (repeatable)")
	fs.DurationVar(&o.GatewayBindWait, "gateway-bind-wait", controllers.DefaultGatewayBindWait, "how long a create through the gateway waits for a GPU to free before giving up")
	fs.IntVar(&o.GatewayLimits.ConnsPerUser, "gateway-max-connections-per-user", gateway.DefaultMaxConnsPerUser, "connections one user may hold open to the gateway at once; one more is answered 429 and closed")
	fs.IntVar(&o.GatewayLimits.RequestsPerUser, "gateway-max-requests-per-user", gateway.DefaultMaxRequestsPerUser, "requests of one user the gateway serves at once (open attach, exec, logs -f and events streams count); one more is answered 429")
	fs.IntVar(&o.GatewayLimits.Conns, "gateway-max-connections", 0, "connections all users together may hold open to the gateway (default: from RLIMIT_NOFILE, leaving a quarter of the descriptors, at least 1024, to etcd, the API server and the controllers)")
	fs.DurationVar(&o.GatewayLimits.IdleTimeout, "gateway-idle-timeout", gateway.DefaultIdleTimeout, "how long the gateway keeps a connection open that sends no next request (at least 1s)")
	fs.DurationVar(&o.ScanInterval, "scan-interval", controllers.DefaultOptions().ScanInterval, "how often GPU processes are checked for use outside any allocation")
}

// Complete fills in the node name from the host name.
func (o *ManagerOptions) Complete() error {
	if o.NodeName != "" {
		return nil
	}
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("reading the host name for --node-name: %w", err)
	}
	o.NodeName = strings.ToLower(host)
	return nil
}

// Validate checks the flags.
func (o *ManagerOptions) Validate() error {
	var errs []error
	if msgs := validation.IsDNS1123Subdomain(o.NodeName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--node-name %q: %s", o.NodeName, strings.Join(msgs, "; ")))
	} else if len(o.NodeName) > validation.LabelValueMaxLength {
		// It labels every GPU object of the node.
		errs = append(errs, fmt.Errorf("--node-name %q: %d characters; a node name may have at most %d (it is a label value)",
			o.NodeName, len(o.NodeName), validation.LabelValueMaxLength))
	}
	if h := o.DockerHost; h != "" && h != NoDocker && !strings.HasPrefix(h, "unix://") && !strings.HasPrefix(h, "tcp://") {
		errs = append(errs, fmt.Errorf("--docker-host %q: want unix:///path/to/docker.sock, tcp://host:port or %q", h, NoDocker))
	}
	if o.ScanInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--scan-interval %s: must be at least 100ms", o.ScanInterval))
	}
	if o.SampleInterval < time.Second {
		errs = append(errs, fmt.Errorf("--sample-interval %s: must be at least 1s", o.SampleInterval))
	}
	if o.AllocationRetention < time.Minute {
		errs = append(errs, fmt.Errorf("--allocation-retention %s: must be at least 1m", o.AllocationRetention))
	}
	if o.TelemetryInterval != 0 && o.TelemetryInterval < time.Second {
		errs = append(errs, fmt.Errorf("--telemetry-interval %s: must be at least 1s", o.TelemetryInterval))
	}
	for _, m := range o.GatewayAllowMounts {
		if !filepath.IsAbs(m) || filepath.Clean(m) == "/" {
			errs = append(errs, fmt.Errorf("--gateway-allow-mount %q: want an absolute path below / (a prefix users may bind-mount)", m))
		}
	}
	if o.GatewayBindWait < 0 {
		errs = append(errs, fmt.Errorf("--gateway-bind-wait %s: must not be negative", o.GatewayBindWait))
	}
	if l := o.GatewayLimits.ConnsPerUser; l < 1 {
		errs = append(errs, fmt.Errorf("--gateway-max-connections-per-user %d: must be at least 1", l))
	}
	if l := o.GatewayLimits.RequestsPerUser; l < 1 {
		errs = append(errs, fmt.Errorf("--gateway-max-requests-per-user %d: must be at least 1", l))
	}
	if l := o.GatewayLimits.Conns; l < 0 {
		errs = append(errs, fmt.Errorf("--gateway-max-connections %d: must not be negative (0: from RLIMIT_NOFILE)", l))
	}
	if l := o.GatewayLimits.IdleTimeout; l < time.Second {
		errs = append(errs, fmt.Errorf("--gateway-idle-timeout %s: must be at least 1s", l))
	}
	if o.FakeGPUsControl != "" && o.FakeGPUs == "" {
		errs = append(errs, fmt.Errorf("--fake-gpus-control %q: drives simulated GPUs only; give --fake-gpus too", o.FakeGPUsControl))
	}
	if fi, err := os.Stat(o.ProcRoot); err != nil || !fi.IsDir() {
		errs = append(errs, fmt.Errorf("--proc-root %q: not a readable directory", o.ProcRoot))
	}
	if o.FakeGPUs != "" && !slices.Contains(fakegpu.Profiles, o.FakeGPUs) {
		errs = append(errs, fmt.Errorf("--fake-gpus %q: unknown profile; choose one of %s", o.FakeGPUs, strings.Join(fakegpu.Profiles, ", ")))
	}
	return errors.Join(errs...)
}

// GPUs returns the GPU back end: simulated with --fake-gpus, else NVML (a host without a
// driver has no GPUs).
func (o *ManagerOptions) GPUs() (gpu.Backend, error) {
	if o.FakeGPUs == "" {
		return gpu.NewNVML(nvml.New()), nil
	}
	s, err := fakegpu.NewForNode(o.FakeGPUs, o.NodeName)
	if err != nil {
		return nil, fmt.Errorf("--fake-gpus: %w", err)
	}
	if o.FakeGPUsControl != "" {
		// Read before the first inventory, so that it never sees the defaults first; a
		// file that cannot be used stops the start with what is wrong in it.
		if err := s.ApplyFile(o.FakeGPUsControl); err != nil {
			return nil, fmt.Errorf("--fake-gpus-control: %w", err)
		}
	}
	o.fake = s
	return gpu.NewNVML(s), nil
}

// controlWatcher re-reads the fake GPU control file while the manager runs, on every
// replica (it is the simulated hardware, not a decision).
type controlWatcher struct {
	fake *fakegpu.Server
	path string
}

func (w controlWatcher) NeedLeaderElection() bool { return false }

func (w controlWatcher) Start(ctx context.Context) error {
	log := ctrl.Log.WithName("fake-gpus")
	w.fake.WatchControl(ctx, w.path, controlPoll, func(err error) {
		if err != nil {
			log.Error(err, "The fake GPU control file cannot be used; the GPUs keep what they reported")
			return
		}
		log.Info("The fake GPU control file is applied again", "path", w.path)
	})
	return nil
}

// controlPoll is how often the control file is looked at.
const controlPoll = 200 * time.Millisecond

// AuditLog is the process's audit log and where its write failures are reported.
type AuditLog struct {
	*audit.Writer
	node     string
	recorder atomic.Pointer[recorder.EventRecorder]
	// unregister stops flushing on a fatal exit once the log is closed.
	unregister func()
}

// Close flushes and closes the log.
func (a *AuditLog) Close() error {
	if a.unregister != nil {
		a.unregister()
	}
	return a.Writer.Close()
}

// ReportTo makes write failures Warning Events (reason AuditLogWriteFailed) on this node,
// once the manager's recorder exists; until then they are logged only.
func (a *AuditLog) ReportTo(r recorder.EventRecorder) { a.recorder.Store(&r) }

func (a *AuditLog) onError(path string) func(error) {
	log := ctrl.Log.WithName("audit")
	return func(err error) {
		if err == nil {
			log.Info("The audit log is written again", "path", path)
			return
		}
		log.Error(err, "The audit log cannot be written; events are kept in memory and retried", "path", path)
		if r := a.recorder.Load(); r != nil {
			node := &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: a.node}
			(*r).Eventf(node, nil, corev1.EventTypeWarning, "AuditLogWriteFailed", "WriteAuditLog",
				"The audit log %s cannot be written; events are kept in memory and retried: %v", path, err)
		}
	}
}

// OpenAudit opens the audit log. Write failures are logged and retried, never fatal.
func (o *ManagerOptions) OpenAudit() (*AuditLog, error) {
	a := &AuditLog{node: o.NodeName}
	w, err := audit.Open(audit.Options{Path: o.AuditLog, Node: o.NodeName, Source: "gpuwarden", OnError: a.onError(o.AuditLog)})
	if err != nil {
		return nil, fmt.Errorf("--audit-log: %w", err)
	}
	a.Writer = w
	// A library that gives up (etcd on a full disk) exits the process: what the audit log
	// holds is written first.
	a.unregister = fatal.OnExit(func() { _ = w.Flush() })
	return a, nil
}

// NewManager opens the audit log, builds the manager against cfg and registers every
// controller on it; extraReady checks are added to /readyz. Close the audit log when the
// manager has stopped.
func (o *ManagerOptions) NewManager(cfg *rest.Config, extraReady map[string]healthz.Checker) (ctrl.Manager, *AuditLog, error) {
	auditLog, err := o.OpenAudit()
	if err != nil {
		return nil, nil, err
	}
	co, err := o.Controllers()
	if err != nil {
		auditLog.Close()
		return nil, nil, err
	}
	co.Audit = auditLog.Writer
	mgr, err := manager.New(cfg, manager.Options{
		NodeName:                o.NodeName,
		MetricsBindAddress:      o.MetricsBindAddress,
		HealthProbeBindAddress:  o.HealthProbeBindAddress,
		LeaderElection:          o.LeaderElect,
		LeaderElectionNamespace: "kube-system",
		Audit:                   auditLog.Writer,
		ExtraReadyChecks:        extraReady,
		Watched:                 ledger.Watched(),
	})
	if err == nil {
		err = controllers.Setup(mgr, co)
	}
	if err == nil && o.fake != nil && o.FakeGPUsControl != "" {
		err = mgr.Add(controlWatcher{fake: o.fake, path: o.FakeGPUsControl})
	}
	if err != nil {
		auditLog.Close()
		return nil, nil, err
	}
	auditLog.ReportTo(mgr.GetEventRecorder("gpuwarden-audit"))
	return mgr, auditLog, nil
}

// Controllers returns the controllers' options from the flags.
func (o *ManagerOptions) Controllers() (controllers.Options, error) {
	gpus, err := o.GPUs()
	if err != nil {
		return controllers.Options{}, err
	}
	var engine docker.Engine
	var gw controllers.GatewayOptions
	if o.DockerHost != NoDocker {
		c, err := docker.New(o.DockerHost)
		if err != nil {
			return controllers.Options{}, fmt.Errorf("--docker-host: %w", err)
		}
		engine = c
		if o.GatewaySocket != "" {
			dial, err := dialer(o.DockerHost)
			if err != nil {
				return controllers.Options{}, err
			}
			o.gatewayUp = make(chan struct{})
			up := o.gatewayUp
			gw = controllers.GatewayOptions{Socket: o.GatewaySocket, DialDocker: dial, AdminGroup: o.GatewayAdminGroup, RootGroup: o.GatewayRootGroup,
				AllowMounts: o.GatewayAllowMounts, BindWait: o.GatewayBindWait, Kubeconfigs: o.Kubeconfigs, Limits: o.GatewayLimits,
				Listening: sync.OnceFunc(func() { close(up) })}
		}
	}
	if gw.Socket != "" {
		gw.ImageOwners = o.GatewayImageOwners
		if gw.ImageOwners == "" {
			gw.ImageOwners = gateway.DefaultImageOwners
		}
	}
	telemetry := o.TelemetryInterval
	if o.MetricsBindAddress == "0" {
		telemetry = -1 // nobody scrapes: the GPUs are not read for metrics
	}
	o.health = &watchdog.Health{}
	return controllers.Options{
		Health:             o.health,
		NodeName:           o.NodeName,
		Docker:             engine,
		Proc:               proc.FS{Root: o.ProcRoot},
		ScanInterval:       o.ScanInterval,
		SampleInterval:     o.SampleInterval,
		Retention:          o.AllocationRetention,
		TelemetryInterval:  telemetry,
		Gateway:            gw,
		AllowLocalWebhooks: o.AllowLocalWebhooks,
		GPUs:               gpus,
	}, nil
}

// Run starts mgr, calls ready once its caches have synced and the gateway listens (and
// tells systemd, then pings its watchdog while every part answers), and returns when ctx
// ends (nil) or the manager fails.
func (o *ManagerOptions) Run(ctx context.Context, mgr ctrl.Manager, ready func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	health := o.health
	if health == nil {
		health = &watchdog.Health{}
	}
	health.Add("api", func(ctx context.Context) error {
		return mgr.GetAPIReader().List(ctx, &gpuwardenv1alpha1.GPUQuotaList{}, client.Limit(1))
	})
	notifier := &watchdog.Notifier{Health: health, Clock: clock.RealClock{}, Log: ctrl.Log.WithName("watchdog")}
	errc := make(chan error, 1)
	go func() { errc <- mgr.Start(ctx) }()
	up := make(chan bool, 1)
	go func() {
		ok := mgr.GetCache().WaitForCacheSync(ctx)
		if ok && o.gatewayUp != nil {
			select {
			case <-o.gatewayUp:
			case <-ctx.Done():
				ok = false
			}
		}
		up <- ok
	}()
	select {
	case ok := <-up:
		if ok {
			ready()
			notifier.Ready()
			go notifier.Run(ctx)
		}
	case err := <-errc:
		return managerExit(err)
	}
	err := <-errc
	notifier.Stopping()
	return managerExit(err)
}

func managerExit(err error) error {
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("controller manager: %w", err)
	}
	return nil
}

// RESTConfigFrom reads a kubeconfig file, or the in-cluster configuration when path is empty.
func RESTConfigFrom(path string) (*rest.Config, error) {
	if path == "" {
		return ctrl.GetConfig()
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("reading kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// dialer reaches the Docker engine at host (--docker-host; $DOCKER_HOST, else the standard
// socket, when empty) for the gateway.
func dialer(host string) (func(ctx context.Context) (net.Conn, error), error) {
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	var d net.Dialer
	if p, ok := strings.CutPrefix(host, "unix://"); ok {
		return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", p) }, nil
	}
	if a, ok := strings.CutPrefix(host, "tcp://"); ok {
		return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }, nil
	}
	return nil, fmt.Errorf("--docker-host %q: the gateway fronts unix:// and tcp:// engines", host)
}

// Package options holds the flags `gpuwarden server` and `gpuwarden controller` share for
// their controller manager, with Complete and Validate (the shape of cert-manager's
// cmd/controller/app/options), and the --kubeconfig rule of the commands that reach an
// API server.
package options

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gpuwarden/gpuwarden/controllers"
	"github.com/gpuwarden/gpuwarden/controllers/allocation"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

// ManagerOptions are the flags both `server` and `controller` take for the controller
// manager. AddFlags registers them; Complete then Validate make them ready for use.
type ManagerOptions struct {
	AuditLog               string
	FakeGPUs               string
	NodeName               string
	MetricsBindAddress     string
	Profiling              bool
	HealthProbeBindAddress string
	LeaderElect            bool
	DockerHost             string
	ProcRoot               string
	ScanInterval           time.Duration
	SampleInterval         time.Duration
	AllocationRetention    time.Duration
	// ClusterAllocator: the nodes' controllers elect one allocator for all of them.
	ClusterAllocator       bool
	AllocatorLeaseDuration time.Duration
	// LedgerFlushAt: how many changes the ledger's head holds before they move to its shards.
	LedgerFlushAt int
	// FairShareHalfLife and FairShareAgeWeight set the queue's order (controllers.Options).
	FairShareHalfLife  time.Duration
	FairShareAgeWeight float64
	TelemetryInterval  time.Duration
	AllowLocalWebhooks bool
	// Notices by e-mail: the relay, the sender, and the rule for a user's address.
	SMTPServer          string
	SMTPFrom            string
	NotifyEmailTemplate string
	// FakeGPUsControl is the control file the simulated GPUs re-read (README.md, "Simulated GPUs driven from outside").
	FakeGPUsControl string
	// The Docker gateway.
	GatewaySocket      string
	GatewayAdminGroup  string
	GatewayRootGroup   string
	GatewayAllowMounts []string
	GatewayBindWait    time.Duration
	// GatewayNoticeAfter: a create that waited this long is told when it starts (tests).
	GatewayNoticeAfter time.Duration
	// GatewayLimits cap connections and requests per user and in all.
	GatewayLimits gateway.Limits
	// WebBindAddress serves the status page; "0" or "" (options built in code) turns it off.
	WebBindAddress string
}

// DefaultWebBindAddress is where `gpuwarden server` serves its status page: loopback, so
// that it is published only through an SSH tunnel or a proxy with the lab's login
// (docs/admin-guide.md, "The status page").
const DefaultWebBindAddress = "127.0.0.1:9404"

// WebOn reports whether the status page is served.
func (o *ManagerOptions) WebOn() bool { return o.WebBindAddress != "" && o.WebBindAddress != "0" }

// NoDocker is the --docker-host value that runs no container controllers.
const NoDocker = "none"

// AddFlags registers the flags with defaults for the mode. The status page (webDefault) is on
// by default only in the single-node server: a node's controller is one of many, in a pod
// whose loopback reaches no one, and serves it only when asked to.
func (o *ManagerOptions) AddFlags(fs *pflag.FlagSet, metricsDefault, probeDefault, webDefault string, leaderElectDefault bool) {
	fs.StringVar(&o.WebBindAddress, "web-bind-address", webDefault, `address of the read-only status page (GPUs, holders, queue, reservations, usage) for a browser; "0" turns it off. Keep it on loopback and publish it through an SSH tunnel or a proxy with a login (docs/admin-guide.md)`)
	fs.StringVar(&o.NodeName, "node-name", "", "name of this GPU node (default: the host name)")
	fs.StringVar(&o.FakeGPUs, "fake-gpus", "", "simulate GPUs instead of reading NVML: "+strings.Join(fakegpu.Profiles, ", "))
	fs.StringVar(&o.AuditLog, "audit-log", audit.DefaultPath, "the audit log (JSON Lines, rotated and compressed beside it)")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", metricsDefault, `address of the Prometheus /metrics endpoint ("0" turns it off)`)
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", probeDefault, `address of /healthz and /readyz ("0" turns them off)`)
	fs.BoolVar(&o.Profiling, "profiling", false, "also serve Go's CPU, heap and goroutine profiles at /debug/pprof/ on the metrics address (as Kubernetes components' --profiling)")
	fs.BoolVar(&o.LeaderElect, "leader-elect", leaderElectDefault, "elect one active controller per node through a Lease")
	fs.StringVar(&o.DockerHost, "docker-host", "", `the Docker engine (unix:///var/run/docker.sock, tcp://…; default: $DOCKER_HOST, else the standard socket; "none" watches no containers)`)
	fs.StringVar(&o.ProcRoot, "proc-root", "/proc", "the /proc tree GPU processes are mapped to containers and users through")
	fs.BoolVar(&o.AllowLocalWebhooks, "allow-local-webhooks", false, "let ContainerPolicies and users' webhooks post notices to loopback and link-local addresses (refused by default)")
	fs.StringVar(&o.SMTPServer, "smtp-server", "", "HOST:PORT of the mail relay notices are e-mailed through (STARTTLS when offered; no authentication); none sent when empty")
	fs.StringVar(&o.SMTPFrom, "smtp-from", "", "with --smtp-server: the address notices are sent from")
	fs.StringVar(&o.NotifyEmailTemplate, "notify-email-template", "", "with --smtp-server: a user's address made of their login, e.g. '{user}@example.org', for users who set none of their own (gpuwarden notifications set --email)")
	fs.StringVar(&o.FakeGPUsControl, "fake-gpus-control", "", "with --fake-gpus: a YAML or JSON file the simulated GPUs re-read when it changes (utilization, memoryUsedMiB, temperature, power, lost, xid, processes; see the README)")
	fs.DurationVar(&o.SampleInterval, "sample-interval", controllers.DefaultOptions().SampleInterval, "how often running GPU containers are sampled for idle detection (at least 1s)")
	fs.DurationVar(&o.AllocationRetention, "allocation-retention", controllers.DefaultOptions().Retention, "how long released allocations stay visible (kubectl get ga) before they are deleted; at least 1m")
	fs.BoolVar(&o.ClusterAllocator, "cluster-allocator", false, "decide every node's GPU allocations in one process the nodes' controllers elect through a Lease (kube-system/"+allocation.LeaseName+"), instead of each node deciding its own against the shared ledger")
	fs.DurationVar(&o.AllocatorLeaseDuration, "allocator-lease-duration", allocation.DefaultLeaseDuration, "with --cluster-allocator: how long the allocator's Lease lasts unrenewed before another controller takes over (at least 3s)")
	fs.IntVar(&o.LedgerFlushAt, "ledger-flush-at", ledger.DefaultFlushAt, "how many binding changes the allocation ledger's head object holds before they are moved to its per-node shards (at least 1; for tests)")
	_ = fs.MarkHidden("ledger-flush-at")
	fs.DurationVar(&o.FairShareHalfLife, "fair-share-half-life", controllers.DefaultFairShareHalfLife, "how fast the queue's fair share forgets a user's GPU use: use this long ago counts half (requests of one quota priority wait in order of their users' recent use over their quota, then of age)")
	fs.Float64Var(&o.FairShareAgeWeight, "fair-share-age-weight", 0, "how much an hour waited lowers a request's fair-share rank, in recent gpu-equivalent-hours per quota gpu-equivalent (0: age only breaks ties)")
	fs.DurationVar(&o.TelemetryInterval, "telemetry-interval", 0, "how often the GPUs are read for /metrics (default: 15s, or --sample-interval when shorter); a scrape serves the last reading")
	fs.StringVar(&o.GatewaySocket, "gateway-socket", gateway.DefaultSocket, `the Docker gateway's Unix socket (mode 0666; users set DOCKER_HOST=unix://… to it); "" serves none`)
	fs.StringVar(&o.GatewayAdminGroup, "gateway-admin-group", gateway.DefaultAdminGroup, "the host group whose members (and root) see and manage every container through the gateway")
	fs.StringVar(&o.GatewayRootGroup, "gateway-root-group", "", "a host group whose members' containers may run as any user, root included: on an engine without user-namespace remapping this equals membership of the docker group (default: none; everyone's containers run as their own uid)")
	fs.StringSliceVar(&o.GatewayAllowMounts, "gateway-allow-mount", nil, "a host path prefix anyone may bind-mount through the gateway, beside their home directory (repeatable)")
	fs.DurationVar(&o.GatewayBindWait, "gateway-bind-wait", controllers.DefaultGatewayBindWait, "how long a create through the gateway waits for a GPU to free before giving up (its label gpuwarden.io/wait may ask for longer, up to the policy's queue.maxWait)")
	fs.DurationVar(&o.GatewayNoticeAfter, "gateway-notice-after", controllers.DefaultGatewayNoticeAfter, "how long a create through the gateway waits before its user is told (e-mail, chat) that it started or gave up (at least 1ms; for tests)")
	_ = fs.MarkHidden("gateway-notice-after")
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

// Validate checks the flags, once completed.
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
	if o.AllocatorLeaseDuration < 3*time.Second {
		errs = append(errs, fmt.Errorf("--allocator-lease-duration %s: must be at least 3s", o.AllocatorLeaseDuration))
	}
	if o.FairShareHalfLife < time.Minute {
		errs = append(errs, fmt.Errorf("--fair-share-half-life %s: must be at least 1m", o.FairShareHalfLife))
	}
	if o.FairShareAgeWeight < 0 || math.IsNaN(o.FairShareAgeWeight) || math.IsInf(o.FairShareAgeWeight, 0) {
		errs = append(errs, fmt.Errorf("--fair-share-age-weight %v: must be a number of at least 0", o.FairShareAgeWeight))
	}
	if o.LedgerFlushAt < 1 {
		errs = append(errs, fmt.Errorf("--ledger-flush-at %d: must be at least 1", o.LedgerFlushAt))
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
	if o.GatewayNoticeAfter < time.Millisecond {
		errs = append(errs, fmt.Errorf("--gateway-notice-after %s: must be at least 1ms", o.GatewayNoticeAfter))
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
	if o.SMTPServer != "" {
		if _, err := notify.ParseSMTP(o.SMTPServer, o.SMTPFrom); err != nil {
			errs = append(errs, err)
		}
	} else if o.SMTPFrom != "" {
		errs = append(errs, fmt.Errorf("--smtp-from %q: mail is sent only through a relay; give --smtp-server too", o.SMTPFrom))
	}
	if err := notify.CheckEmailTemplate(o.NotifyEmailTemplate); err != nil {
		errs = append(errs, err)
	}
	if err := checkBindAddress("--web-bind-address", o.WebBindAddress); err != nil {
		errs = append(errs, err)
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

// checkBindAddress checks a listener's flag: HOST:PORT (the host may be empty for every
// interface), or "0" (or empty) for off.
func checkBindAddress(flag, addr string) error {
	if addr == "" || addr == "0" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: want HOST:PORT (e.g. %s), or \"0\" to turn it off", flag, addr, DefaultWebBindAddress)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s %q: the port must be a number from 0 to 65535", flag, addr)
	}
	return nil
}

// RESTConfigFrom reads a --kubeconfig file, or the in-cluster configuration when path is
// empty.
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

// ClientFrom is a client of gpuwarden's kinds through a --kubeconfig file (see
// RESTConfigFrom).
func ClientFrom(path string) (client.Client, error) {
	cfg, err := RESTConfigFrom(path)
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme.New()})
}

// KubeconfigFlag registers --kubeconfig in fs, for a command that reads the API server.
func KubeconfigFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "kubeconfig", DefaultKubeconfig(), "kubeconfig of the API server ($KUBECONFIG, else the server's default data dir)")
}

// DefaultKubeconfig is the kubeconfig a command reads unless told: $KUBECONFIG, else the
// admin kubeconfig in the server's default data dir.
func DefaultKubeconfig() string {
	if k := os.Getenv("KUBECONFIG"); k != "" {
		return k
	}
	return filepath.Join("/var/lib/gpuwarden", "admin.kubeconfig")
}

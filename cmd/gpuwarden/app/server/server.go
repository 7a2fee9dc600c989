// Package server is the `gpuwarden server` command: the embedded control plane and every
// controller in one process.
package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/manager"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/options"
	"github.com/gpuwarden/gpuwarden/internal/access"
	"github.com/gpuwarden/gpuwarden/internal/controlplane"
	"github.com/gpuwarden/gpuwarden/internal/crds"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/watchdog"
)

// defaultGCPercent is the server's GOGC unless the environment sets one.
const defaultGCPercent = 35

// Options are the flags of `gpuwarden server`.
type Options struct {
	DataDir string
	APIPort int
	// EventTTL is how long the embedded API server keeps Kubernetes Events.
	EventTTL time.Duration
	// AdminSyncInterval is how often the host's admin group is read again in full.
	AdminSyncInterval time.Duration
	Manager           options.ManagerOptions

	out io.Writer
}

// NewCommand returns `gpuwarden server`.
func NewCommand() *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the embedded control plane and every controller (single-node mode)",
		Long: `Run gpuwarden on one GPU server with no Kubernetes cluster around: an embedded etcd and
kube-apiserver on 127.0.0.1, the gpuwarden CRDs, and every controller. An admin kubeconfig
is written to DATA_DIR/admin.kubeconfig (mode 0600), so kubectl works at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.out = cmd.OutOrStdout()
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.DataDir, "data-dir", "/var/lib/gpuwarden", "directory for etcd data, certificates and the admin kubeconfig")
	fs.IntVar(&o.APIPort, "api-port", controlplane.DefaultPort, "port of the API server on 127.0.0.1 (0: any free port)")
	fs.DurationVar(&o.EventTTL, "event-ttl", time.Hour, "how long the embedded API server keeps Kubernetes Events (kubectl get events); at least 1m")
	fs.DurationVar(&o.AdminSyncInterval, "admin-sync-interval", access.DefaultAdminSyncInterval, "how often the members of --gateway-admin-group are read again for cluster-admin (a change of /etc/group is seen within a second); at most 1m")
	_ = fs.MarkHidden("admin-sync-interval")
	o.Manager.AddFlags(fs, "127.0.0.1:9402", "127.0.0.1:9403", options.DefaultWebBindAddress, false)
	return cmd
}

// Complete fills in defaults.
func (o *Options) Complete() error {
	if err := o.Manager.Complete(); err != nil {
		return err
	}
	abs, err := filepath.Abs(o.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir %q: %w", o.DataDir, err)
	}
	o.DataDir = abs
	return nil
}

// Validate checks the flags.
func (o *Options) Validate() error {
	var errs []error
	if o.EventTTL < time.Minute {
		errs = append(errs, fmt.Errorf("--event-ttl %s: must be at least 1m", o.EventTTL))
	}
	if o.AdminSyncInterval <= 0 || o.AdminSyncInterval > time.Minute {
		errs = append(errs, fmt.Errorf("--admin-sync-interval %s: must be more than 0 and at most 1m (admin rights follow the admin group within a minute)", o.AdminSyncInterval))
	}
	if o.APIPort < 0 || o.APIPort > 65535 {
		errs = append(errs, fmt.Errorf("--api-port %d: must be between 0 and 65535", o.APIPort))
	}
	if err := o.Manager.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Run starts the control plane, installs the CRDs, runs the controllers and stops all of
// it cleanly when ctx ends (SIGTERM or SIGINT).
func (o *Options) Run(ctx context.Context) error {
	start := time.Now()
	gateway.RaiseFileLimit(ctx)
	if os.Getenv("GOGC") == "" {
		// A daemon on a shared machine: trade a little idle GC work for a smaller heap.
		debug.SetGCPercent(defaultGCPercent)
	}
	log := ctrl.LoggerFrom(ctx).WithName("server")
	closeLog, err := redirectKubeLogs(filepath.Join(o.DataDir, "apiserver.log"))
	if err != nil {
		return err
	}
	defer closeLog()

	restoreNotify := watchdog.Withhold() // the API server's READY is not gpuwarden's
	cp, err := controlplane.Start(ctx, controlplane.Options{DataDir: o.DataDir, Port: o.APIPort, EventTTL: o.EventTTL})
	restoreNotify()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() {
		log.Info("Stopping the control plane")
		cp.Stop()
		log.Info("Stopped")
	}()
	cfg := cp.RESTConfig()
	if err := crds.InstallWith(ctx, cfg); err != nil {
		return fmt.Errorf("installing CRDs: %w", err)
	}
	if err := crds.WaitWatchable(ctx, cfg); err != nil {
		return err
	}
	admin, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return fmt.Errorf("connecting to the API server: %w", err)
	}
	if err := access.Install(ctx, admin); err != nil {
		return fmt.Errorf("installing users' access rules: %w", err)
	}
	// Admin rights follow the host's admin group, not the certificate: cluster-admin is
	// bound to its members by name, and unbound within a minute of their leaving it.
	admins := &access.Admins{Client: admin, Group: o.Manager.GatewayAdminGroup, Interval: o.AdminSyncInterval,
		Watch: access.GroupFile, Log: ctrl.LoggerFrom(ctx).WithName("admins")}
	mgr, err := manager.New(ctx, o.Manager, cfg, manager.Extras{
		ReadyChecks: map[string]healthz.Checker{"controlplane": controlPlaneUp(cp)},
		Kubeconfigs: access.Issuer{PKI: cp.PKI, Server: cfg.Host, Clock: clock.RealClock{}, Admins: admins}.Kubeconfig,
		ImageOwners: filepath.Join(o.DataDir, "gateway-images.json"),
	})
	if err != nil {
		return err
	}
	defer mgr.Close()
	if err := mgr.Add(admins); err != nil {
		return fmt.Errorf("adding the admin group's reconciler: %w", err)
	}

	mgrCtx, stopMgr := context.WithCancel(ctx)
	defer stopMgr()
	go func() {
		select {
		case <-cp.Done():
			log.Error(cp.Err(), "The API server stopped; shutting down")
			stopMgr()
		case <-mgrCtx.Done():
		}
	}()
	err = mgr.Run(mgrCtx, func() {
		fmt.Fprintf(o.out, "gpuwarden server is ready in %.2fs: API server https://127.0.0.1:%d, node %s\n"+
			"  export KUBECONFIG=%s\n  kubectl get gpus,gpuallocations\n",
			time.Since(start).Seconds(), cp.Port, o.Manager.NodeName, cp.KubeconfigPath)
	})
	if err == nil && ctx.Err() == nil {
		err = fmt.Errorf("the API server stopped: %w", cp.Err())
	}
	return err
}

func controlPlaneUp(cp *controlplane.ControlPlane) healthz.Checker {
	return func(*http.Request) error {
		select {
		case <-cp.Done():
			return fmt.Errorf("the embedded API server has stopped: %v", cp.Err())
		default:
			return nil
		}
	}
}

// redirectKubeLogs sends the embedded API server's and etcd's klog output to a file; errors
// that stop the server are returned, and the rest stays out of the operator's way.
func redirectKubeLogs(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the API server log: %w", err)
	}
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for k, v := range map[string]string{"logtostderr": "false", "alsologtostderr": "false", "stderrthreshold": "FATAL"} {
		if err := fs.Set(k, v); err != nil {
			f.Close()
			return nil, fmt.Errorf("configuring klog: %w", err)
		}
	}
	klog.SetOutput(f)
	return func() {
		klog.Flush()
		f.Close()
	}, nil
}

// Package controller is the `gpuwarden controller` command: every controller against an
// existing API server (k3s, any Kubernetes, or another gpuwarden server).
package controller

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/manager"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/options"
	"github.com/gpuwarden/gpuwarden/internal/crds"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
)

// Options are the flags of `gpuwarden controller`.
type Options struct {
	Kubeconfig  string
	InstallCRDs bool
	// QPS and Burst bound the requests to the API server, as kube-scheduler's do: the
	// cluster's allocator makes every node's writes.
	QPS     float32
	Burst   int
	Manager options.ManagerOptions

	out io.Writer
}

// NewCommand returns `gpuwarden controller`.
func NewCommand() *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the controllers against an existing API server",
		Long: `Run every gpuwarden controller for one GPU node against an existing API server: any
Kubernetes cluster, k3s, or the API server of a gpuwarden server. The CRDs are installed
or upgraded first when the credentials allow it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.out = cmd.OutOrStdout()
			if err := o.Manager.Complete(); err != nil {
				return err
			}
			if err := o.Manager.Validate(); err != nil {
				return err
			}
			if o.QPS <= 0 || o.Burst < 1 {
				return fmt.Errorf("--kube-api-qps %g and --kube-api-burst %d: both must be positive", o.QPS, o.Burst)
			}
			return o.Run(cmd.Context())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig of the API server (default: in-cluster configuration)")
	fs.BoolVar(&o.InstallCRDs, "install-crds", true, "install or upgrade the CRDs when allowed to")
	fs.Float32Var(&o.QPS, "kube-api-qps", 50, "requests per second to the API server, sustained (kube-scheduler's default)")
	fs.IntVar(&o.Burst, "kube-api-burst", 100, "requests to the API server in a burst, above --kube-api-qps")
	o.Manager.AddFlags(fs, ":9402", ":9403", "0", true)
	return cmd
}

// Run runs the controllers until ctx ends.
func (o *Options) Run(ctx context.Context) error {
	gateway.RaiseFileLimit(ctx)
	cfg, err := options.RESTConfigFrom(o.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = o.QPS, o.Burst
	if o.InstallCRDs {
		if err := crds.InstallWith(ctx, cfg); err != nil {
			return fmt.Errorf("installing CRDs: %w", err)
		}
	}
	mgr, err := manager.New(ctx, o.Manager, cfg, manager.Extras{})
	if err != nil {
		return err
	}
	defer mgr.Close()
	return mgr.Run(ctx, func() {
		fmt.Fprintf(o.out, "gpuwarden controller is ready: node %s, API server %s\n", o.Manager.NodeName, cfg.Host)
	})
}

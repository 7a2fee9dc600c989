// Package kubeconfig is the `gpuwarden kubeconfig` command: a kubeconfig of a user's own,
// from the gateway (for the caller, as the kernel names them) or from the CA (for an admin
// issuing one to anyone).
package kubeconfig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/gatewayclient"
	"github.com/gpuwarden/gpuwarden/internal/access"
	"github.com/gpuwarden/gpuwarden/internal/controlplane"
	"github.com/gpuwarden/gpuwarden/internal/controlplane/pki"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
)

// maxDays is the longest a kubeconfig lasts.
const maxDays = int(access.MaxValidity / (24 * time.Hour))

// Options are the command's flags.
type Options struct {
	User, DataDir, Server, Socket, Output string
	Admin                                 bool
	Days                                  int
}

// NewCommand returns `gpuwarden kubeconfig`.
func NewCommand() *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print a kubeconfig of your own (or, as an admin, one for --user)",
		Long: `Without --user, asks gpuwarden (through the gateway socket, which knows who you are from
the kernel) for a kubeconfig of your own: you may read quotas, policies, GPUs and
allocations, and create or delete your own GPUAllocations.

With --user, signs one for that user with the control plane's CA in --data-dir (root only).

A kubeconfig names its user only: admin rights are not in it. They follow the host's admin
group (--gateway-admin-group of gpuwarden server): a member is bound to cluster-admin, and
loses it within a minute of leaving the group, whatever kubeconfig they hold. A kubeconfig
lasts at most 30 days, an admin's at most a day; logging in renews it (the profile script).`,
		Example: `  gpuwarden kubeconfig -o ~/.kube/config
  sudo gpuwarden kubeconfig --user alice --days 30 -o /home/alice/.kube/config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := o.Run(cmd.Context())
			if err != nil {
				return err
			}
			if o.Output == "" || o.Output == "-" {
				_, err = cmd.OutOrStdout().Write(data)
				return err
			}
			if err := os.MkdirAll(filepath.Dir(o.Output), 0o700); err != nil {
				return fmt.Errorf("-o %s: %w", o.Output, err)
			}
			return pki.WriteFileAtomic(o.Output, data, 0o600)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.User, "user", "", "issue for this user with the CA in --data-dir (an admin's task); empty: ask the gateway for your own")
	fs.BoolVar(&o.Admin, "admin", false, "with --user: an admin's kubeconfig, lasting at most a day (admin rights come from the host's admin group, not from the kubeconfig)")
	fs.IntVar(&o.Days, "days", int(access.DefaultValidity/(24*time.Hour)), fmt.Sprintf("how many days the kubeconfig lasts (at most %d; an admin's at most 1)", maxDays))
	fs.StringVar(&o.DataDir, "data-dir", "/var/lib/gpuwarden", "with --user: the server's data directory (its CA)")
	fs.StringVar(&o.Server, "server", "", "with --user: the API server's URL (default: the one in DATA_DIR/admin.kubeconfig)")
	gatewayclient.Flag(fs, &o.Socket, "without --user: the gateway's socket")
	fs.StringVarP(&o.Output, "output", "o", "", "write the kubeconfig here (mode 0600) instead of to stdout")
	return cmd
}

// Run returns the kubeconfig.
func (o *Options) Run(ctx context.Context) ([]byte, error) {
	if o.Days < 1 || o.Days > maxDays {
		return nil, fmt.Errorf("--days %d: a kubeconfig lasts 1 to %d days (logging in renews it)", o.Days, maxDays)
	}
	if o.User == "" {
		if o.Admin {
			return nil, errors.New("--admin needs --user: the gateway issues admins' kubeconfigs to admins by itself")
		}
		return o.fromGateway(ctx)
	}
	server := o.Server
	if server == "" {
		cfg, err := clientcmd.LoadFromFile(filepath.Join(o.DataDir, controlplane.KubeconfigName))
		if err != nil {
			return nil, fmt.Errorf("reading the API server's address (or give --server): %w", err)
		}
		for _, c := range cfg.Clusters {
			server = c.Server
		}
	}
	i := access.Issuer{PKI: pki.PKI{Dir: filepath.Join(o.DataDir, controlplane.PKIDir)}, Server: server, Clock: clock.RealClock{}}
	return i.Kubeconfig(o.User, o.Admin, time.Duration(o.Days)*24*time.Hour)
}

func (o *Options) fromGateway(ctx context.Context) ([]byte, error) {
	c := gatewayclient.Client{Socket: o.Socket, Timeout: 30 * time.Second}
	resp, err := c.Get(ctx, gateway.KubeconfigPath, url.Values{"days": {strconv.Itoa(o.Days)}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading gpuwarden's answer: %w", err)
	}
	return body, nil
}

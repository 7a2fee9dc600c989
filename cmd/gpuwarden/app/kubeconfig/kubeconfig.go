// Package kubeconfig is the `gpuwarden kubeconfig` command: a kubeconfig of a user's own,
// from the gateway (for the caller, as the kernel names them) or from the CA (for an admin
// issuing one to anyone).
package kubeconfig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"github.com/gpuwarden/gpuwarden/internal/access"
	"github.com/gpuwarden/gpuwarden/internal/controlplane"
	"github.com/gpuwarden/gpuwarden/internal/controlplane/pki"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/safefile"
)

// maxDays is the longest a kubeconfig lasts.
const maxDays = int(access.MaxValidity / (24 * time.Hour))

// Options are the command's flags.
type Options struct {
	User, DataDir, Server, Socket, Output string
	Admin, Chown                          bool
	Days                                  int

	// euid and lookup stand in for the process's and the host's, in tests.
	euid   func() int
	lookup func(name string) (*user.User, error)
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
			return o.Write(data)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.User, "user", "", "issue for this user with the CA in --data-dir (an admin's task); empty: ask the gateway for your own")
	fs.BoolVar(&o.Admin, "admin", false, "with --user: an admin's kubeconfig, lasting at most a day (admin rights come from the host's admin group, not from the kubeconfig)")
	fs.IntVar(&o.Days, "days", int(access.DefaultValidity/(24*time.Hour)), fmt.Sprintf("how many days the kubeconfig lasts (at most %d; an admin's at most 1)", maxDays))
	fs.StringVar(&o.DataDir, "data-dir", "/var/lib/gpuwarden", "with --user: the server's data directory (its CA)")
	fs.StringVar(&o.Server, "server", "", "with --user: the API server's URL (default: the one in DATA_DIR/admin.kubeconfig)")
	fs.StringVar(&o.Socket, "gateway-socket", "", "without --user: the gateway's socket (default: $DOCKER_HOST when it is unix://…, as the profile script sets it, else "+gateway.DefaultSocket+")")
	fs.StringVarP(&o.Output, "output", "o", "", "write the kubeconfig here (mode 0600) instead of to stdout; as root with --user, into the user's home, the file and the directories made for it are the user's")
	fs.BoolVar(&o.Chown, "chown", false, "with --user, as root: give the file and the directories made for it to the user wherever -o is, not only in their home")
	return cmd
}

// Write writes the kubeconfig to Output (mode 0600), making the directories missing (0700).
// Root writing one for --user gives the file, and the directories it made, to that user when
// they lie in the user's own home (or anywhere, with --chown); elsewhere they stay root's.
// Written into a home the user can change, no link the user planted is followed (see
// safefile): root never writes, or gives away, anything but the file it made.
func (o *Options) Write(data []byte) error {
	owner, err := o.owner()
	if err != nil {
		return err
	}
	return safefile.Write(o.Output, data, 0o600, owner)
}

// owner is whom the file goes to: nil for the caller's own file.
func (o *Options) owner() (*safefile.Owner, error) {
	euid := os.Geteuid
	if o.euid != nil {
		euid = o.euid
	}
	lookup := user.Lookup
	if o.lookup != nil {
		lookup = o.lookup
	}
	switch {
	case o.Chown && o.User == "":
		return nil, errors.New("--chown needs --user: your own kubeconfig is yours already")
	case o.User == "":
		return nil, nil
	case euid() != 0:
		if o.Chown {
			return nil, errors.New("--chown needs root")
		}
		return nil, nil // the caller's file, where they could write it
	}
	u, err := lookup(o.User)
	if err != nil {
		if o.Chown {
			return nil, fmt.Errorf("--chown: %w", err)
		}
		return nil, nil // no local account: the file stays root's
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("the account of %s: %w", o.User, err)
	}
	if o.Chown {
		return &safefile.Owner{UID: uid, GID: gid}, nil
	}
	// Only a home that is the user's own is theirs to be given files in: not /, not a
	// directory another account owns (a shared or a system one).
	home := filepath.Clean(u.HomeDir)
	if u.HomeDir == "" || home == "/" {
		return nil, nil
	}
	if fi, err := os.Stat(home); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != uid {
			return nil, nil
		}
	}
	return &safefile.Owner{UID: uid, GID: gid, Home: home}, nil
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
	socket := gateway.ClientSocket(o.Socket)
	var d net.Dialer
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "unix", socket) },
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://gpuwarden%s?days=%d", gateway.KubeconfigPath, o.Days), nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking gpuwarden at %s%s: %w", socket, o.socketSource(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading gpuwarden's answer: %w", err)
	}
	if resp.StatusCode == http.StatusNotFound && gatewayMessage(body) == "page not found" { // a Docker engine's answer to a path it lacks
		return nil, fmt.Errorf("%s%s is not gpuwarden's gateway (it answered %q); name the gateway with --gateway-socket", socket, o.socketSource(), gatewayMessage(body))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("gpuwarden at %s refused: %s", socket, gatewayMessage(body))
	}
	return body, nil
}

// socketSource says where the socket asked came from, when not from --gateway-socket.
func (o *Options) socketSource() string {
	if o.Socket == "" && gateway.ClientSocket("") != gateway.DefaultSocket {
		return " (from DOCKER_HOST)"
	}
	return ""
}

// gatewayMessage is the message of a Docker-style error body.
func gatewayMessage(body []byte) string {
	var e struct{ Message string }
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return e.Message
	}
	return string(body)
}

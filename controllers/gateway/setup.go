package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/gpuwarden/gpuwarden/internal/access"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// Options configure the Docker gateway.
type Options struct {
	// Socket is the Unix socket served; empty serves none.
	Socket string
	// DialDocker reaches the engine the gateway fronts.
	DialDocker func(ctx context.Context) (net.Conn, error)
	// AdminGroup's members (and root) are the gateway's admins.
	AdminGroup string
	// RootGroup's members' containers may run as any user (docker-group equivalent).
	RootGroup string
	// AllowMounts are host path prefixes anyone may bind-mount beside their home.
	AllowMounts []string
	// BindWait is how long a create waits for a GPU to free.
	BindWait time.Duration
	// NoticeAfter is how long a create waits before its start or its giving up is told to
	// its user (DefaultNoticeAfter when 0).
	NoticeAfter time.Duration
	// Listening is called once the socket listens; optional.
	Listening func()
	// Kubeconfigs issues callers their own kubeconfigs; nil issues none.
	Kubeconfigs func(user string, admin bool, validity time.Duration) ([]byte, error)
	// ImageOwners is the file where the gateway records who made which image name.
	ImageOwners string
	// AuditLog is the audit log whose records the gateway answers callers (their own; an
	// admin's, anyone's); empty answers none.
	AuditLog string
	// Limits cap connections and requests per user and in all; zero fields take defaults.
	Limits gateway.Limits
}

// Node is what the gateway shares with the node's other controllers.
type Node struct {
	Name   string
	Clock  clock.Clock
	Groups resolve.Groups
	Audit  audit.Logger
	// HasGPUs: the node has a GPU back end, and creates asking for GPUs get allocations.
	HasGPUs bool
	// Notifications keeps where users' own notices go; none when nil.
	Notifications gateway.Notifications
	// Waiter names this process's gateway on the allocations it waits for (Strays).
	Waiter string
	// Notices tell users their long-waited requests started or were given up; optional.
	Notices Teller
}

// NewWaiter is a name for this process's gateway, unlike any other process's.
func NewWaiter() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Setup adds the Docker gateway of node n to mgr.
func Setup(mgr ctrl.Manager, g Options, n Node) error {
	if g.DialDocker == nil {
		return fmt.Errorf("the gateway needs a Docker engine to front")
	}
	recorder := mgr.GetEventRecorder("gpuwarden-gateway")
	// The refusals name the users refused and what they asked: an Event of the node, kept in
	// kube-system for admins, not among the Events users read (access.EventsNamespace).
	node := &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: n.Name, Namespace: access.NodeEventsNamespace}
	srv := &gateway.Server{
		Socket: g.Socket, Dial: g.DialDocker, AdminGroup: g.AdminGroup, RootGroup: g.RootGroup, AllowMounts: g.AllowMounts, Audit: n.Audit,
		Policies:      actions.Policies{Client: mgr.GetClient(), Groups: n.Groups, Clock: n.Clock},
		Kubeconfigs:   g.Kubeconfigs,
		Notifications: n.Notifications,
		ImageOwners:   g.ImageOwners,
		AuditLog:      g.AuditLog,
		Listening:     g.Listening,
		Limits:        g.Limits,
		Denied: func(c gateway.Caller, operation, owner, reason string) {
			recorder.Eventf(node, nil, corev1.EventTypeWarning, reasons.EventAccessDenied, "Deny", "Docker gateway refused %s to %s: %s", operation, c.Name, reason)
		},
	}
	if n.HasGPUs {
		srv.GPUs = &Allocator{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), NodeName: n.Name, Clock: n.Clock, BindWait: g.BindWait, Audit: n.Audit, Waiter: n.Waiter, Notices: n.Notices, NoticeAfter: g.NoticeAfter}
	}
	if err := mgr.Add(srv); err != nil {
		return fmt.Errorf("adding the Docker gateway: %w", err)
	}
	// Once the engine answers: a warning when its default runtime hands out GPUs.
	if err := mgr.Add(gateway.RuntimeCheck{Dial: g.DialDocker}); err != nil {
		return fmt.Errorf("adding the Docker gateway's engine check: %w", err)
	}
	return nil
}

package allocation

// The cluster's one allocator: elected among the nodes' active controllers with a Lease.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	ctrl "sigs.k8s.io/controller-runtime"
)

// LeaseName is the Lease (beside the ledger) whose holder allocates for every node.
const LeaseName = "gpuwarden-allocator"

// Default timings of the allocator's Lease, those of kube-scheduler's: a leader that
// stops renewing is replaced within LeaseDuration.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Elector competes for the allocator's Lease for as long as this process is its node's
// active controller (it needs the manager's own, per-node, leader election), and says
// whether this process leads. A process that stops leading stops deciding at once; it
// competes again afterwards.
type Elector struct {
	// Config reaches the API server; Namespace holds the Lease (the ledger's).
	Config    *rest.Config
	Namespace string
	// Node names this process in the Lease's holder identity.
	Node string
	// Timings; zero: the defaults.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	leading atomic.Bool
	elector atomic.Pointer[leaderelection.LeaderElector]
	mu      sync.Mutex
	onLead  []func(term context.Context)
}

// Leading reports whether this process holds the allocator's Lease now: it leads, and has
// seen its Lease renewed within the renew deadline. A process paused past it (stopped,
// swapped out) is not leading when it resumes, before it has noticed that another may have
// taken over; the ledger's optimistic concurrency fences whatever it began before.
func (e *Elector) Leading() bool {
	le := e.elector.Load()
	return e.leading.Load() && le != nil && le.Check(or(e.RenewDeadline, DefaultRenewDeadline)-or(e.LeaseDuration, DefaultLeaseDuration)) == nil
}

// OnLead calls f each time this process starts leading (before any pass it leads), with a
// context that ends when it stops.
func (e *Elector) OnLead(f func(term context.Context)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onLead = append(e.onLead, f)
}

// NeedLeaderElection: only a node's active controller competes for the cluster's Lease.
func (e *Elector) NeedLeaderElection() bool { return true }

// Start competes for the Lease until ctx ends.
func (e *Elector) Start(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return fmt.Errorf("the allocator's Lease: %w", err)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	id := e.Node + "_" + hex.EncodeToString(suffix) // a restarted process is a new holder
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: LeaseName},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	cfg := leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   or(e.LeaseDuration, DefaultLeaseDuration),
		RenewDeadline:   or(e.RenewDeadline, DefaultRenewDeadline),
		RetryPeriod:     or(e.RetryPeriod, DefaultRetryPeriod),
		ReleaseOnCancel: true,
		Name:            LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(term context.Context) { // term ends when the lead is lost
				e.leading.Store(true)
				ctrl.LoggerFrom(ctx).Info("Allocating for every node of the cluster", "lease", LeaseName, "identity", id)
				e.mu.Lock()
				fs := append([]func(context.Context){}, e.onLead...)
				e.mu.Unlock()
				for _, f := range fs {
					f(term)
				}
			},
			OnStoppedLeading: func() {
				e.leading.Store(false)
				ctrl.LoggerFrom(ctx).Info("No longer the cluster's allocator", "lease", LeaseName, "identity", id)
			},
		},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(cfg)
		if err != nil {
			return fmt.Errorf("the allocator's Lease: %w", err)
		}
		e.elector.Store(le)
		le.Run(ctx) // returns when leadership is lost (or never had, and ctx ended)
	}
	return nil
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

package gateway

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/manager"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/notify"
)

// DigestInterval is how often Digest looks for requests that have waited another day.
const DigestInterval = time.Hour

// Digest tells the users who asked for it (queueDigest in their NotificationProfile), once
// for each day a request of theirs still waits on this node, which of their requests wait:
// each with its place and start times.
type Digest struct {
	Client    client.Reader
	Directory notify.Directory
	Notices   Teller
	NodeName  string
	Clock     clock.PassiveClock
	// Interval is the time between two looks (DigestInterval when 0): a request is told of
	// at the first look after each full day it has waited.
	Interval time.Duration
}

// NeedLeaderElection: only the node's active controller tells.
func (d *Digest) NeedLeaderElection() bool { return true }

// Start looks every Interval until ctx ends.
func (d *Digest) Start(ctx context.Context) error {
	return manager.Every(ctx, d.interval(), d.Sweep, "Telling users of their requests still waiting")
}

func (d *Digest) interval() time.Duration {
	if d.Interval > 0 {
		return d.Interval
	}
	return DigestInterval
}

// Sweep tells each user with a request that has just waited another full day, if they asked.
func (d *Digest) Sweep(ctx context.Context) error {
	var list gpuwardenv1alpha1.GPUAllocationList
	if err := d.Client.List(ctx, &list); err != nil {
		return fmt.Errorf("listing GPU allocations: %w", err)
	}
	now := d.Clock.Now()
	waiting := map[string][]*gpuwardenv1alpha1.GPUAllocation{}
	due := map[string]bool{}
	for i := range list.Items {
		a := &list.Items[i]
		if a.Spec.NodeName != d.NodeName || a.Status.Phase != gpuwardenv1alpha1.PhasePending || a.DeletionTimestamp != nil {
			continue
		}
		waiting[a.Spec.User] = append(waiting[a.Spec.User], a)
		if waited := now.Sub(a.CreationTimestamp.Time); waited >= 24*time.Hour && waited%(24*time.Hour) < d.interval() {
			due[a.Spec.User] = true
		}
	}
	for _, user := range slices.Sorted(maps.Keys(due)) {
		ch, err := d.Directory.Channels(ctx, user)
		if err != nil {
			ctrl.LoggerFrom(ctx).Info("Reading where a user's notices go; no digest sent", "user", user, "error", err.Error())
			continue
		}
		if !ch.QueueDigest {
			continue
		}
		d.Notices.Tell(ctx, notify.Notice{Type: notify.TypeQueueDigest, Title: "STILL WAITING", Node: d.NodeName, User: user,
			Container: "your requests", Allocation: waiting[user][0].Name, Mode: string(gpuwardenv1alpha1.ModeEnforce),
			Message: digestText(waiting[user], now), Time: now.UTC()})
	}
	return nil
}

// digestText lists a user's waiting requests, oldest first.
func digestText(as []*gpuwardenv1alpha1.GPUAllocation, now time.Time) string {
	slices.SortFunc(as, func(x, y *gpuwardenv1alpha1.GPUAllocation) int {
		return x.CreationTimestamp.Compare(y.CreationTimestamp.Time)
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%d of your requests still wait for GPUs:", len(as))
	for _, a := range as {
		fmt.Fprintf(&b, "\n- %s (container %s), waiting %s: ", a.Name, orUnnamed(a.Spec.ContainerName), message.Duration(now.Sub(a.CreationTimestamp.Time).Round(time.Minute)))
		if q := a.Status.Queue; q != nil {
			fmt.Fprintf(&b, "number %d of %d; %s", q.Position, max(q.Waiting, q.Position), q.Message)
			if q.EstimatedStart != nil {
				fmt.Fprintf(&b, "; estimated start %s", q.EstimatedStart.UTC().Format(time.RFC3339))
			}
		} else {
			b.WriteString(message.Truncate(a.Status.Message, 256))
		}
	}
	b.WriteString("\n`gpuwarden explain allocation NAME` says why each one ahead is ahead; `gpuwarden notifications set --queue-digest=false` stops this digest.")
	return b.String()
}

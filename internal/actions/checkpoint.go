package actions

import (
	"context"
	"fmt"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// DefaultCheckpointTimeout is how long a checkpoint hook may run when no policy sets
// checkpointTimeout.
const DefaultCheckpointTimeout = 5 * time.Minute

// CheckpointTimeout is how long c's hook may run under p: the policy's checkpointTimeout
// (default 5m), or less where the container asks for less.
func CheckpointTimeout(c docker.Container, p resolve.Policy) time.Duration {
	limit := DefaultCheckpointTimeout
	if l := p.Duration("checkpointTimeout"); l.Applies() {
		limit = l.Duration
	}
	if _, d := labels.Checkpoint(c.Labels); d > 0 && d < limit {
		return d
	}
	return limit
}

// HasCheckpoint reports whether stopping c runs a hook first (and so may take a while):
// only a running container the gateway made for a user (label gpuwarden.io/managed), whose
// hook label the gateway checked, has one. Any other container's labels may come from an
// image someone else built, and its hook would run with the container's rights.
func HasCheckpoint(c docker.Container) bool {
	cmd, _ := labels.Checkpoint(c.Labels)
	return c.State == docker.StateRunning && cmd != "" && c.Labels[gpuwardenv1alpha1.LabelManaged] == "true"
}

// checkpoint runs c's hook, when it has one, before a stop for reason: through the
// engine's exec, as the container's own user, for at most its timeout. Whatever the hook
// does, the stop goes on; its record goes to the audit log and is returned for the notice.
func (x *Actions) checkpoint(ctx context.Context, c docker.Container, owner string, p resolve.Policy, reason string) *audit.Checkpoint {
	if !HasCheckpoint(c) {
		return nil
	}
	cmd, _ := labels.Checkpoint(c.Labels)
	timeout := CheckpointTimeout(c, p)
	k := &audit.Checkpoint{Command: cmd, Start: x.Clock.Now(), Stop: reason, ExitCode: -1}
	res, err := x.Engine.Exec(ctx, c.ID, []string{"/bin/sh", "-c", cmd}, timeout)
	k.End = x.Clock.Now()
	switch {
	case err != nil:
		k.Error = err.Error()
	case res.Running:
		k.TimedOut, k.Output = true, res.Output
	default:
		k.ExitCode, k.Output = res.ExitCode, res.Output
	}
	metrics.CheckpointHooks.WithLabelValues(k.Outcome()).Inc()
	log.FromContext(ctx).Info("Ran the container's checkpoint hook before its stop", "container", c.Name, "exitCode", k.ExitCode, "timedOut", k.TimedOut, "error", k.Error)
	x.Audit.Log(audit.ContainerCheckpoint(containerstore.OwnerOrUnknown(owner), containerstore.AuditRef(c), resolve.PolicyName(p.Values["checkpointTimeout"].From), *k))
	return k
}

// CheckpointSentence says how a checkpoint hook ended, for a notice or an Event.
func CheckpointSentence(k *audit.Checkpoint) string {
	if k == nil {
		return ""
	}
	took := message.Duration(k.End.Sub(k.Start).Round(time.Second))
	switch {
	case k.Error != "":
		return fmt.Sprintf("Its checkpoint hook %q could not run: %s.", k.Command, k.Error)
	case k.TimedOut:
		return fmt.Sprintf("Its checkpoint hook %q was still running after %s, its timeout; it was stopped with the container.", k.Command, took)
	default:
		return fmt.Sprintf("Its checkpoint hook %q ran for %s and exited %d.", k.Command, took, k.ExitCode)
	}
}

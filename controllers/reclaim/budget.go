package reclaim

// Stopping running containers once their owner's GPU-hour budget is used up, where the
// container's policy says onBudgetExhausted: Stop. The allocator counts budgets and shows
// each user's use in their quota's status; the sampler reads it once a round.

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// Exhausted are the users whose GPU-hour budget is used up, as the quotas' statuses show
// it, each with what to tell them.
func Exhausted(quotas []gpuwardenv1alpha1.GPUQuota) map[string]string {
	out := map[string]string{}
	for _, q := range quotas {
		for _, u := range q.Status.Usage {
			b := u.Budget
			if b == nil {
				continue
			}
			used, err1 := strconv.ParseFloat(b.UsedGPUHours, 64)
			limit, err2 := strconv.ParseFloat(b.GPUHours, 64)
			if err1 == nil && err2 == nil && used >= limit {
				out[u.User] = fmt.Sprintf("%s used %s of a budget of %s gpu-hours (window %s, %s)", u.User, b.UsedGPUHours, b.GPUHours, b.Window, b.From)
			}
		}
	}
	return out
}

// budgetStop stops c, once per start, when its owner's budget is used up and its policy
// says onBudgetExhausted: Stop, as the policy's mode allows.
func (r *Reclaimer) budgetStop(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, policy resolve.Policy, why string) {
	if policy.String("onBudgetExhausted", string(gpuwardenv1alpha1.BudgetExhaustedContinue)) != string(gpuwardenv1alpha1.BudgetExhaustedStop) ||
		!r.Actions.Once(c.ID, "budget-stop/"+c.StartStamp()) {
		return
	}
	mode := policy.Mode()
	user := containerstore.OwnerOrUnknown(owner)
	from := resolve.PolicyName(policy.Values["onBudgetExhausted"].From)
	text := "budget_exhausted: " + why + "; onBudgetExhausted: Stop"
	n := notify.For(c, user, a.Name, policy, r.NodeName, r.Clock.Now())
	n.Type, n.Title, n.Policy = audit.TypeLifecycleBudgetStop, "STOPPED", from
	n.Message = fmt.Sprintf("Your GPU-hour budget is used up (%s); your policy stops running containers then.", why)
	if mode != gpuwardenv1alpha1.ModeEnforce {
		r.Actions.WouldAct(ctx, c, owner, a, policy, mode, "stop it",
			lifecycle.Due{Action: lifecycle.Stop, Reason: "budget_exhausted", Message: why, Policy: policy.Values["onBudgetExhausted"].From})
		if mode == gpuwardenv1alpha1.ModeNotifyOnly {
			n.Title = "WOULD STOP"
			r.Actions.Tell(ctx, n)
		}
		return
	}
	run := func() {
		began := r.Clock.Now()
		if err := r.Actions.Stop(ctx, c, owner, a, policy, mode, reasons.EventBudgetStopped, text); err != nil {
			if !errors.Is(err, docker.ErrNotFound) {
				ctrl.LoggerFrom(ctx).Error(err, "Stopping a container past its owner's budget; tried again at the next sample")
				r.Actions.Unsay(c.ID, "budget-stop/"+c.StartStamp())
			}
			return
		}
		if s, ok := r.Actions.LastStop(c.ID); ok && !s.At.Before(began) && s.Checkpoint != nil {
			n.Message += " " + actions.CheckpointSentence(s.Checkpoint)
		}
		r.Audit.Log(audit.Lifecycle(audit.BudgetStop, user, containerstore.AuditRef(c), from, string(mode), text))
		r.Recorder.Eventf(a, nil, corev1.EventTypeWarning, reasons.EventBudgetStopped, "Stop", "Container %s of %s: %s", message.ContainerName(c), user, message.Truncate(text, message.Max))
		r.Actions.Tell(ctx, n)
	}
	if actions.HasCheckpoint(c) {
		go run() // the hook may run for minutes
		return
	}
	run()
}

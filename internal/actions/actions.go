package controllers

// Clean-up actions: carrying out what the lifecycle rules say is due, as the policy's mode
// allows, with an Event and an audit record each.

import (
	"context"
	"errors"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// act carries out one due action as the policy's mode allows.
func (r *ContainerReconciler) act(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, d lifecycle.Due) error {
	mode := p.String("mode", string(gpuwardenv1alpha1.ModeEnforce))
	switch d.Action {
	case lifecycle.ReleaseGPUs:
		if mode == string(gpuwardenv1alpha1.ModeDryRun) {
			r.wouldAct(ctx, c, owner, a, p, mode, "release its GPUs", d)
			return nil
		}
		containerActions.WithLabelValues(string(d.Action), mode).Inc()
		r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, EventReleaseAsked, "Release", "Releasing the GPUs of container %s: %s", shownName(c), d.Message)
		return r.release(ctx, a, d.Reason+": "+d.Message)
	case lifecycle.Remove:
		if mode != string(gpuwardenv1alpha1.ModeEnforce) {
			r.wouldAct(ctx, c, owner, a, p, mode, "remove it", d)
			return nil
		}
		r.Store.note(c.ID, d.Reason)
		err := r.Engine.Remove(ctx, c.ID, false)
		if errors.Is(err, docker.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		containerActions.WithLabelValues(string(d.Action), mode).Inc()
		r.Audit.Log(audit.Lifecycle(audit.Remove, ownerOrUnknown(owner), containerRef(c), policyName(d.Policy), mode, d.Reason+": "+d.Message))
		r.eventOn(ctx, a, d.Policy, corev1.EventTypeNormal, EventRemoved, "Remove", "Removed container %s of %s: %s", shownName(c), ownerOrUnknown(owner), d.Message)
	}
	return nil
}

// stop stops a container, SIGKILL after the policy's stopGracePeriod, with an Event of
// eventReason.
func (r *ContainerReconciler) stop(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, mode, eventReason, reason string) error {
	if labels.IsProtected(c.Labels) {
		return nil
	}
	if mode != string(gpuwardenv1alpha1.ModeEnforce) {
		code, msg, _ := strings.Cut(reason, ": ") // "unallocated_gpu: …"
		r.wouldAct(ctx, c, owner, a, p, mode, "stop it", lifecycle.Due{Action: lifecycle.Stop, Reason: code, Message: msg})
		return nil
	}
	grace := DefaultStopGracePeriod
	if l := p.Duration("stopGracePeriod"); l.Applies() {
		grace = l.Duration
	}
	r.Store.note(c.ID, reason)
	if err := r.Engine.Stop(ctx, c.ID, grace); err != nil && !errors.Is(err, docker.ErrNotFound) {
		return err
	}
	containerActions.WithLabelValues(string(lifecycle.Stop), mode).Inc()
	r.eventOn(ctx, a, "", corev1.EventTypeWarning, eventReason, "Stop", "Stopped container %s of %s at %s: %s", shownName(c), ownerOrUnknown(owner), r.Clock.Now().UTC().Format(time.RFC3339), reason)
	return nil
}

// wouldAct records, once, what a DryRun or NotifyOnly policy kept gpuwarden from doing.
func (r *ContainerReconciler) wouldAct(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, mode, what string, d lifecycle.Due) {
	if !r.once(c.ID, "would/"+string(d.Action)+"/"+d.Reason) {
		return
	}
	containerActions.WithLabelValues(string(d.Action), mode).Inc()
	from := d.Policy
	if from == "" {
		from = p.Values["mode"].From
	}
	r.Audit.Log(audit.Lifecycle(wouldRecord[d.Action], ownerOrUnknown(owner), containerRef(c), policyName(from), mode, d.Reason+": would "+what+": "+d.Message))
	r.eventOn(ctx, a, from, corev1.EventTypeNormal, EventWouldAct, "DryRun", "Would %s container %s of %s (mode %s): %s", what, shownName(c), ownerOrUnknown(owner), mode, d.Message)
}

// wouldRecord is the audit record of an action a DryRun or NotifyOnly policy held back.
var wouldRecord = map[lifecycle.Action]audit.LifecycleAction{
	lifecycle.Remove: audit.WouldRemove, lifecycle.ReleaseGPUs: audit.WouldRelease, lifecycle.Stop: audit.WouldStop,
}

// eventOn records an Event on the allocation when there is one, else on the policy that
// called for the action (named "ContainerPolicy <name>").
func (r *ContainerReconciler) eventOn(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, policy, eventType, reason, action, format string, args ...any) {
	var obj runtime.Object
	if a != nil {
		obj = a
	} else if name := policyName(policy); name != "" {
		p := &gpuwardenv1alpha1.ContainerPolicy{}
		if err := r.Client.Get(ctx, client.ObjectKey{Name: name}, p); err == nil {
			obj = p
		}
	}
	if obj != nil {
		r.Recorder.Eventf(obj, nil, eventType, reason, action, format, args...)
	}
}

// policyName turns "ContainerPolicy x" into "x".
func policyName(from string) string { return strings.TrimPrefix(from, "ContainerPolicy ") }

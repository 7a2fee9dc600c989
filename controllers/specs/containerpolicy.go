package specs

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// ContainerPolicyReconciler keeps a ContainerPolicy's conditions in step with its spec and
// with time: a policy whose spec.expires has passed turns Active=False.
type ContainerPolicyReconciler struct {
	Client   client.Client
	Clock    clock.PassiveClock
	Recorder recorder.EventRecorder
	// Audit records admin changes to policies.
	Audit audit.Logger
	// AllowLocalWebhooks lets notify.webhookURL target loopback and link-local addresses.
	AllowLocalWebhooks bool
	// Resolver looks webhook host names up; none when nil.
	Resolver notify.Resolver
}

// +kubebuilder:rbac:groups=gpuwarden.io,resources=containerpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=gpuwarden.io,resources=containerpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile computes the policy's conditions and requeues at the moment it expires.
func (r *ContainerPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	policy := &gpuwardenv1alpha1.ContainerPolicy{}
	if found, err := getOrRecordDeletion(ctx, r.Client, r.Audit, audit.PolicyDelete, req.Name, policy); !found {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	active, remaining := activeCondition(policy, now)

	status := policy.Status.DeepCopy()
	status.ObservedGeneration = policy.Generation
	accepted := acceptedCondition(policy.Generation)
	if err := resolve.PolicyProblem(policy); err != nil {
		accepted.Status, accepted.Reason = metav1.ConditionFalse, gpuwardenv1alpha1.ReasonInvalidSpec
		accepted.Message = message.Truncate("The policy is skipped until fixed: "+err.Error(), message.Max)
	}
	meta.SetStatusCondition(&status.Conditions, accepted)
	if c, ok := r.webhookCondition(ctx, policy); ok {
		meta.SetStatusCondition(&status.Conditions, c)
	} else {
		meta.RemoveStatusCondition(&status.Conditions, gpuwardenv1alpha1.ConditionWebhookAllowed)
	}
	wasActive := meta.IsStatusConditionTrue(policy.Status.Conditions, gpuwardenv1alpha1.ConditionActive)
	meta.SetStatusCondition(&status.Conditions, active)

	if !equality.Semantic.DeepEqual(status, &policy.Status) {
		observed := policy.Status.ObservedGeneration
		policy.Status = *status
		if err := r.Client.Status().Update(ctx, policy); err != nil {
			return ctrl.Result{}, fmt.Errorf("updating status of ContainerPolicy %s: %w", policy.Name, err)
		}
		recordSpecChange(r.Audit, audit.PolicyCreate, audit.PolicyUpdate, policy, observed)
		if wasActive && active.Status == metav1.ConditionFalse {
			r.Recorder.Eventf(policy, nil, corev1.EventTypeNormal, gpuwardenv1alpha1.ReasonExpired, "Expire", active.Message)
		}
	}
	if remaining > 0 {
		return ctrl.Result{RequeueAfter: remaining}, nil
	}
	return ctrl.Result{}, nil
}

// webhookCondition says whether notices may go to the policy's webhook; false when it has none.
func (r *ContainerPolicyReconciler) webhookCondition(ctx context.Context, policy *gpuwardenv1alpha1.ContainerPolicy) (metav1.Condition, bool) {
	if policy.Spec.Notify == nil || policy.Spec.Notify.WebhookURL == "" {
		return metav1.Condition{}, false
	}
	return webhookAllowed(ctx, []string{policy.Spec.Notify.WebhookURL}, policy.Generation, r.Resolver, r.AllowLocalWebhooks), true
}

// webhookAllowed is condition WebhookAllowed of an object's webhooks: False naming the
// first that targets an address notices must not reach.
func webhookAllowed(ctx context.Context, urls []string, generation int64, resolver notify.Resolver, allowLocal bool) metav1.Condition {
	c := metav1.Condition{Type: gpuwardenv1alpha1.ConditionWebhookAllowed, Status: metav1.ConditionTrue,
		Reason: gpuwardenv1alpha1.ReasonWebhookAllowed, Message: "Notices are posted to the webhook", ObservedGeneration: generation}
	lookup, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var err error
	for _, u := range urls {
		if err = notify.WebhookProblem(lookup, u, resolver); err != nil {
			break
		}
	}
	switch {
	case err != nil && allowLocal:
		c.Message = message.Truncate("Allowed by --allow-local-webhooks: "+err.Error(), message.Max)
	case err != nil:
		c.Status, c.Reason = metav1.ConditionFalse, gpuwardenv1alpha1.ReasonLocalAddress
		c.Message = message.Truncate("No notice is posted: "+err.Error()+"; start gpuwarden with --allow-local-webhooks to allow it", message.Max)
	}
	return c
}

// activeCondition says whether the policy is in force at now and, if it will expire, how long until then.
func activeCondition(policy *gpuwardenv1alpha1.ContainerPolicy, now time.Time) (metav1.Condition, time.Duration) {
	c := metav1.Condition{
		Type:               gpuwardenv1alpha1.ConditionActive,
		Status:             metav1.ConditionTrue,
		Reason:             gpuwardenv1alpha1.ReasonInForce,
		Message:            "The policy has no expiry",
		ObservedGeneration: policy.Generation,
	}
	if policy.Spec.Expires == nil {
		return c, 0
	}
	expires := policy.Spec.Expires.Time
	if !now.Before(expires) {
		c.Status = metav1.ConditionFalse
		c.Reason = gpuwardenv1alpha1.ReasonExpired
		c.Message = fmt.Sprintf("The policy expired at %s and no longer applies", expires.UTC().Format(time.RFC3339))
		return c, 0
	}
	c.Message = fmt.Sprintf("The policy is in force until %s", expires.UTC().Format(time.RFC3339))
	return c, expires.Sub(now)
}

// SetupWithManager registers the reconciler.
func (r *ContainerPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	switch {
	case r.Client == nil:
		return fmt.Errorf("ContainerPolicyReconciler needs a Client")
	case r.Clock == nil:
		return fmt.Errorf("ContainerPolicyReconciler needs a Clock")
	case r.Recorder == nil:
		return fmt.Errorf("ContainerPolicyReconciler needs a Recorder")
	case r.Audit == nil:
		return fmt.Errorf("ContainerPolicyReconciler needs an Audit logger")
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&gpuwardenv1alpha1.ContainerPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("containerpolicy").
		Complete(r)
}

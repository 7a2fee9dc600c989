package specs

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/notify"
)

// NotificationProfileReconciler says in a NotificationProfile's status whether notices may
// go to its webhooks.
type NotificationProfileReconciler struct {
	Client client.Client
	// AllowLocalWebhooks lets webhooks target loopback and link-local addresses.
	AllowLocalWebhooks bool
	// Resolver looks webhook host names up; none when nil.
	Resolver notify.Resolver
}

// +kubebuilder:rbac:groups=gpuwarden.io,resources=notificationprofiles,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=gpuwarden.io,resources=notificationprofiles/status,verbs=get;update;patch

// Reconcile sets condition WebhookAllowed, or removes it when the profile has no webhook.
func (r *NotificationProfileReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	np := &gpuwardenv1alpha1.NotificationProfile{}
	if err := r.Client.Get(ctx, req.NamespacedName, np); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	status := np.Status.DeepCopy()
	if len(np.Spec.Webhooks) == 0 {
		meta.RemoveStatusCondition(&status.Conditions, gpuwardenv1alpha1.ConditionWebhookAllowed)
	} else {
		urls := make([]string, 0, len(np.Spec.Webhooks))
		for _, w := range np.Spec.Webhooks {
			urls = append(urls, w.URL)
		}
		meta.SetStatusCondition(&status.Conditions, webhookAllowed(ctx, urls, np.Generation, r.Resolver, r.AllowLocalWebhooks))
	}
	if equality.Semantic.DeepEqual(status, &np.Status) {
		return ctrl.Result{}, nil
	}
	np.Status = *status
	if err := r.Client.Status().Update(ctx, np); err != nil {
		return ctrl.Result{}, fmt.Errorf("updating status of NotificationProfile %s: %w", np.Name, err)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager registers the reconciler.
func (r *NotificationProfileReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		return fmt.Errorf("NotificationProfileReconciler needs a Client")
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&gpuwardenv1alpha1.NotificationProfile{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("notificationprofile").
		Complete(r)
}

package specs

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
)

// GPUQuotaReconciler keeps a GPUQuota's status conditions in step with its spec.
type GPUQuotaReconciler struct {
	Client client.Client
	// Audit records admin changes to quotas.
	Audit audit.Logger
}

// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuquotas,verbs=get;list;watch
// +kubebuilder:rbac:groups=gpuwarden.io,resources=gpuquotas/status,verbs=get;update;patch

// Reconcile marks the quota Accepted for its current generation.
func (r *GPUQuotaReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	quota := &gpuwardenv1alpha1.GPUQuota{}
	if found, err := getOrRecordDeletion(ctx, r.Client, r.Audit, audit.QuotaDelete, req.Name, quota); !found {
		return ctrl.Result{}, err
	}
	status := quota.Status.DeepCopy()
	status.ObservedGeneration = quota.Generation
	meta.SetStatusCondition(&status.Conditions, acceptedCondition(quota.Generation))
	if equality.Semantic.DeepEqual(status, &quota.Status) {
		return ctrl.Result{}, nil
	}
	observed := quota.Status.ObservedGeneration
	quota.Status = *status
	if err := r.Client.Status().Update(ctx, quota); err != nil {
		return ctrl.Result{}, fmt.Errorf("updating status of GPUQuota %s: %w", quota.Name, err)
	}
	recordSpecChange(r.Audit, audit.QuotaCreate, audit.QuotaUpdate, quota, observed)
	return ctrl.Result{}, nil
}

// SetupWithManager registers the reconciler.
func (r *GPUQuotaReconciler) SetupWithManager(mgr ctrl.Manager) error {
	switch {
	case r.Client == nil:
		return fmt.Errorf("GPUQuotaReconciler needs a Client")
	case r.Audit == nil:
		return fmt.Errorf("GPUQuotaReconciler needs an Audit logger")
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&gpuwardenv1alpha1.GPUQuota{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("gpuquota").
		Complete(r)
}

func acceptedCondition(generation int64) metav1.Condition {
	return metav1.Condition{
		Type:               gpuwardenv1alpha1.ConditionAccepted,
		Status:             metav1.ConditionTrue,
		Reason:             gpuwardenv1alpha1.ReasonValid,
		Message:            "The spec is valid and in force",
		ObservedGeneration: generation,
	}
}

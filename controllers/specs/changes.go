package specs

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gpuwarden/gpuwarden/internal/audit"
)

// recordSpecChange writes quota.create/update or policy.create/update when a spec
// generation is seen for the first time (observed is the generation seen before).
func recordSpecChange(log audit.Logger, create, update audit.AdminAction, obj metav1.Object, observed int64) {
	if log == nil || observed == obj.GetGeneration() {
		return
	}
	action := update
	if observed == 0 {
		action = create
	}
	log.Log(audit.AdminChange(action, obj.GetName(), obj.GetGeneration(), lastSpecManager(obj)))
}

// getOrRecordDeletion reads obj by name; when it is gone, which a reconcile only sees after a
// deletion, it records the deletion and reports false.
func getOrRecordDeletion(ctx context.Context, c client.Client, log audit.Logger, action audit.AdminAction, name string, obj client.Object) (bool, error) {
	err := c.Get(ctx, client.ObjectKey{Name: name}, obj)
	if apierrors.IsNotFound(err) {
		if log != nil {
			log.Log(audit.AdminChange(action, name, 0, ""))
		}
		return false, nil
	}
	return err == nil, err
}

// lastSpecManager is the field manager of the newest write to the object other than status.
func lastSpecManager(obj metav1.Object) string {
	var name string
	var at metav1.Time
	for _, mf := range obj.GetManagedFields() {
		if mf.Subresource != "" || mf.Time == nil {
			continue
		}
		if name == "" || !mf.Time.Before(&at) {
			name, at = mf.Manager, *mf.Time
		}
	}
	return name
}

package controllers

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

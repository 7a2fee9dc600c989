package reclaim

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestABudgetUsedUpStopsRunningContainersOnlyWhereThePolicySaysSo: with onBudgetExhausted:
// Stop, the owner's running containers are stopped once their budget is used up (as the
// quota's status shows), with a record; Continue, the default, leaves them running.
func TestABudgetUsedUpStopsRunningContainersOnlyWhereThePolicySaysSo(t *testing.T) {
	quota := &gpuwardenv1alpha1.GPUQuota{ObjectMeta: metav1.ObjectMeta{Name: "lab"},
		Spec: gpuwardenv1alpha1.GPUQuotaSpec{Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectEveryone}}},
		Status: gpuwardenv1alpha1.GPUQuotaStatus{Usage: []gpuwardenv1alpha1.UserUsage{{User: "alice",
			Budget: &gpuwardenv1alpha1.BudgetUsage{UsedGPUHours: "500.2", GPUHours: "500", Window: "30d", From: "GPUQuota lab"}}}}}
	for _, tc := range []struct {
		action gpuwardenv1alpha1.BudgetExhaustedAction
		stops  int
	}{{gpuwardenv1alpha1.BudgetExhaustedStop, 1}, {"", 0}} {
		t.Run(string(tc.action), func(t *testing.T) {
			policy := testutil.MakePolicy("budget").WithSpec(gpuwardenv1alpha1.ContainerPolicySpec{OnBudgetExhausted: tc.action}).Obj()
			w := newSamplerWorld(t, 1, policy, quota.DeepCopy())
			for range 3 {
				w.clock.Step(time.Minute)
				w.round(t)
			}
			stops := 0
			for _, c := range w.engine.Calls() {
				if strings.HasPrefix(c, "stop ") {
					stops++
				}
			}
			recs := w.audit.Of(audit.TypeLifecycleBudgetStop)
			if stops != tc.stops || len(recs) != tc.stops {
				t.Fatalf("%d stops, records %+v; want %d", stops, recs, tc.stops)
			}
			if tc.stops > 0 && !strings.Contains(recs[0].Details["reason"].(string), "alice used 500.2 of a budget of 500 gpu-hours (window 30d, GPUQuota lab)") {
				t.Errorf("record: %+v", recs[0].Details)
			}
		})
	}
	if got := Exhausted([]gpuwardenv1alpha1.GPUQuota{*quota}); len(got) != 1 || got["alice"] == "" {
		t.Errorf("Exhausted: %v", got)
	}
	below := quota.DeepCopy()
	below.Status.Usage[0].Budget.UsedGPUHours = "499.99"
	if got := Exhausted([]gpuwardenv1alpha1.GPUQuota{*below}); len(got) != 0 {
		t.Errorf("below the budget: %v", got)
	}
}

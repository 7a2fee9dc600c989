package allocation

import (
	"strings"
	"testing"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/notify"
)

// TestBudgetNoticesAreToldOncePerLevel: 80 % and 100 % are each told once, remembered in
// the quota's status; a window that frees up below a level lets it be told again.
func TestBudgetNoticesAreToldOncePerLevel(t *testing.T) {
	q := &gpuwardenv1alpha1.GPUQuota{}
	use := func(used string) []gpuwardenv1alpha1.UserUsage {
		return []gpuwardenv1alpha1.UserUsage{{User: "alice", Budget: &gpuwardenv1alpha1.BudgetUsage{UsedGPUHours: used, GPUHours: "500", Window: "30d", From: "GPUQuota lab"}}}
	}
	step := func(used string) []notify.Notice {
		t.Helper()
		users, tell := budgetNotices(q, use(used), time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC))
		q.Status.Usage = users // as written
		return tell
	}
	if n := step("100"); len(n) != 0 {
		t.Errorf("at 20 %%: %+v", n)
	}
	n := step("412.5")
	if len(n) != 1 || n[0].Type != notify.TypeBudgetWarning || n[0].User != "alice" ||
		!strings.Contains(n[0].Message, "You used 412.5 of your 500 gpu-hour budget in the last 30d (GPUQuota lab), 82 %: past 80 %") {
		t.Fatalf("at 82 %%: %+v", n)
	}
	if n := step("450"); len(n) != 0 {
		t.Errorf("80 %% told twice: %+v", n)
	}
	if n := step("500"); len(n) != 1 || n[0].Type != notify.TypeBudgetExhausted || !strings.Contains(n[0].Message, "New GPU requests are refused (BudgetExceeded)") {
		t.Errorf("at 100 %%: %+v", n)
	}
	if n := step("510"); len(n) != 0 || q.Status.Usage[0].Budget.Told != 100 {
		t.Errorf("100 %% told twice: %+v", n)
	}
	if n := step("120"); len(n) != 0 || q.Status.Usage[0].Budget.Told != 0 {
		t.Errorf("after the window freed up: %+v, told %d", n, q.Status.Usage[0].Budget.Told)
	}
	if n := step("400"); len(n) != 1 {
		t.Errorf("80 %% again after it freed up: %+v", n)
	}
	q.Status.Usage = nil
	if n := step("600"); len(n) != 2 || n[0].Type != notify.TypeBudgetWarning || n[1].Type != notify.TypeBudgetExhausted {
		t.Errorf("from nothing past the budget in one step: %+v; want the 80 %% and the 100 %% notices", n)
	}
}

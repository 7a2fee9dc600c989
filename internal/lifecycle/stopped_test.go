package lifecycle

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func policy(t *testing.T, specs ...gpuwardenv1alpha1.ContainerPolicySpec) resolve.Policy {
	t.Helper()
	var list []gpuwardenv1alpha1.ContainerPolicy
	for i, s := range specs {
		s.Precedence = int32(i)
		list = append(list, gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: []string{"base", "override"}[i]}, Spec: s})
	}
	p, err := resolve.EffectivePolicy(list, resolve.Container{User: "alice"}, now)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func d(x time.Duration) *gpuwardenv1alpha1.Duration {
	v := gpuwardenv1alpha1.Duration(x.String())
	return &v
}

func TestNotRunning(t *testing.T) {
	defaults := gpuwardenv1alpha1.ContainerPolicySpec{GPUHoldAfterStop: d(15 * time.Minute), RemoveAfterStop: d(30 * time.Minute),
		CreatedNeverStartedTimeout: d(30 * time.Minute)}
	stopped := func(ago time.Duration) Container {
		return Container{Stopped: true, Created: now.Add(-time.Hour - ago), FinishedAt: now.Add(-ago)}
	}
	created := func(ago time.Duration) Container {
		return Container{NeverStarted: true, Created: now.Add(-ago)}
	}
	tests := []struct {
		name      string
		c         Container
		specs     []gpuwardenv1alpha1.ContainerPolicySpec
		holds     bool
		protected bool
		want      []Action
		next      time.Duration
	}{
		{"just stopped: wait for the hold", stopped(time.Minute), []gpuwardenv1alpha1.ContainerPolicySpec{defaults}, true, false, nil, 14 * time.Minute},
		{"hold passed: release, removal later", stopped(16 * time.Minute), []gpuwardenv1alpha1.ContainerPolicySpec{defaults}, true, false,
			[]Action{ReleaseGPUs}, 14 * time.Minute},
		{"hold passed, no GPUs held: only removal pending", stopped(16 * time.Minute), []gpuwardenv1alpha1.ContainerPolicySpec{defaults}, false, false, nil, 14 * time.Minute},
		{"both passed", stopped(31 * time.Minute), []gpuwardenv1alpha1.ContainerPolicySpec{defaults}, true, false, []Action{ReleaseGPUs, Remove}, 0},
		{"protected: released but never removed", stopped(31 * time.Minute), []gpuwardenv1alpha1.ContainerPolicySpec{defaults}, true, true, []Action{ReleaseGPUs}, 0},
		{"unlimited removal", stopped(2 * time.Hour), []gpuwardenv1alpha1.ContainerPolicySpec{defaults,
			{Unlimited: []gpuwardenv1alpha1.PolicyLimitName{gpuwardenv1alpha1.PolicyLimitRemoveAfterStop}}}, true, false, []Action{ReleaseGPUs}, 0},
		{"no policy: nothing ever", stopped(100 * time.Hour), nil, true, false, nil, 0},
		{"override sets only the hold", stopped(2 * time.Hour), []gpuwardenv1alpha1.ContainerPolicySpec{defaults, {GPUHoldAfterStop: d(3 * time.Hour)}}, true, false,
			[]Action{Remove}, time.Hour},
		{"zero hold releases at once", stopped(0), []gpuwardenv1alpha1.ContainerPolicySpec{{GPUHoldAfterStop: d(0)}}, true, false, []Action{ReleaseGPUs}, 0},
		{"created, not yet due", created(10 * time.Minute), []gpuwardenv1alpha1.ContainerPolicySpec{defaults}, true, false, nil, 20 * time.Minute},
		{"created and never started past the timeout", created(31 * time.Minute), []gpuwardenv1alpha1.ContainerPolicySpec{defaults}, true, false, []Action{Remove}, 0},
		{"created, protected", created(31 * time.Minute), []gpuwardenv1alpha1.ContainerPolicySpec{defaults}, true, true, nil, 0},
		{"stopped with no finish time: skipped", Container{Stopped: true}, []gpuwardenv1alpha1.ContainerPolicySpec{defaults}, true, false, nil, 0},
		{"running: nothing", Container{}, []gpuwardenv1alpha1.ContainerPolicySpec{defaults}, true, false, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.HoldsGPUs, c.Protected = tc.holds, tc.protected
			due, next := NotRunning(c, policy(t, tc.specs...), now)
			var got []Action
			for _, d := range due {
				got = append(got, d.Action)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("actions (-want,+got):\n%s", diff)
			}
			if next != tc.next {
				t.Errorf("next = %s, want %s", next, tc.next)
			}
		})
	}
}

func TestMessagesNameTheLimitAndPolicy(t *testing.T) {
	c := Container{Stopped: true, FinishedAt: now.Add(-16 * time.Minute), HoldsGPUs: true}
	due, _ := NotRunning(c, policy(t, gpuwardenv1alpha1.ContainerPolicySpec{GPUHoldAfterStop: d(15 * time.Minute)}), now)
	want := []Due{{Action: ReleaseGPUs, Reason: ReasonHoldExpired, Policy: "ContainerPolicy base",
		Message: "stopped for 16m0s; gpuHoldAfterStop is 15m0s (ContainerPolicy base)"}}
	if diff := cmp.Diff(want, due); diff != "" {
		t.Errorf("(-want,+got):\n%s", diff)
	}
}

// TestUpcomingSaysWhatIsScheduledAndWhen: what is scheduled but not due yet, with its time,
// so that the owner hears of it first; nothing for a protected container's removal.
func TestUpcomingSaysWhatIsScheduledAndWhen(t *testing.T) {
	p := policy(t, gpuwardenv1alpha1.ContainerPolicySpec{GPUHoldAfterStop: d(15 * time.Minute), RemoveAfterStop: d(30 * time.Minute),
		CreatedNeverStartedTimeout: d(20 * time.Minute)})
	stoppedAt := now.Add(-time.Minute)
	for _, tc := range []struct {
		name string
		c    Container
		want []Coming
	}{
		{"just stopped, holding GPUs", Container{Stopped: true, FinishedAt: stoppedAt, HoldsGPUs: true}, []Coming{
			{Action: ReleaseGPUs, At: stoppedAt.Add(15 * time.Minute), Limit: "gpuHoldAfterStop", Policy: "ContainerPolicy base"},
			{Action: Remove, At: stoppedAt.Add(30 * time.Minute), Limit: "removeAfterStop", Policy: "ContainerPolicy base"}}},
		{"hold passed: only the removal is still to come", Container{Stopped: true, FinishedAt: now.Add(-16 * time.Minute), HoldsGPUs: true}, []Coming{
			{Action: Remove, At: now.Add(14 * time.Minute), Limit: "removeAfterStop", Policy: "ContainerPolicy base"}}},
		{"protected: its GPUs go back, it stays", Container{Stopped: true, FinishedAt: stoppedAt, HoldsGPUs: true, Protected: true}, []Coming{
			{Action: ReleaseGPUs, At: stoppedAt.Add(15 * time.Minute), Limit: "gpuHoldAfterStop", Policy: "ContainerPolicy base"}}},
		{"created and never started", Container{NeverStarted: true, Created: now.Add(-5 * time.Minute)}, []Coming{
			{Action: Remove, At: now.Add(15 * time.Minute), Limit: "createdNeverStartedTimeout", Policy: "ContainerPolicy base"}}},
		{"all due already", Container{Stopped: true, FinishedAt: now.Add(-time.Hour), HoldsGPUs: true}, nil},
	} {
		if diff := cmp.Diff(tc.want, Upcoming(tc.c, p, now)); diff != "" {
			t.Errorf("%s (-want,+got):\n%s", tc.name, diff)
		}
	}
}

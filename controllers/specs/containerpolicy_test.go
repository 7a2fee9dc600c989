package specs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

func newPolicyReconciler(t *testing.T, objs ...client.Object) (*ContainerPolicyReconciler, *clocktesting.FakeClock, *events.FakeRecorder) {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).
		WithStatusSubresource(&gpuwardenv1alpha1.ContainerPolicy{}).Build()
	clk := clocktesting.NewFakeClock(t0)
	rec := events.NewFakeRecorder(10)
	return &ContainerPolicyReconciler{Client: c, Clock: clk, Recorder: rec, Audit: &testutil.AuditRecorder{}}, clk, rec
}

func TestContainerPolicyExpiry(t *testing.T) {
	expires := metav1.NewTime(t0.Add(90 * time.Minute))
	p := &gpuwardenv1alpha1.ContainerPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "exam-week", Generation: 3},
		Spec:       gpuwardenv1alpha1.ContainerPolicySpec{Expires: &expires},
	}
	r, clk, rec := newPolicyReconciler(t, p)
	ctx := context.Background()
	req := ctrl.Request{NamespacedName: types.NamespacedName{Name: "exam-week"}}

	res, err := r.Reconcile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != 90*time.Minute {
		t.Errorf("RequeueAfter = %s, want exactly the time left (90m)", res.RequeueAfter)
	}
	got := get(t, r.Client, "exam-week")
	wantActive := metav1.Condition{Type: "Active", Status: metav1.ConditionTrue, Reason: "InForce",
		Message: "The policy is in force until 2026-11-20T10:30:00Z", ObservedGeneration: 3}
	if diff := cmp.Diff(wantActive, *meta.FindStatusCondition(got.Status.Conditions, "Active"), ignoreTime); diff != "" {
		t.Errorf("Active condition (-want,+got):\n%s", diff)
	}
	if got.Status.ObservedGeneration != 3 || !meta.IsStatusConditionTrue(got.Status.Conditions, "Accepted") {
		t.Errorf("status = %+v, want Accepted at observedGeneration 3", got.Status)
	}

	clk.Step(90 * time.Minute)
	res, err = r.Reconcile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != 0 {
		t.Errorf("an expired policy requeues after %s, want no requeue", res.RequeueAfter)
	}
	got = get(t, r.Client, "exam-week")
	wantActive = metav1.Condition{Type: "Active", Status: metav1.ConditionFalse, Reason: "Expired",
		Message: "The policy expired at 2026-11-20T10:30:00Z and no longer applies", ObservedGeneration: 3}
	if diff := cmp.Diff(wantActive, *meta.FindStatusCondition(got.Status.Conditions, "Active"), ignoreTime); diff != "" {
		t.Errorf("Active condition after expiry (-want,+got):\n%s", diff)
	}
	select {
	case e := <-rec.Events:
		if e != "Normal Expired The policy expired at 2026-11-20T10:30:00Z and no longer applies" {
			t.Errorf("event = %q", e)
		}
	default:
		t.Error("no Expired event was recorded")
	}

	// A further reconcile changes nothing and records nothing.
	rv := got.ResourceVersion
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if again := get(t, r.Client, "exam-week"); again.ResourceVersion != rv {
		t.Errorf("an unchanged status was written again (resourceVersion %s -> %s)", rv, again.ResourceVersion)
	}
	if len(rec.Events) != 0 {
		t.Errorf("a second Expired event was recorded: %q", <-rec.Events)
	}
}

func TestContainerPolicyWithoutExpiryNeverRequeues(t *testing.T) {
	p := &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "defaults", Generation: 1}}
	r, _, _ := newPolicyReconciler(t, p)
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: "defaults"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != 0 {
		t.Errorf("RequeueAfter = %s, want 0", res.RequeueAfter)
	}
	got := get(t, r.Client, "defaults")
	if !meta.IsStatusConditionTrue(got.Status.Conditions, "Active") {
		t.Errorf("conditions = %+v, want Active=True", got.Status.Conditions)
	}
}

func TestContainerPolicyGoneIsNotAnError(t *testing.T) {
	r, _, _ := newPolicyReconciler(t)
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: "gone"}}); err != nil {
		t.Errorf("Reconcile of a deleted policy: %v", err)
	}
}

var ignoreTime = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".LastTransitionTime" }, cmp.Ignore())

func get(t *testing.T, c client.Client, name string) *gpuwardenv1alpha1.ContainerPolicy {
	t.Helper()
	p := &gpuwardenv1alpha1.ContainerPolicy{}
	if err := c.Get(context.Background(), types.NamespacedName{Name: name}, p); err != nil {
		t.Fatal(err)
	}
	return p
}

var _ recorder.EventRecorder = &events.FakeRecorder{}

func TestPolicyChangesAreAudited(t *testing.T) {
	p := &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "students", Generation: 1}}
	r, _, _ := newPolicyReconciler(t, p)
	ctx := context.Background()
	req := ctrl.Request{NamespacedName: types.NamespacedName{Name: "students"}}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil { // nothing new: nothing recorded
		t.Fatal(err)
	}
	got := get(t, r.Client, "students")
	got.Generation = 2 // the fake client does not bump generations
	if err := r.Client.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	// The fake client keeps no managedFields, so the manager is checked in
	// TestLastSpecManager and, through the real API server, end to end.
	want := []audit.Event{
		audit.AdminChange(audit.PolicyCreate, "students", 1, ""),
		audit.AdminChange(audit.PolicyUpdate, "students", 2, ""),
		audit.AdminChange(audit.PolicyDelete, "students", 0, ""),
	}
	if diff := cmp.Diff(want, r.Audit.(*testutil.AuditRecorder).Events()); diff != "" {
		t.Errorf("audit events (-want,+got):\n%s", diff)
	}
}

func TestLastSpecManager(t *testing.T) {
	at := func(m int) *metav1.Time { t := metav1.NewTime(t0.Add(time.Duration(m) * time.Minute)); return &t }
	obj := &metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{
		{Manager: "kubectl-client-side-apply", Time: at(0)},
		{Manager: "helm", Time: at(5)},
		{Manager: "gpuwarden", Subresource: "status", Time: at(9)},
		{Manager: "no-time"},
	}}
	if got := lastSpecManager(obj); got != "helm" {
		t.Errorf("lastSpecManager = %q, want helm (the newest write that is not status)", got)
	}
}

// TestAnOverriddenExemptionShowsInThePolicysStatus: a policy whose exemption a policy of
// higher precedence cancels (devcontainers exempt from the idle timeout; bob's own policy
// sets one) says so in its status, naming the policy, its precedence, the limit and its
// selector, with a Warning Event, before any devcontainer of bob's is stopped; deleting the
// overriding policy restores it.
func TestAnOverriddenExemptionShowsInThePolicysStatus(t *testing.T) {
	devcontainers := testutil.MakePolicy("devcontainers").WithSpec(gpuwardenv1alpha1.ContainerPolicySpec{Precedence: 20,
		Selector:  gpuwardenv1alpha1.PolicySelector{ContainerTypes: []gpuwardenv1alpha1.ContainerType{gpuwardenv1alpha1.ContainerTypeDevcontainer}},
		Unlimited: []gpuwardenv1alpha1.PolicyLimitName{gpuwardenv1alpha1.PolicyLimitIdleTimeout}}).Obj()
	bob := testutil.MakePolicy("bob-hours").WithSpec(gpuwardenv1alpha1.ContainerPolicySpec{Precedence: 50,
		Selector: gpuwardenv1alpha1.PolicySelector{Users: []string{"bob"}},
		Idle:     &gpuwardenv1alpha1.IdlePolicy{Timeout: testutil.Duration(2 * time.Hour)}}).Obj()
	r, _, rec := newPolicyReconciler(t, devcontainers, bob)
	ctx := context.Background()
	req := ctrl.Request{NamespacedName: types.NamespacedName{Name: "devcontainers"}}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	got := get(t, r.Client, "devcontainers")
	want := []gpuwardenv1alpha1.OverriddenExemption{{Limit: gpuwardenv1alpha1.PolicyLimitIdleTimeout, Policy: "bob-hours", Precedence: 50, Value: "2h0m0s",
		Selector: gpuwardenv1alpha1.PolicySelector{Users: []string{"bob"}}}}
	if diff := cmp.Diff(want, got.Status.OverriddenExemptions); diff != "" {
		t.Errorf("status.overriddenExemptions (-want,+got):\n%s", diff)
	}
	c := meta.FindStatusCondition(got.Status.Conditions, gpuwardenv1alpha1.ConditionExemptionsInForce)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "Overridden" ||
		!strings.Contains(c.Message, "ContainerPolicy bob-hours (precedence 50) sets idle.timeout to 2h0m0s for the containers of its selector (users bob)") {
		t.Errorf("ExemptionsInForce = %+v", c)
	}
	select {
	case e := <-rec.Events:
		if !strings.HasPrefix(e, "Warning ExemptionOverridden An exemption does not hold") {
			t.Errorf("event = %q", e)
		}
	default:
		t.Error("no ExemptionOverridden event was recorded")
	}
	// The overriding policy itself lifts nothing: no such condition.
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Name: "bob-hours"}}); err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(get(t, r.Client, "bob-hours").Status.Conditions, gpuwardenv1alpha1.ConditionExemptionsInForce); c != nil {
		t.Errorf("a policy that lifts nothing has %+v", c)
	}

	if err := r.Client.Delete(ctx, get(t, r.Client, "bob-hours")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	got = get(t, r.Client, "devcontainers")
	if c := meta.FindStatusCondition(got.Status.Conditions, gpuwardenv1alpha1.ConditionExemptionsInForce); c == nil || c.Status != metav1.ConditionTrue || len(got.Status.OverriddenExemptions) != 0 {
		t.Errorf("with the overriding policy gone: %+v, %+v", c, got.Status.OverriddenExemptions)
	}
}

// TestAnOverrideThatExpiresIsLookedAtAgain: an overriding policy with an expiry requeues the
// overridden one at that moment, when its exemption holds again.
func TestAnOverrideThatExpiresIsLookedAtAgain(t *testing.T) {
	expires := metav1.NewTime(t0.Add(40 * time.Minute))
	lifted := testutil.MakePolicy("lifted").WithSpec(gpuwardenv1alpha1.ContainerPolicySpec{Precedence: 1,
		Unlimited: []gpuwardenv1alpha1.PolicyLimitName{gpuwardenv1alpha1.PolicyLimitMaxRuntime}}).Obj()
	week := testutil.MakePolicy("exam-week").WithSpec(gpuwardenv1alpha1.ContainerPolicySpec{Precedence: 2, Expires: &expires,
		MaxRuntime: testutil.Duration(6 * time.Hour)}).Obj()
	r, clk, _ := newPolicyReconciler(t, lifted, week)
	req := ctrl.Request{NamespacedName: types.NamespacedName{Name: "lifted"}}
	res, err := r.Reconcile(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != 40*time.Minute {
		t.Errorf("RequeueAfter = %s, want 40m (when exam-week expires)", res.RequeueAfter)
	}
	clk.Step(40 * time.Minute)
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := get(t, r.Client, "lifted"); !meta.IsStatusConditionTrue(got.Status.Conditions, gpuwardenv1alpha1.ConditionExemptionsInForce) {
		t.Errorf("after exam-week expired: %+v", got.Status)
	}
}

package explain

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

// samplePolicies are config/samples/containerpolicies.yaml.
func samplePolicies(t *testing.T) []client.Object {
	t.Helper()
	data, err := os.ReadFile("../../../../config/samples/containerpolicies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []client.Object
	for {
		var p gpuwardenv1alpha1.ContainerPolicy
		if err := dec.Decode(&p); err != nil {
			break
		}
		if p.Name != "" {
			out = append(out, &p)
		}
	}
	return out
}

// TestExplainClaimedType: --claimed shows what a devcontainer a user makes through the
// gateway gets (docker's limits and the grant for claimed devcontainers), not what the
// devcontainer policy gives trusted ones.
func TestExplainClaimedType(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(samplePolicies(t)...).Build()
	now := func() time.Time { return time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC) }
	run := func(claimed bool) string {
		t.Helper()
		o := &Options{GroupsSet: true, Groups: []string{"student"}, ContainerType: "devcontainer", Claimed: claimed, now: now}
		var b strings.Builder
		if err := o.Run(context.Background(), c, "sam", &b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	trusted := run(false)
	if !strings.Contains(trusted, "ContainerPolicy devcontainers") || !strings.Contains(trusted, "unlimited") {
		t.Errorf("an unclaimed devcontainer:\n%s", trusted)
	}
	claimed := run(true)
	for _, want := range []string{
		"whose type the user claimed by label (gpuwarden.io/type-claimed=true)",
		"Policies see the container as docker unless they select the claim: ContainerPolicy devcontainers-claimed grants claimed devcontainer containers their limits.",
		"4h0m0s",
	} {
		if !strings.Contains(claimed, want) {
			t.Errorf("a claimed devcontainer lacks %q:\n%s", want, claimed)
		}
	}
	if strings.Contains(claimed, "unlimited") {
		t.Errorf("a claimed devcontainer is unlimited:\n%s", claimed)
	}
}

// TestExplainAllocationSaysWhyEachIsAhead: a waiting allocation's place, its times, and for
// each request ahead what puts it there: priority, fair share, or age.
func TestExplainAllocationSaysWhyEachIsAhead(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC))
	latest := metav1.NewTime(time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC))
	waiting := func(name, user string, created time.Duration, q gpuwardenv1alpha1.QueueStatus) client.Object {
		return &gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(created))},
			Spec:   gpuwardenv1alpha1.GPUAllocationSpec{User: user, NodeName: "gpu01"},
			Status: gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhasePending, Reason: gpuwardenv1alpha1.ReasonNoCapacity, Queue: &q}}
	}
	share := func(rank string) string {
		return rank + ": recent use 1.0 gpu-h (half-life 168h0m0s) / quota 4 (GPUQuota researchers)"
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(
		waiting("vip", "dean", 3*time.Hour, gpuwardenv1alpha1.QueueStatus{Position: 1, Priority: 50, FairShare: share("9.00")}),
		waiting("light", "bob", 2*time.Hour, gpuwardenv1alpha1.QueueStatus{Position: 2, Priority: 10, FairShare: share("0.25")}),
		waiting("older", "carl", 0, gpuwardenv1alpha1.QueueStatus{Position: 3, Priority: 10, FairShare: share("1.26")}),
		waiting("mine", "alice", time.Hour, gpuwardenv1alpha1.QueueStatus{Position: 4, Waiting: 4, Priority: 10, FairShare: share("1.25"),
			Ahead: []string{"vip", "light", "older"}, LatestStart: &latest, BlockedBy: "eve-train", Message: "3 requests ahead"}),
	).Build()
	var out bytes.Buffer
	if err := explainAllocation(context.Background(), c, "mine", &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Number 4 of 4 waiting for capacity on gpu01",
		"Starts by 2026-12-03T16:00:00Z at the latest, when eve-train ends",
		"1. vip of dean: a higher quota priority (50, against 10)",
		"2. light of bob: the same priority and a lower fair share (0.25: recent use",
		"3. older of carl: the same priority and fair share (1.26), and waiting longer (since 2026-12-03T09:00:00Z)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explain lacks %q:\n%s", want, out.String())
		}
	}
	if err := explainAllocation(context.Background(), c, "nosuch", &out); err == nil || !strings.Contains(err.Error(), `no GPU allocation "nosuch"`) {
		t.Errorf("a missing allocation: %v", err)
	}
}

// TestExplainUserShowsBorrowingAndBudget: the borrowing and the budget a user gets, where
// each comes from, and the budget's use as its quota's status shows it.
func TestExplainUserShowsBorrowingAndBudget(t *testing.T) {
	q := func(s string) *resource.Quantity { v := resource.MustParse(s); return &v }
	lab := &gpuwardenv1alpha1.GPUQuota{ObjectMeta: metav1.ObjectMeta{Name: "lab"}, Spec: gpuwardenv1alpha1.GPUQuotaSpec{
		Subjects:  []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectGroup, Name: "lab"}},
		Borrowing: &gpuwardenv1alpha1.QuotaBorrowing{GPUEquivalents: q("4")},
		Budget:    &gpuwardenv1alpha1.QuotaBudget{GPUHours: q("500"), Window: "Month"}},
		Status: gpuwardenv1alpha1.GPUQuotaStatus{Usage: []gpuwardenv1alpha1.UserUsage{{User: "sam",
			Budget: &gpuwardenv1alpha1.BudgetUsage{UsedGPUHours: "412.5", GPUHours: "500", Window: "Month", From: "GPUQuota lab", Told: 80}}}}}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(lab).Build()
	o := &Options{GroupsSet: true, Groups: []string{"lab"}, ContainerType: "docker", now: time.Now}
	var b strings.Builder
	if err := o.Run(context.Background(), c, "sam", &b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"borrowing.gpuEquivalents  4", "budget.gpuHours           500 per this month (UTC)  GPUQuota lab",
		"Budget: 412.5 of 500 gpu-hours used in the window (Month); told at 80 %"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("explain user lacks %q:\n%s", want, b.String())
		}
	}
}

// TestExplainABorrowedAllocation: a borrowed allocation says so, the rule by which it is
// given back, and why it is being given back when it is.
func TestExplainABorrowedAllocation(t *testing.T) {
	a := &gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: "sweep-3", Annotations: map[string]string{
		gpuwardenv1alpha1.AnnotationGiveBack: "borrowed beyond sam's quota; ria-1 of ria waits for them within their quota"}},
		Spec:   gpuwardenv1alpha1.GPUAllocationSpec{User: "sam", NodeName: "gpu01"},
		Status: gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseBound, Borrowed: true}}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(a).Build()
	var b strings.Builder
	if err := explainAllocation(context.Background(), c, "sweep-3", &b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"It is borrowed: it took sam beyond their quota", "the lowest quota priority first, then the latest bound",
		"It is being given back now: borrowed beyond sam's quota; ria-1 of ria waits for them within their quota."} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("explain allocation lacks %q:\n%s", want, b.String())
		}
	}
}

// TestExplainReservations: a holder a reservation displaces says when it is stopped and
// by which reservation; a request kept off reserved GPUs says why it cannot start now.
func TestExplainReservations(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 12, 11, 9, 0, 0, 0, time.UTC))
	held := &gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: "bob-train"},
		Spec: gpuwardenv1alpha1.GPUAllocationSpec{User: "bob", NodeName: "gpu01"},
		Status: gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseBound, Displacement: &gpuwardenv1alpha1.Displacement{
			Reservation: "deadline", At: at, Message: "GPUReservation deadline takes GPU 0 for group nlp from 2026-12-11T09:00:00Z to 2026-12-11T17:00:00Z"}}}
	waits := &gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: "erin-1"},
		Spec: gpuwardenv1alpha1.GPUAllocationSpec{User: "erin", NodeName: "gpu01"},
		Status: gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhasePending, Reason: gpuwardenv1alpha1.ReasonNoCapacity,
			Message: "the GPUs free now are kept for a reservation, which begins before this request's runtime limit would end: GPU 0 reserved by GPUReservation deadline",
			Queue:   &gpuwardenv1alpha1.QueueStatus{Position: 1, Waiting: 1, Message: "first in the queue", BlockedBy: "reservation/deadline", LatestStart: &at}}}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(held, waits).Build()
	for name, wants := range map[string][]string{
		"bob-train": {"A reservation takes its GPUs: GPUReservation deadline takes GPU 0", "by 2026-12-11T09:00:00Z its checkpoint hook runs, it is stopped", "kubectl get rsv deadline"},
		"erin-1":    {"Why it cannot start now: the GPUs free now are kept for a reservation", "when reservation/deadline ends"},
	} {
		var b strings.Builder
		if err := explainAllocation(context.Background(), c, name, &b); err != nil {
			t.Fatal(err)
		}
		for _, want := range wants {
			if !strings.Contains(b.String(), want) {
				t.Errorf("explain allocation %s lacks %q:\n%s", name, want, b.String())
			}
		}
	}
}

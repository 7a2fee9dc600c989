package testutil

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

func TestBuildersSetWhatTheySay(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	w := MakeAllocation("alice-train-1").User("alice").Node("gpu01").GPUs(1).Source(gpuwardenv1alpha1.SourceGateway).
		Container("train").ContainerID("c0ffee").Created(t0).Annotation("a", "1").Bound("GPU-0").Attached("c0ffee").BoundAt(t0)
	got := w.Obj()
	want := &gpuwardenv1alpha1.GPUAllocation{
		ObjectMeta: metav1.ObjectMeta{Name: "alice-train-1", CreationTimestamp: metav1.NewTime(t0), Annotations: map[string]string{"a": "1"}},
		Spec: gpuwardenv1alpha1.GPUAllocationSpec{User: "alice", NodeName: "gpu01", Request: gpuwardenv1alpha1.AllocationRequest{GPUs: ptr.To[int32](1)},
			Source: gpuwardenv1alpha1.SourceGateway, ContainerName: "train", ContainerID: "c0ffee"},
		Status: gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseBound, ContainerID: "c0ffee", BoundTime: ptr.To(metav1.NewTime(t0)),
			Devices: []gpuwardenv1alpha1.BoundDevice{{Index: 0, UUID: "GPU-0", Weight: resource.MustParse("1")}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("allocation (-want +got):\n%s", diff)
	}
	w.User("bob")
	if got.Spec.User != "alice" {
		t.Error("building on after Obj changed the object returned")
	}

	q := MakeQuota("everyone").Everyone().Groups("vip").Priority(10).GPUEquivalents("2").MaxGPUsPerContainer(2).MaxContainers(3).Obj()
	wantQ := &gpuwardenv1alpha1.GPUQuota{ObjectMeta: metav1.ObjectMeta{Name: "everyone"}, Spec: gpuwardenv1alpha1.GPUQuotaSpec{
		Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectEveryone}, {Kind: gpuwardenv1alpha1.SubjectGroup, Name: "vip"}},
		Priority: ptr.To[int32](10),
		Limits: gpuwardenv1alpha1.QuotaLimits{GPUEquivalents: ptr.To(resource.MustParse("2")), MaxGPUsPerContainer: ptr.To[int32](2),
			MaxContainers: ptr.To[int32](3)}}}
	if diff := cmp.Diff(wantQ, q); diff != "" {
		t.Errorf("quota (-want +got):\n%s", diff)
	}

	p := MakePolicy("short").Users("bob").GPUHoldAfterStop(time.Second).IdleTimeout(30*time.Minute).Notify("", "https://hook").Obj()
	wantP := &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "short"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{
		Selector:         gpuwardenv1alpha1.PolicySelector{Users: []string{"bob"}},
		GPUHoldAfterStop: ptr.To[gpuwardenv1alpha1.Duration]("1s"),
		Idle:             &gpuwardenv1alpha1.IdlePolicy{Timeout: ptr.To[gpuwardenv1alpha1.Duration]("30m0s")},
		Notify:           &gpuwardenv1alpha1.Notify{WebhookURL: "https://hook"}}}
	if diff := cmp.Diff(wantP, p); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
}

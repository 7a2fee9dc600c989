package inventory

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

func newInventory(t *testing.T, profile string, objs ...client.Object) (*Reconciler, *fakegpu.Server, *clocktesting.FakeClock) {
	t.Helper()
	s, err := fakegpu.New(profile)
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).
		WithStatusSubresource(&gpuwardenv1alpha1.GPU{}).Build()
	clk := clocktesting.NewFakeClock(t0)
	return &Reconciler{Client: c, GPUs: gpu.NewNVML(s), NodeName: "gpu01", Clock: clk,
		Interval: 10 * time.Second, SlowInterval: time.Minute}, s, clk
}

func reconcileInventory(t *testing.T, r *Reconciler) {
	t.Helper()
	res, err := r.Reconcile(context.Background(), ctrl.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != r.Interval {
		t.Errorf("RequeueAfter = %s, want the interval %s", res.RequeueAfter, r.Interval)
	}
}

func getGPU(t *testing.T, c client.Client, name string) *gpuwardenv1alpha1.GPU {
	t.Helper()
	g := &gpuwardenv1alpha1.GPU{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, g); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestInventoryCreatesOneGPUPerDevice(t *testing.T) {
	r, s, _ := newInventory(t, "h100-mig")
	reconcileInventory(t, r)
	var list gpuwardenv1alpha1.GPUList
	if err := r.Client.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 8 {
		t.Fatalf("%d GPU objects, want 8", len(list.Items))
	}
	g0 := getGPU(t, r.Client, "gpu01-gpu0")
	if g0.Spec != (gpuwardenv1alpha1.GPUSpec{NodeName: "gpu01", Index: 0}) || g0.Labels[gpuwardenv1alpha1.LabelNode] != "gpu01" {
		t.Errorf("gpu0 = %+v %v", g0.Spec, g0.Labels)
	}
	if g0.Status.UUID != s.UUIDs()[0] || g0.Status.Model != "NVIDIA H100 80GB HBM3" || g0.Status.Memory.String() != "80Gi" ||
		g0.Status.MIGMode != gpuwardenv1alpha1.MIGDisabled || g0.Status.Health != gpuwardenv1alpha1.HealthHealthy {
		t.Errorf("gpu0 status = %+v", g0.Status)
	}
	g5 := getGPU(t, r.Client, "gpu01-gpu5")
	var got []string
	for _, in := range g5.Status.MIGInstances {
		got = append(got, in.Profile+"="+in.Weight.String())
	}
	want := []string{"3g.40gb=428571429n", "2g.20gb=285714286n", "2g.20gb=285714286n"}
	if diff := cmp.Diff(want, got); diff != "" || g5.Status.MIGMode != gpuwardenv1alpha1.MIGEnabled {
		t.Errorf("gpu5 MIG (-want,+got):\n%s", diff)
	}
	if w := getGPU(t, r.Client, "gpu01-gpu7").Status.MIGInstances[0].Weight; w.String() != "1" {
		t.Errorf("a 7g instance of a 7-slice GPU weighs %s, want 1", w.String())
	}
}

func TestInventoryWritesOnlyChanges(t *testing.T) {
	r, s, clk := newInventory(t, "h100x8")
	reconcileInventory(t, r)
	rv := getGPU(t, r.Client, "gpu01-gpu1").ResourceVersion

	clk.Step(10 * time.Second)
	reconcileInventory(t, r)
	if got := getGPU(t, r.Client, "gpu01-gpu1").ResourceVersion; got != rv {
		t.Errorf("an unchanged GPU was written again")
	}

	// Utilisation is a slow number: written at most every SlowInterval.
	s.SetUtilization(1, 80, 10)
	clk.Step(10 * time.Second)
	reconcileInventory(t, r)
	if got := getGPU(t, r.Client, "gpu01-gpu1"); got.ResourceVersion != rv {
		t.Errorf("utilisation was written 20s after the last write; SlowInterval is 1m")
	}
	clk.Step(time.Minute)
	reconcileInventory(t, r)
	if got := getGPU(t, r.Client, "gpu01-gpu1"); got.ResourceVersion == rv {
		t.Errorf("utilisation was not written after SlowInterval")
	}

	// Health is not slow: a lost GPU shows at once.
	s.Lose(3, true)
	clk.Step(time.Second)
	reconcileInventory(t, r)
	g3 := getGPU(t, r.Client, "gpu01-gpu3")
	if g3.Status.Health != gpuwardenv1alpha1.HealthLost || g3.Status.UUID == "" {
		t.Errorf("lost GPU status = %+v (the UUID it had must stay)", g3.Status)
	}
	if !g3.Status.LastUpdateTime.Equal(&metav1.Time{Time: clk.Now()}) {
		t.Errorf("lastUpdateTime = %v, want %v", g3.Status.LastUpdateTime, clk.Now())
	}

	// A hardware XID makes a GPU unhealthy at once.
	s.InjectXID(5, 48)
	clk.Step(time.Second)
	reconcileInventory(t, r)
	if g5 := getGPU(t, r.Client, "gpu01-gpu5"); g5.Status.Health != gpuwardenv1alpha1.HealthUnhealthy || g5.Status.LastXID != 48 {
		t.Errorf("GPU after XID 48 = %+v", g5.Status)
	}
}

// vanishing lists fewer devices than before, like a GPU gone from NVML after a reset.
type vanishing struct {
	gpu.Backend
	keep int
}

func (v vanishing) Devices(ctx context.Context) ([]gpu.Device, error) {
	d, err := v.Backend.Devices(ctx)
	return d[:v.keep], err
}

func TestInventoryKeepsGPUsNVMLNoLongerLists(t *testing.T) {
	r, _, _ := newInventory(t, "dgxa100")
	reconcileInventory(t, r)
	r.GPUs = vanishing{Backend: r.GPUs, keep: 6}
	reconcileInventory(t, r)
	g7 := getGPU(t, r.Client, "gpu01-gpu7")
	if g7.Status.Health != gpuwardenv1alpha1.HealthLost || g7.Status.HealthMessage != "NVML no longer lists this GPU" {
		t.Errorf("gpu7 = %+v", g7.Status)
	}
	if g5 := getGPU(t, r.Client, "gpu01-gpu5"); g5.Status.Health != gpuwardenv1alpha1.HealthHealthy {
		t.Errorf("gpu5 = %+v", g5.Status)
	}
}

// Holders are the allocation controller's to write: a status write of the inventory keeps
// them, the allocations and their users alike.
func TestInventoryKeepsHolders(t *testing.T) {
	r, s, clk := newInventory(t, "h100x8")
	reconcileInventory(t, r)
	g := getGPU(t, r.Client, "gpu01-gpu1")
	g.Status.Holder, g.Status.HolderUsers = "alice-train-1", "alice"
	if err := r.Client.Status().Update(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	s.SetUtilization(1, 80, 10)
	clk.Step(2 * time.Minute)
	reconcileInventory(t, r)
	got := getGPU(t, r.Client, "gpu01-gpu1")
	if got.Status.UtilizationPercent != 80 {
		t.Fatalf("utilisation = %d, want the write of 80", got.Status.UtilizationPercent)
	}
	if got.Status.Holder != "alice-train-1" || got.Status.HolderUsers != "alice" {
		t.Errorf("holder %q, holderUsers %q after an inventory write; want alice-train-1, alice", got.Status.Holder, got.Status.HolderUsers)
	}
}

package gateway

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// withMIG makes GPU 0 whole and GPU 1 split into 1g.10gb ×3 and 3g.40gb ×1 (MIG-a … MIG-d),
// and a ledger in which MIG-a is bound.
func withMIG(t *testing.T, c client.Client) {
	t.Helper()
	withGPUs(t, c, "GPU-0")
	inst := func(uuid, profile, weight string) gpuwardenv1alpha1.MIGInstance {
		return gpuwardenv1alpha1.MIGInstance{UUID: uuid, Profile: profile, Weight: resource.MustParse(weight)}
	}
	g := &gpuwardenv1alpha1.GPU{ObjectMeta: metav1.ObjectMeta{Name: gpu.ObjectName("n1", 1), Labels: map[string]string{gpuwardenv1alpha1.LabelNode: "n1"}},
		Spec: gpuwardenv1alpha1.GPUSpec{NodeName: "n1", Index: 1},
		Status: gpuwardenv1alpha1.GPUStatus{UUID: "GPU-1", MIGMode: gpuwardenv1alpha1.MIGEnabled, Health: gpuwardenv1alpha1.HealthHealthy,
			MIGInstances: []gpuwardenv1alpha1.MIGInstance{inst("MIG-a", "1g.10gb", "0.142"), inst("MIG-b", "1g.10gb", "0.142"),
				inst("MIG-c", "1g.10gb", "0.142"), inst("MIG-e", "1g.10gb", "0.142"), inst("MIG-d", "3g.40gb", "0.428")}}}
	if err := c.Create(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	l := allocation.Ledger{Bindings: map[string]allocation.Binding{}}
	l.Bind("held", "bob", "n1", []allocation.Slot{{GPUIndex: 1, UUID: "MIG-a", Profile: "1g.10gb", Share: 0.142}}, time.Time{})
	data, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ledger.DefaultNamespace, Name: ledger.Name},
		Data: map[string]string{ledger.DataKey: data}}); err != nil {
		t.Fatal(err)
	}
}

// A GPU split into MIG slices named by its index or UUID is refused at once with how to ask
// and what is free; a refused or given-up profile request says what is free now.
func TestGatewayAllocatorExplainsAPartitionedGPUAndWhatIsFree(t *testing.T) {
	const free = "free now: 1g.10gb ×3, 3g.40gb ×1"
	for _, dev := range []string{"1", "GPU-1"} {
		g, c := newGatewayAllocator(t)
		withMIG(t, c)
		_, _, err := g.Allocate(context.Background(), "alice", gateway.GPURequest{Devices: []string{"0", dev}}, "", "")
		var ae *gateway.AllocationError
		want := `GPU 1 is split into MIG slices: ask for a profile (--gpus '"device=1g.10gb"'), ` + free
		if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || ae.Message != want {
			t.Errorf("device=0,%s: %v, want a 403 saying %q", dev, err, want)
		}
		var list gpuwardenv1alpha1.GPUAllocationList
		if _ = c.List(context.Background(), &list); len(list.Items) != 0 {
			t.Errorf("device=0,%s made an allocation: %d", dev, len(list.Items))
		}
		// Refused before any allocation exists, it is a refused request all the same.
		if rejects := g.Audit.(*testutil.AuditRecorder).Of(audit.TypeGPUReject); len(rejects) != 1 || rejects[0].User != "alice" ||
			rejects[0].Details["message"] != want {
			t.Errorf("device=0,%s recorded %+v; want one gpu.reject with the refusal", dev, rejects)
		}
	}

	g, c := newGatewayAllocator(t)
	withMIG(t, c)
	decideAs(t, c, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseRejected, Reason: gpuwardenv1alpha1.ReasonUnsatisfiable,
		Message: "no GPU on n1 offers MIG profile 7g.80gb (offered: 1g.10gb, 3g.40gb)"})
	_, _, err := g.Allocate(context.Background(), "alice", gateway.GPURequest{MIGProfile: "7g.80gb"}, "", "")
	var ae *gateway.AllocationError
	want := "no GPU for you: no GPU on n1 offers MIG profile 7g.80gb (offered: 1g.10gb, 3g.40gb) (Unsatisfiable); " + free
	if !errors.As(err, &ae) || ae.Message != want {
		t.Errorf("a refused profile: %v, want %q", err, want)
	}

	decideAs(t, c, gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhasePending, Reason: gpuwardenv1alpha1.ReasonNoCapacity,
		Message: "no free MIG instance of profile 3g.40gb"})
	_, _, err = g.Allocate(context.Background(), "alice", gateway.GPURequest{MIGProfile: "3g.40gb"}, "", "")
	want = "no GPU free after waiting 300ms: no free MIG instance of profile 3g.40gb; " + free +
		"; your request was number 1 of 1 waiting on n1 (try again later, or ask for a profile that is free)"
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Message != want {
		t.Errorf("a profile given up on: %v, want %q", err, want)
	}
}

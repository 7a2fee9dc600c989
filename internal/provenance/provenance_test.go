package provenance

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

func TestSignatureCoversWhatIsGivenAndToWhom(t *testing.T) {
	ks, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseKey(ks)
	if err != nil {
		t.Fatal(err)
	}
	a := &gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: "adopted-0123456789ab"},
		Spec: gpuwardenv1alpha1.GPUAllocationSpec{User: "alice", NodeName: "gpu01", Source: gpuwardenv1alpha1.SourceAdopted,
			Request: gpuwardenv1alpha1.AllocationRequest{Devices: []string{"GPU-1"}}, ContainerID: "0123456789ab"}}
	if Verify(key, a) {
		t.Fatal("an unsigned allocation verifies")
	}
	a.Annotations = map[string]string{gpuwardenv1alpha1.AnnotationSignature: Sign(key, a)}
	if !Verify(key, a) {
		t.Fatal("a signed allocation does not verify")
	}
	for name, change := range map[string]func(*gpuwardenv1alpha1.GPUAllocation){
		"user":    func(a *gpuwardenv1alpha1.GPUAllocation) { a.Spec.User = "bob" },
		"devices": func(a *gpuwardenv1alpha1.GPUAllocation) { a.Spec.Request.Devices = []string{"GPU-2"} },
		"node":    func(a *gpuwardenv1alpha1.GPUAllocation) { a.Spec.NodeName = "gpu02" },
		"name":    func(a *gpuwardenv1alpha1.GPUAllocation) { a.Name = "adopted-ffffffffffff" },
		"source":  func(a *gpuwardenv1alpha1.GPUAllocation) { a.Spec.Source = gpuwardenv1alpha1.SourceGateway },
	} {
		b := a.DeepCopy()
		change(b)
		if Verify(key, b) {
			t.Errorf("a copy with another %s verifies", name)
		}
	}
	other, _ := NewKey()
	otherKey, _ := ParseKey(other)
	if Verify(otherKey, a) {
		t.Error("a signature verifies under another key")
	}
	if _, err := ParseKey("short"); err == nil {
		t.Error("a malformed key parses")
	}
}

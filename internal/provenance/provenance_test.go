package provenance

import (
	"testing"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
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
	a := testutil.MakeAllocation("adopted-0123456789ab").User("alice").Node("gpu01").Source(gpuwardenv1alpha1.SourceAdopted).
		Devices("GPU-1").ContainerID("0123456789ab").Obj()
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

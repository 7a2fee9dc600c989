package allocation

import (
	"context"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestALaggingCacheDecidesNothingTwice: the ledger is read from the API server, the
// allocations from this process's cache, which may lag (a new cluster allocator, or
// another process that released first). A binding whose allocation the cache has not seen
// yet stands while the API server has it; an allocation the cache still shows Bound but
// the ledger no longer holds is not bound again while the API server has it gone or
// going; one the API server still has live and Bound (a lost ledger) is.
func TestALaggingCacheDecidesNothingTwice(t *testing.T) {
	ctx := context.Background()
	stored := func(objs ...client.Object) client.Reader {
		return fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).Build()
	}
	binding := allocation.Binding{User: "ann", Node: "n1", BoundAt: t0, Slots: []allocation.Bound{{UUID: "GPU-0", Weight: 1}}}
	newPass := func(reader client.Reader, bindings map[string]allocation.Binding) *pass {
		return &pass{r: &Reconciler{NodeName: "n1", Reader: reader}, node: "n1", now: t0, ledger: allocation.Ledger{Bindings: bindings}}
	}

	t.Run("a binding the cache has not seen stands while the API server has it", func(t *testing.T) {
		created := testutil.MakeAllocation("new").User("ann").Node("n1").Obj()
		p := newPass(stored(created), map[string]allocation.Binding{"new": binding})
		p.release(ctx, nil)
		if _, ok := p.ledger.Bindings["new"]; !ok || p.changed || !p.retry {
			t.Errorf("released a binding the cache had not seen yet: ledger %v, changed %v, retry %v", p.ledger.Bindings, p.changed, p.retry)
		}
	})
	t.Run("a binding whose allocation is gone from the API server is released", func(t *testing.T) {
		p := newPass(stored(), map[string]allocation.Binding{"gone": binding})
		p.release(ctx, nil)
		if _, ok := p.ledger.Bindings["gone"]; ok || !p.changed || p.released["gone"].reason != "allocation deleted" {
			t.Errorf("kept a binding of a deleted allocation: ledger %v, released %v", p.ledger.Bindings, p.released)
		}
	})

	bound := testutil.MakeAllocation("old").User("ann").Node("n1").Bound("GPU-0").Obj()
	bound.ResourceVersion = "7"
	cases := []struct {
		name   string
		stored []client.Object
		waits  bool
	}{
		{"deleted: the cache has not seen it go", nil, false},
		{"told to release: the cache has not seen it", []client.Object{testutil.MakeAllocation("old").User("ann").Node("n1").Bound("GPU-0").
			Annotation(gpuwardenv1alpha1.AnnotationRelease, "done").Obj()}, false},
		{"live and Bound in the API server too: a lost ledger", []client.Object{bound}, true},
	}
	for _, c := range cases {
		t.Run("Bound in the cache, not in the ledger, "+c.name, func(t *testing.T) {
			reader := stored(c.stored...)
			cached := bound.DeepCopy()
			if c.waits {
				now := &gpuwardenv1alpha1.GPUAllocation{}
				if err := reader.Get(ctx, client.ObjectKey{Name: "old"}, now); err != nil {
					t.Fatal(err)
				}
				cached.ResourceVersion = now.ResourceVersion // the cache is up to date
			}
			p := newPass(reader, map[string]allocation.Binding{})
			if got := p.waits(ctx, cached); got != c.waits {
				t.Errorf("waits = %v, want %v", got, c.waits)
			}
		})
	}
}

package ledger

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

// staleCache answers Get with the object as it was when told to freeze: an informer behind.
type staleCache struct {
	client.Client
	frozen *corev1.ConfigMap
}

func (s *staleCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	if s.frozen == nil {
		return s.Client.Get(ctx, key, obj)
	}
	s.frozen.DeepCopyInto(obj.(*corev1.ConfigMap))
	return nil
}

// TestLedgerStoreRemembersItsOwnWrites: a pass starts from the copy this node wrote while
// the cache shows a version the node has had (at or behind its write); a version written by
// someone else is read from the API server; a conflict forgets the copy.
func TestLedgerStoreRemembersItsOwnWrites(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).Build()
	cache := &staleCache{Client: c}
	s := NewStore(c, c, DefaultNamespace)
	s.cache = cache
	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

	cm, l, remembered, err := s.Read(ctx, false)
	if err != nil || remembered {
		t.Fatalf("first read: remembered %v, %v", remembered, err)
	}
	before := cm.DeepCopy()
	l.Bind("a", "alice", "n", []allocation.Slot{{UUID: "GPU-0"}}, at)
	if err := s.Write(ctx, cm, l); err != nil {
		t.Fatal(err)
	}
	cache.frozen = before // the informer has not seen the write yet
	_, l, remembered, err = s.Read(ctx, false)
	if err != nil || !remembered || len(l.Bindings) != 1 {
		t.Fatalf("after its own write, behind cache: remembered %v, %d bindings, %v", remembered, len(l.Bindings), err)
	}
	delete(l.Bindings, "a") // a pass's changes do not reach the remembered copy unwritten
	if _, l2, _, _ := s.Read(ctx, false); len(l2.Bindings) != 1 {
		t.Fatalf("the remembered copy was changed by a pass that did not write: %d bindings", len(l2.Bindings))
	}

	// Someone else writes the ledger: the cache shows a version the node never had.
	other := &corev1.ConfigMap{}
	if err := c.Get(ctx, s.key, other); err != nil {
		t.Fatal(err)
	}
	other.Data[DataKey] = `{"bindings":{}}`
	if err := c.Update(ctx, other); err != nil {
		t.Fatal(err)
	}
	cache.frozen = nil
	if _, l, remembered, _ = s.Read(ctx, false); remembered || len(l.Bindings) != 0 {
		t.Fatalf("after another's write: remembered %v, %d bindings", remembered, len(l.Bindings))
	}

	// A write over a version someone else has replaced since conflicts, and is forgotten.
	cm, l, _, _ = s.Read(ctx, false)
	stale := cm.DeepCopy()
	if err := s.Write(ctx, cm, l); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, stale, l); !apierrors.IsConflict(err) {
		t.Fatalf("a write over a replaced version: %v, want a conflict", err)
	}
	if _, _, remembered, _ = s.Read(ctx, false); remembered {
		t.Fatal("the copy was still used after a conflict")
	}
	if _, _, remembered, _ = s.Read(ctx, true); remembered {
		t.Fatal("a fresh read used the remembered copy")
	}
}

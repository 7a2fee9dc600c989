package ledger

// Regression tests from a review of the split ledger: each was a way to break an invariant.

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

var reviewAt = time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)

func bindOn(name, node, gpu string) func(allocation.Ledger) {
	return func(l allocation.Ledger) {
		l.Bind(name, "alice", node, []allocation.Slot{{UUID: gpu}}, reviewAt)
	}
}

// slotsOf returns, per GPU UUID, the allocations a fresh store's ledger binds to it.
func slotsOf(t *testing.T, c client.Client) map[string][]string {
	t.Helper()
	_, l, _, err := NewStore(c, c, DefaultNamespace).Read(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for name, b := range l.Bindings {
		for _, s := range b.Slots {
			out[s.UUID] = append(out[s.UUID], name)
		}
	}
	return out
}

// TestReviewFailedShardWriteDropsTheNodeFromTheRememberedCopy: one shard write fails (any
// transient error) while the flush's head write succeeds. flushShard deletes the node's
// shard from memory, but the head still indexes it (Flushed), so remember()'s view drops
// every binding already flushed to that node. The next pass starts from that remembered
// copy (the cache shows this store's own version), binds a slot that is already bound, and
// the head CAS lets it through: one GPU bound to two allocations.
func TestReviewFailedShardWriteDropsTheNodeFromTheRememberedCopy(t *testing.T) {
	ctx := context.Background()
	failN1 := false
	c := fake.NewClientBuilder().WithScheme(scheme.New()).Build()
	ic := interceptor.NewClient(c, interceptor.Funcs{
		Update: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if failN1 && obj.GetName() == ShardName("n1") {
				failN1 = false
				return apierrors.NewServerTimeout(corev1.Resource("configmaps"), "update", 1)
			}
			return cl.Update(ctx, obj, opts...)
		},
	})
	newHead(t, c, "head-1", "")
	s := NewStore(ic, ic, DefaultNamespace)
	s.FlushAt = 2

	write(t, s, bindOn("a", "n1", "GPU-0"))
	write(t, s, bindOn("b", "n2", "GPU-1")) // flush: n1, n2 shards at 2, head indexes both
	if h := headOf(t, c); h.Flushed["n1"] != 2 || len(h.Changes) != 0 {
		t.Fatalf("setup: head %+v", h)
	}

	failN1 = true
	write(t, s, bindOn("c", "n1", "GPU-2"))
	write(t, s, bindOn("d", "n2", "GPU-3")) // flush: n1 fails (timeout), n2 and the head succeed

	// The next pass: remembered copy.
	cm, l, remembered, err := s.Read(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Bindings["a"]; !ok {
		t.Errorf("remembered=%v copy lost binding a (flushed to n1's shard): %v", remembered, keys(l))
	}
	// A pass that believes GPU-0 is free binds it.
	if _, ok := l.Bindings["a"]; !ok {
		bindOn("x", "n1", "GPU-0")(l)
		if err := s.Write(ctx, cm, l); err != nil {
			t.Fatalf("write: %v", err)
		}
		if got := slotsOf(t, c)["GPU-0"]; len(got) > 1 {
			t.Errorf("GPU-0 is bound to %v in the stored ledger (the write was not a conflict)", got)
		}
	}
}

// TestReviewStaleFlusherClobbersTheNewHeadsShard: store A writes head-1 and starts to
// flush. Before it reads n1's shard (a pause, a deposed leader), the head is deleted and
// recreated (head-2), and store B binds on n1 and flushes it. A reads the shard, sees a
// foreign head, starts the shard over from its own head-1 changes and Updates it with the
// resourceVersion it just read: it succeeds. A's head write then fails, but head-2 indexes
// n1 and no longer holds B's change: B's binding is gone from the ledger for good.
func TestReviewStaleFlusherClobbersTheNewHeadsShard(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).Build()
	newHead(t, c, "head-1", "")
	armed := false
	ic := interceptor.NewClient(c, interceptor.Funcs{
		Get: func(ctx context.Context, cl client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if armed && key.Name == ShardName("n1") {
				armed = false
				// Meanwhile: the head is reset, and B binds on n1 and flushes.
				if err := c.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: DefaultNamespace, Name: Name}}); err != nil {
					t.Fatal(err)
				}
				newHead(t, c, "head-2", "")
				b := NewStore(c, c, DefaultNamespace)
				b.FlushAt = 1
				write(t, b, bindOn("b", "n1", "GPU-1"))
				if got := names(t, c); got["b"] != "n1" {
					t.Fatalf("B's binding right after B's flush: %v", got)
				}
			}
			return cl.Get(ctx, key, obj, opts...)
		},
	})
	a := NewStore(ic, ic, DefaultNamespace)
	a.FlushAt = 1
	cm, l, _, err := a.Read(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	bindOn("a", "n1", "GPU-0")(l)
	armed = true
	if err := a.Write(ctx, cm, l); err != nil { // the head write succeeds; the flush fails, logged
		t.Fatal(err)
	}
	if got := names(t, c); got["b"] != "n1" {
		sh, _ := shardOf(t, c, "n1")
		t.Errorf("B's binding b is gone from the ledger of head-2: %v; n1's shard %+v; head %+v", got, sh, headOf(t, c))
	}
}

// TestLedgerIsRefusedByAGpuwardenFromBeforeTheSplit: during a rolling upgrade a
// gpuwarden from before the split still runs beside the new one. Had it read the new head
// as an empty ledger (unknown fields are ignored), it would have bound busy GPUs and
// written its whole ledger over the head. The head's old key holds what it cannot decode,
// so its passes fail and decide nothing, and the new head is read whole.
func TestLedgerIsRefusedByAGpuwardenFromBeforeTheSplit(t *testing.T) {
	ctx := context.Background()
	c, s := newLedger(t, 2)
	write(t, s, bindOn("a", "n1", "GPU-0"))
	write(t, s, bindOn("b", "n1", "GPU-1"))
	write(t, s, bindOn("c", "n1", "GPU-2"))
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: DefaultNamespace, Name: Name}, cm); err != nil {
		t.Fatal(err)
	}
	// As the pre-split gpuwarden decoded it (allocation.ParseLedger then).
	var old struct {
		Bindings map[string]allocation.Binding `json:"bindings"`
	}
	if err := json.Unmarshal([]byte(cm.Data[DataKey]), &old); err == nil {
		t.Fatalf("a pre-split gpuwarden decodes the head's %s as a ledger of %d bindings", DataKey, len(old.Bindings))
	}
	if got := names(t, c); len(got) != 3 {
		t.Fatalf("the new head read back: %v", got)
	}
}

func keys(l allocation.Ledger) []string {
	out := []string{}
	for k := range l.Bindings {
		out = append(out, k)
	}
	return out
}

package ledger

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
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
	other.Data[HeadKey] = `{}`
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
	l.Bind("b", "bob", "n", []allocation.Slot{{UUID: "GPU-1"}}, at)
	if err := s.Write(ctx, cm, l); err != nil {
		t.Fatal(err)
	}
	l.Bind("c", "carol", "n", []allocation.Slot{{UUID: "GPU-2"}}, at)
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

// write reads the ledger with s, applies f and writes it.
func write(t *testing.T, s *Store, f func(allocation.Ledger)) {
	t.Helper()
	cm, l, _, err := s.Read(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	f(l)
	if err := s.Write(context.Background(), cm, l); err != nil {
		t.Fatal(err)
	}
}

// names reads the stored ledger with a store of its own and returns its bindings' names
// with their nodes.
func names(t *testing.T, c client.Client) map[string]string {
	t.Helper()
	_, l, _, err := NewStore(c, c, DefaultNamespace).Read(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for name, b := range l.Bindings {
		out[name] = b.Node
	}
	return out
}

func headOf(t *testing.T, c client.Client) head {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: DefaultNamespace, Name: Name}, cm); err != nil {
		t.Fatal(err)
	}
	h := head{}
	if err := json.Unmarshal([]byte(cm.Data[HeadKey]), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func shardOf(t *testing.T, c client.Client, node string) (shard, bool) {
	t.Helper()
	cm := &corev1.ConfigMap{}
	err := c.Get(context.Background(), client.ObjectKey{Namespace: DefaultNamespace, Name: ShardName(node)}, cm)
	if apierrors.IsNotFound(err) {
		return shard{}, false
	} else if err != nil {
		t.Fatal(err)
	}
	sh := shard{}
	if err := json.Unmarshal([]byte(cm.Data[DataKey]), &sh); err != nil {
		t.Fatal(err)
	}
	return sh, true
}

// newLedger is a fake API server holding an empty head, head-1, and a store that moves
// the head's changes to the shards every flushAt.
func newLedger(t *testing.T, flushAt int) (client.Client, *Store) {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).Build()
	newHead(t, c, "head-1", "")
	s := NewStore(c, c, DefaultNamespace)
	s.FlushAt = flushAt
	return c, s
}

func newHead(t *testing.T, c client.Client, uid, data string) {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: DefaultNamespace, Name: Name, UID: types.UID(uid)},
		Data: map[string]string{SigningKeyField: "key"}}
	if data != "" {
		cm.Data[DataKey] = data
	}
	if err := c.Create(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
}

// TestLedgerMovesItsChangesToPerNodeShards: decisions are written to the head; once it
// holds FlushAt changes they move to their nodes' shards and leave the head; a store that
// reads afresh sees the same ledger throughout, releases included; the signing key beside
// the ledger is kept.
func TestLedgerMovesItsChangesToPerNodeShards(t *testing.T) {
	c, s := newLedger(t, 3)
	at := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	bind := func(name, node string) func(allocation.Ledger) {
		return func(l allocation.Ledger) { l.Bind(name, "alice", node, []allocation.Slot{{UUID: "GPU-" + name}}, at) }
	}
	write(t, s, bind("a", "n1"))
	write(t, s, bind("b", "n1"))
	if _, ok := shardOf(t, c, "n1"); ok {
		t.Fatal("a shard was written before the head held FlushAt changes")
	}
	if got := names(t, c); len(got) != 2 {
		t.Fatalf("before the flush: %v", got)
	}
	write(t, s, bind("c", "n2"))
	h := headOf(t, c)
	if len(h.Changes) != 0 || h.Flushed["n1"] != 3 || h.Flushed["n2"] != 3 {
		t.Fatalf("after the flush the head holds %d changes, flushed %v; want none, n1 and n2 at 3", len(h.Changes), h.Flushed)
	}
	if sh, _ := shardOf(t, c, "n1"); len(sh.Bindings) != 2 || sh.Head != "head-1" || sh.Seq != 3 {
		t.Fatalf("n1's shard: %+v", sh)
	}
	if got := names(t, c); len(got) != 3 || got["c"] != "n2" {
		t.Fatalf("after the flush: %v", got)
	}

	// A release and a bind wait in the head; a fresh store applies them over the shards.
	write(t, s, func(l allocation.Ledger) { delete(l.Bindings, "a") })
	write(t, s, bind("d", "n3"))
	if got := names(t, c); len(got) != 3 || got["a"] != "" || got["d"] != "n3" {
		t.Fatalf("with changes over the shards: %v", got)
	}
	// A binding moved to another node: released on the first, bound on the second.
	write(t, s, func(l allocation.Ledger) { bind("b", "n2")(l) })
	if sh, _ := shardOf(t, c, "n1"); len(sh.Bindings) != 0 {
		t.Fatalf("n1's shard after its releases moved there: %+v", sh)
	}
	if got := names(t, c); len(got) != 3 || got["b"] != "n2" {
		t.Fatalf("after the move: %v", got)
	}
	cm := &corev1.ConfigMap{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: DefaultNamespace, Name: Name}, cm); err != nil || cm.Data[SigningKeyField] != "key" {
		t.Fatalf("the signing key beside the ledger: %q, %v", cm.Data[SigningKeyField], err)
	}

	// Another store, on another node, moves changes too: each reads what the other wrote.
	other := NewStore(c, c, DefaultNamespace)
	other.FlushAt = 1
	write(t, other, bind("e", "n1"))
	write(t, s, bind("f", "n1"))
	if got := names(t, c); len(got) != 5 || got["e"] != "n1" || got["f"] != "n1" {
		t.Fatalf("after two stores' writes: %v", got)
	}
	// One node's bindings, read from the head and its shard alone.
	for node, want := range map[string][]string{"n1": {"e", "f"}, "n2": {"b", "c"}, "n3": {"d"}, "n4": nil} {
		l, err := ReadNode(context.Background(), c, DefaultNamespace, node)
		if got := slices.Sorted(maps.Keys(l.Bindings)); err != nil || !slices.Equal(got, want) {
			t.Errorf("ReadNode(%s) = %v, %v; want %v", node, got, err, want)
		}
	}
}

// TestLedgerShardsOfADeletedHeadAreNotRead: deleting the head empties the ledger (an
// admin's reset, a test's clean slate) even though the old shards are still there, and the
// next flush replaces them.
func TestLedgerShardsOfADeletedHeadAreNotRead(t *testing.T) {
	ctx := context.Background()
	c, s := newLedger(t, 1)
	at := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	write(t, s, func(l allocation.Ledger) { l.Bind("a", "alice", "n1", []allocation.Slot{{UUID: "GPU-0"}}, at) })
	if err := c.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: DefaultNamespace, Name: Name}}); err != nil {
		t.Fatal(err)
	}
	newHead(t, c, "head-2", "")
	if got := names(t, c); len(got) != 0 {
		t.Fatalf("a new head read the old head's shards: %v", got)
	}
	if _, _, _, err := s.Read(ctx, true); err != nil {
		t.Fatal(err)
	}
	write(t, s, func(l allocation.Ledger) { l.Bind("b", "bob", "n1", []allocation.Slot{{UUID: "GPU-1"}}, at) })
	if sh, _ := shardOf(t, c, "n1"); sh.Head != "head-2" || len(sh.Bindings) != 1 {
		t.Fatalf("n1's shard after the new head's flush: %+v", sh)
	}
	if got := names(t, c); len(got) != 1 || got["b"] != "n1" {
		t.Fatalf("after the new head's flush: %v", got)
	}
}

// TestLedgerStoredBeforeTheSplitIsRead: a ledger written as one object by an earlier
// gpuwarden is read as it was and moved to the shards by the next flush.
func TestLedgerStoredBeforeTheSplitIsRead(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme.New()).Build()
	old := allocation.Ledger{Bindings: map[string]allocation.Binding{}}
	at := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	old.Bind("a", "alice", "n1", []allocation.Slot{{UUID: "GPU-0"}}, at)
	old.Bind("b", "bob", "n2", []allocation.Slot{{UUID: "GPU-1"}}, at)
	data, err := old.Encode()
	if err != nil {
		t.Fatal(err)
	}
	newHead(t, c, "head-1", data)
	if got := names(t, c); len(got) != 2 || got["a"] != "n1" || got["b"] != "n2" {
		t.Fatalf("the ledger stored before the split: %v", got)
	}
	s := NewStore(c, c, DefaultNamespace)
	s.FlushAt = 1
	write(t, s, func(l allocation.Ledger) { delete(l.Bindings, "b") })
	if h := headOf(t, c); len(h.Bindings) != 0 || len(h.Changes) != 0 {
		t.Fatalf("the head after the flush: %+v", h)
	}
	if got := names(t, c); len(got) != 1 || got["a"] != "n1" {
		t.Fatalf("after the flush: %v", got)
	}
}

// TestLedgerShardNames: a node name that is no object name (capitals, too long) gets a
// digest, distinct per node.
func TestLedgerShardNames(t *testing.T) {
	if got := ShardName("gpu-01.lab"); got != "gpuwarden-ledger-node-gpu-01.lab" {
		t.Errorf("ShardName(gpu-01.lab) = %s", got)
	}
	long := strings.Repeat("a", 240)
	for _, node := range []string{"GPU-Box", "", long} {
		got := ShardName(node)
		if errs := validation.IsDNS1123Subdomain(got); len(errs) != 0 || !strings.HasPrefix(got, "gpuwarden-ledger-digest-") {
			t.Errorf("ShardName(%.20q) = %s: %v", node, got, errs)
		}
	}
	if ShardName("GPU-Box") == ShardName("gpu-box2") || ShardName("A") == ShardName("B") {
		t.Error("two nodes share a digest")
	}
}

// TestLedgerKeepsUsageWithTheRelease: the fair share's usage is written with the release
// that charges it, survives a flush to the shards, and is what a store reading afresh sees.
func TestLedgerKeepsUsageWithTheRelease(t *testing.T) {
	ctx := context.Background()
	c, s := newLedger(t, 2)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	cm, l, _, err := s.Read(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	l.Bind("a1", "alice", "n1", []allocation.Slot{{UUID: "GPU-1", Healthy: true}}, t0)
	if err := s.Write(ctx, cm, l); err != nil {
		t.Fatal(err)
	}
	cm, l, _, err = s.Read(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	b := l.Bindings["a1"]
	delete(l.Bindings, "a1")
	l.Charge(b, t0.Add(2*time.Hour), 0)
	if err := s.Write(ctx, cm, l); err != nil {
		t.Fatal(err)
	}
	_, fresh, _, err := NewStore(c, c, DefaultNamespace).Read(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if u := fresh.Usage["alice"]; u.GPUHours != 2 || !u.At.Equal(t0.Add(2*time.Hour)) || u.Holds != 1 {
		t.Errorf("usage read afresh = %+v, want 2 gpu-h at %v from 1 hold", u, t0.Add(2*time.Hour))
	}
	if len(fresh.Bindings) != 0 {
		t.Errorf("bindings = %v, want none", fresh.Bindings)
	}
}

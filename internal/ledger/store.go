// Package ledger owns the allocation ledger: the record of every live binding of GPUs to
// allocations, and the key beside it that signs the allocations gpuwarden makes itself.
//
// The ledger is stored in a head object and one shard per node. Every decision is written
// to the head alone, with optimistic concurrency, as the changes it makes (bindings made
// and released, each tagged with the head's sequence number): one object decides, so two
// binds never both land on a slot or a quota. Once the head holds FlushAt changes they are
// copied into the shards of their nodes, each shard recording the sequence it holds, and
// then dropped from the head. The ledger is the shards with the head's newer changes over
// them; its size is bounded by a node's bindings per shard and by FlushAt in the head,
// not by the cluster.
package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gpuwarden/gpuwarden/internal/allocation"
)

const (
	// Name is the ledger's head ConfigMap (in its namespace).
	Name = "gpuwarden-ledger"
	// DefaultNamespace holds the ledger (and its signing key) unless a controller is told otherwise.
	DefaultNamespace = "kube-system"
	// DataKey is the ConfigMap data key holding a shard's contents, and in the head the
	// ledger as stored before it was split.
	DataKey = "ledger.json"
	// HeadKey is the head's data key holding its contents.
	HeadKey = "head.json"
	// movedAway is what the head holds under DataKey: a gpuwarden from before the split
	// fails to decode it, and so decides nothing, instead of reading an empty ledger and
	// writing over the head (mixed versions during an upgrade).
	movedAway = `{"bindings":"moved to head.json and per-node shards by a newer gpuwarden"}`
	// ShardLabel marks the ledger's shards (value "shard"), so that an admin can list them.
	ShardLabel = "gpuwarden.io/ledger"
	// DefaultFlushAt is how many changes the head holds before they are moved to the shards.
	DefaultFlushAt = 512
)

// change is one binding made (Binding set) or released on a node, at the head's sequence Seq.
type change struct {
	Node    string              `json:"node"`
	Name    string              `json:"name"`
	Seq     int64               `json:"seq"`
	Binding *allocation.Binding `json:"binding,omitempty"`
}

// head is the head object's contents.
type head struct {
	// Seq is the sequence number of the last write that changed bindings.
	Seq int64 `json:"seq,omitempty"`
	// Changes are the changes not yet known to be in their shards, by node/name.
	Changes map[string]change `json:"changes,omitempty"`
	// Flushed is the sequence each node's shard was last known to hold: the shards' index.
	Flushed map[string]int64 `json:"flushed,omitempty"`
	// Bindings is the ledger as stored before it was split: read as changes.
	Bindings map[string]allocation.Binding `json:"bindings,omitempty"`
	// Usage is each user's recent GPU use (allocation.Ledger.Usage): it changes with the
	// releases in the same write, and is bounded by the users who used GPUs lately.
	Usage map[string]allocation.Usage `json:"usage,omitempty"`
}

// shard is a node's shard's contents: its bindings with every change up to Seq, of the
// head whose UID is Head (a shard of a deleted head is read as empty).
type shard struct {
	Head     string                        `json:"head"`
	Seq      int64                         `json:"seq"`
	Bindings map[string]allocation.Binding `json:"bindings"`
}

// stored is an object of the ledger as read or written, with its decoded contents.
type stored[T any] struct {
	cm  *corev1.ConfigMap
	doc T
}

// Store reads and writes the ledger, and keeps in memory the copy this node's passes last
// read or wrote: a pass starts from it while the cache's view of the head is one the node
// has already had (the head has not been written by anyone else since), and reads the
// stored ledger otherwise. A copy gone stale unseen only costs a write conflict; a pass
// that would refuse a request reads the stored ledger first (Reconcile). Used by the
// node's one allocation worker at a time.
type Store struct {
	// cache sees the head through the manager's informer (only its version is compared);
	// reader reads the ledger from the API server itself.
	cache, reader client.Reader
	writer        client.Writer
	key           client.ObjectKey
	// FlushAt is how many changes the head holds before they are moved to the shards.
	FlushAt int

	head   *stored[head]
	shards map[string]*stored[shard]
	ledger allocation.Ledger
	// known are the head's versions in this copy's line: read, replaced or written by this
	// node since the last read.
	known map[string]bool
}

func NewStore(c client.Client, reader client.Reader, namespace string) *Store {
	return &Store{cache: c, reader: reader, writer: c, key: client.ObjectKey{Namespace: namespace, Name: Name},
		FlushAt: DefaultFlushAt, shards: map[string]*stored[shard]{}}
}

// Read returns the head object and the ledger for a pass to change, and whether they are
// the remembered copy rather than the stored ledger (fresh asks for the stored one).
func (s *Store) Read(ctx context.Context, fresh bool) (*corev1.ConfigMap, allocation.Ledger, bool, error) {
	if !fresh && s.head != nil {
		seen := &corev1.ConfigMap{}
		if err := s.cache.Get(ctx, s.key, seen); err == nil && s.known[seen.ResourceVersion] {
			return s.head.cm.DeepCopy(), s.ledger.Clone(), true, nil
		}
	}
	s.head = nil
	cm := &corev1.ConfigMap{}
	err := s.reader.Get(ctx, s.key, cm)
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.key.Namespace, Name: s.key.Name}}
		if err := s.writer.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, allocation.Ledger{}, false, fmt.Errorf("creating the allocation ledger: %w", err)
		}
		if err := s.reader.Get(ctx, s.key, cm); err != nil {
			return nil, allocation.Ledger{}, false, fmt.Errorf("reading the allocation ledger: %w", err)
		}
	} else if err != nil {
		return nil, allocation.Ledger{}, false, fmt.Errorf("reading the allocation ledger: %w", err)
	}
	h, err := parseHead(cm.Data)
	if err != nil {
		return nil, allocation.Ledger{}, false, err
	}
	for node, seq := range h.Flushed {
		if have := s.shards[node]; have == nil || have.doc.Head != string(cm.UID) || have.doc.Seq < seq {
			if err := s.readShard(ctx, node); err != nil {
				return nil, allocation.Ledger{}, false, err
			}
		}
	}
	for node := range s.shards {
		if _, indexed := h.Flushed[node]; !indexed {
			delete(s.shards, node) // of a head deleted since, or not flushed yet
		}
	}
	s.remember(&stored[head]{cm, h}, map[string]bool{})
	return cm.DeepCopy(), s.ledger.Clone(), false, nil
}

// ReadNode returns the bindings of one node, reading the head and that node's shard alone
// from r (the API server itself); no ledger yet is an empty one.
func ReadNode(ctx context.Context, r client.Reader, namespace, node string) (allocation.Ledger, error) {
	s := &Store{reader: r, key: client.ObjectKey{Namespace: namespace, Name: Name}, shards: map[string]*stored[shard]{}}
	cm := &corev1.ConfigMap{}
	if err := r.Get(ctx, s.key, cm); apierrors.IsNotFound(err) {
		return allocation.Ledger{Bindings: map[string]allocation.Binding{}}, nil
	} else if err != nil {
		return allocation.Ledger{}, fmt.Errorf("reading the allocation ledger: %w", err)
	}
	h, err := parseHead(cm.Data)
	if err != nil {
		return allocation.Ledger{}, err
	}
	if _, ok := h.Flushed[node]; ok {
		if err := s.readShard(ctx, node); err != nil {
			return allocation.Ledger{}, err
		}
	}
	s.head = &stored[head]{cm, h}
	l := s.view()
	maps.DeleteFunc(l.Bindings, func(_ string, b allocation.Binding) bool { return b.Node != node })
	return l, nil
}

// readShard reads a node's shard from the API server; a missing one is empty.
func (s *Store) readShard(ctx context.Context, node string) error {
	cm := &corev1.ConfigMap{}
	err := s.reader.Get(ctx, client.ObjectKey{Namespace: s.key.Namespace, Name: ShardName(node)}, cm)
	if apierrors.IsNotFound(err) {
		delete(s.shards, node)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the allocation ledger's shard of node %s: %w", node, err)
	}
	sh := shard{}
	if err := json.Unmarshal([]byte(cm.Data[DataKey]), &sh); err != nil {
		return fmt.Errorf("decoding the allocation ledger's shard of node %s: %w", node, err)
	}
	s.shards[node] = &stored[shard]{cm, sh}
	return nil
}

// Write stores l, the ledger Read returned with cm and a pass's changes, as those changes
// over the head cm: a head written since makes it fail with a conflict, which forgets the
// remembered copy. When the head then holds FlushAt changes they are moved to the shards;
// that failing is logged, not returned: the decision is stored, and the next write
// moves them again.
func (s *Store) Write(ctx context.Context, cm *corev1.ConfigMap, l allocation.Ledger) error {
	if s.head == nil || cm.ResourceVersion != s.head.cm.ResourceVersion {
		s.head = nil
		return apierrors.NewConflict(corev1.Resource("configmaps"), Name,
			fmt.Errorf("the allocation ledger was written from a copy that is no longer this store's"))
	}
	h := s.head.doc.clone()
	seq := h.Seq + 1
	changed := false
	for name, b := range s.ledger.Bindings {
		if now, ok := l.Bindings[name]; !ok || now.Node != b.Node {
			h.Changes[b.Node+"/"+name] = change{Node: b.Node, Name: name, Seq: seq}
			changed = true
		}
	}
	for name, b := range l.Bindings {
		if was, ok := s.ledger.Bindings[name]; !ok || !sameBinding(was, b) {
			h.Changes[b.Node+"/"+name] = change{Node: b.Node, Name: name, Seq: seq, Binding: &b}
			changed = true
		}
	}
	if !maps.EqualFunc(h.Usage, l.Usage, allocation.Usage.Equal) {
		h.Usage = maps.Clone(l.Usage)
		changed = true
	}
	if !changed {
		return nil
	}
	h.Seq = seq
	next, err := s.writeHead(ctx, cm, h)
	if err != nil {
		return err
	}
	s.ledger = l.Clone()
	s.remember(next, s.known)
	if len(h.Changes) >= s.FlushAt {
		if err := s.flush(ctx); err != nil {
			// The shards in memory may no longer be what is stored: the next pass reads afresh.
			s.head = nil
			log.FromContext(ctx).Error(err, "Moving the allocation ledger's changes to its shards; the next write tries again")
		}
	}
	return nil
}

// writeHead stores h over cm, the version read.
func (s *Store) writeHead(ctx context.Context, cm *corev1.ConfigMap, h head) (*stored[head], error) {
	data, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[HeadKey], cm.Data[DataKey] = string(data), movedAway
	// Update sends the resourceVersion read: a head changed since makes it fail.
	if err := s.writer.Update(ctx, cm); err != nil {
		s.head = nil
		return nil, fmt.Errorf("writing the allocation ledger: %w", err)
	}
	return &stored[head]{cm, h}, nil
}

// flush copies the head's changes into their nodes' shards, then drops from the head those
// every shard now holds. A shard written by someone else since this store read it is left
// for the next flush; so are the head's changes to it.
func (s *Store) flush(ctx context.Context) error {
	h := s.head.doc.clone()
	uid := string(s.head.cm.UID)
	byNode := map[string][]change{}
	for _, c := range h.Changes {
		byNode[c.Node] = append(byNode[c.Node], c)
	}
	var failed error
	flushed := map[string]int64{}
	for _, node := range slices.Sorted(maps.Keys(byNode)) {
		if err := s.flushShard(ctx, node, uid, h.Seq, byNode[node]); err != nil {
			failed = err
			continue
		}
		flushed[node] = h.Seq
	}
	if len(flushed) == 0 {
		return failed
	}
	for key, c := range h.Changes {
		if seq, ok := flushed[c.Node]; ok && c.Seq <= seq {
			delete(h.Changes, key)
		}
	}
	maps.Copy(h.Flushed, flushed)
	next, err := s.writeHead(ctx, s.head.cm, h)
	if err != nil {
		return err // the shards hold the changes; the head keeps them until the next flush
	}
	s.remember(next, s.known)
	return failed
}

// flushShard brings node's shard up to seq with changes, the head's changes to it.
func (s *Store) flushShard(ctx context.Context, node, uid string, seq int64, changes []change) error {
	have := s.shards[node]
	if have == nil {
		if err := s.readShard(ctx, node); err != nil {
			return err
		}
		have = s.shards[node]
	}
	next := shard{Head: uid, Bindings: map[string]allocation.Binding{}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.key.Namespace, Name: ShardName(node),
		Labels: map[string]string{ShardLabel: "shard"}}}
	if have == nil || have.doc.Head != uid {
		// A shard started over (missing, or of a deleted head) is fenced by the head: if
		// this head was replaced since, the shard may be the new head's. A shard write after
		// this read conflicts on the shard's version (or exists already).
		cur := &corev1.ConfigMap{}
		if err := s.reader.Get(ctx, s.key, cur); err != nil {
			return fmt.Errorf("reading the allocation ledger before starting node %s's shard: %w", node, err)
		}
		if string(cur.UID) != uid {
			return apierrors.NewConflict(corev1.Resource("configmaps"), Name, errors.New("the allocation ledger's head was replaced"))
		}
	}
	if have != nil {
		cm = have.cm.DeepCopy()
		if have.doc.Head == uid {
			if have.doc.Seq >= seq {
				return nil // someone else moved them already
			}
			next.Seq, next.Bindings = have.doc.Seq, maps.Clone(have.doc.Bindings)
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Seq < changes[j].Seq })
	for _, c := range changes {
		if c.Seq <= next.Seq {
			continue
		}
		if c.Binding == nil {
			delete(next.Bindings, c.Name)
		} else {
			next.Bindings[c.Name] = *c.Binding
		}
	}
	next.Seq = seq
	data, err := json.Marshal(next)
	if err != nil {
		return err
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[DataKey] = string(data)
	if have == nil {
		err = s.writer.Create(ctx, cm)
	} else {
		err = s.writer.Update(ctx, cm)
	}
	if err != nil {
		delete(s.shards, node)
		return fmt.Errorf("writing the allocation ledger's shard of node %s: %w", node, err)
	}
	s.shards[node] = &stored[shard]{cm, next}
	return nil
}

// remember makes h, with the shards in memory, the remembered copy.
func (s *Store) remember(h *stored[head], known map[string]bool) {
	if len(known) > 64 {
		known = map[string]bool{} // the cache lags by a few versions at most
	}
	known[h.cm.ResourceVersion] = true
	s.head, s.known = h, known
	s.ledger = s.view()
}

// view is the ledger the remembered head and shards hold: the shards of this head, with
// the head's changes newer than each shard over them.
func (s *Store) view() allocation.Ledger {
	nodes := map[string]map[string]allocation.Binding{}
	held := map[string]int64{}
	for node, sh := range s.shards {
		if sh.doc.Head == string(s.head.cm.UID) {
			nodes[node], held[node] = maps.Clone(sh.doc.Bindings), sh.doc.Seq
		}
	}
	changes := slices.Collect(maps.Values(s.head.doc.Changes))
	sort.Slice(changes, func(i, j int) bool { return changes[i].Seq < changes[j].Seq })
	for _, c := range changes {
		if c.Seq <= held[c.Node] {
			continue
		}
		if nodes[c.Node] == nil {
			nodes[c.Node] = map[string]allocation.Binding{}
		}
		if c.Binding != nil {
			nodes[c.Node][c.Name] = *c.Binding
		} else {
			delete(nodes[c.Node], c.Name)
		}
	}
	l := allocation.Ledger{Bindings: map[string]allocation.Binding{}, Usage: maps.Clone(s.head.doc.Usage)}
	for _, node := range slices.Sorted(maps.Keys(nodes)) {
		maps.Copy(l.Bindings, nodes[node])
	}
	return l
}

// parseHead decodes a head's data; none is an empty ledger, and a ledger stored before it
// was split is read as changes not yet in any shard.
func parseHead(cm map[string]string) (head, error) {
	h := head{}
	data, ok := cm[HeadKey]
	if !ok && cm[DataKey] != movedAway {
		data = cm[DataKey]
	}
	if data != "" {
		if err := json.Unmarshal([]byte(data), &h); err != nil {
			return head{}, fmt.Errorf("decoding the allocation ledger: %w", err)
		}
	}
	h = h.clone()
	if len(h.Bindings) > 0 {
		h.Seq = max(h.Seq, 1)
		for name, b := range h.Bindings {
			if _, ok := h.Changes[b.Node+"/"+name]; !ok {
				h.Changes[b.Node+"/"+name] = change{Node: b.Node, Name: name, Seq: 1, Binding: &b}
			}
		}
		h.Bindings = nil
	}
	return h, nil
}

func (h head) clone() head {
	out := head{Seq: h.Seq, Changes: maps.Clone(h.Changes), Flushed: maps.Clone(h.Flushed), Bindings: h.Bindings, Usage: maps.Clone(h.Usage)}
	if out.Changes == nil {
		out.Changes = map[string]change{}
	}
	if out.Flushed == nil {
		out.Flushed = map[string]int64{}
	}
	return out
}

// sameBinding tells whether two bindings are stored alike.
func sameBinding(a, b allocation.Binding) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// ShardName is the ConfigMap holding node's shard: the node's name where it fits an
// object name, a digest of it otherwise.
func ShardName(node string) string {
	if name := shardPrefix + node; node != "" && len(validation.IsDNS1123Subdomain(name)) == 0 {
		return name
	}
	sum := sha256.Sum256([]byte(node))
	return digestPrefix + hex.EncodeToString(sum[:16])
}

const (
	shardPrefix  = Name + "-node-"
	digestPrefix = Name + "-digest-"
)

// Watched names the one object of its kind the controllers' cache must see: the ledger's
// head (manager.Options.Watched), so that no informer lists every ConfigMap of the cluster.
func Watched() map[client.Object]client.ObjectKey {
	return map[client.Object]client.ObjectKey{&corev1.ConfigMap{}: {Namespace: DefaultNamespace, Name: Name}}
}

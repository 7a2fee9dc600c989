// Package ledger owns the allocation ledger: the one ConfigMap that records every live
// binding of GPUs to allocations, written with optimistic concurrency, and the key beside
// it that signs the allocations gpuwarden makes itself.
package ledger

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gpuwarden/gpuwarden/internal/allocation"
)

const (
	// Name is the ConfigMap (in its namespace) that records every live binding.
	Name = "gpuwarden-ledger"
	// DefaultNamespace holds the ledger (and its signing key) unless a controller is told otherwise.
	DefaultNamespace = "kube-system"
	// DataKey is the ConfigMap's data key holding the ledger.
	DataKey = "ledger.json"
)

// Store reads and writes the ledger object, and keeps in memory the copy this node's
// passes last read or wrote: a pass starts from it while the cache's view of the object is
// one the node has already had (the object has not been written by anyone else since), and
// reads the stored object otherwise. A copy gone stale unseen only costs a write conflict;
// a pass that would refuse a request reads the stored object first (Reconcile). Used by the
// node's one allocation worker at a time.
type Store struct {
	// cache sees the ledger object through the manager's informer (only its version is
	// compared); reader reads it from the API server itself.
	cache, reader client.Reader
	writer        client.Writer
	key           client.ObjectKey

	cm     *corev1.ConfigMap
	ledger allocation.Ledger
	// known are the object's versions in this copy's line: read, replaced or written by
	// this node since the last read.
	known map[string]bool
}

func NewStore(c client.Client, reader client.Reader, namespace string) *Store {
	return &Store{cache: c, reader: reader, writer: c, key: client.ObjectKey{Namespace: namespace, Name: Name}}
}

// read returns the ledger object and its contents for a pass to change, and whether they
// are the remembered copy rather than the stored object (fresh asks for the stored one).
func (s *Store) Read(ctx context.Context, fresh bool) (*corev1.ConfigMap, allocation.Ledger, bool, error) {
	if !fresh && s.cm != nil {
		seen := &corev1.ConfigMap{}
		if err := s.cache.Get(ctx, s.key, seen); err == nil && s.known[seen.ResourceVersion] {
			return s.cm.DeepCopy(), allocation.Ledger{Bindings: maps.Clone(s.ledger.Bindings)}, true, nil
		}
	}
	s.cm = nil
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
	l, err := allocation.ParseLedger(cm.Data[DataKey])
	if err != nil {
		return nil, allocation.Ledger{}, false, err
	}
	s.Remember(cm, l, map[string]bool{})
	return cm.DeepCopy(), allocation.Ledger{Bindings: maps.Clone(l.Bindings)}, false, nil
}

// write stores l over cm, the version read; a conflict (someone else wrote it since)
// forgets the remembered copy.
func (s *Store) Write(ctx context.Context, cm *corev1.ConfigMap, l allocation.Ledger) error {
	data, err := l.Encode()
	if err != nil {
		return err
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[DataKey] = data
	// Update sends the resourceVersion read: a ledger changed since makes it fail.
	if err := s.writer.Update(ctx, cm); err != nil {
		s.cm = nil
		return fmt.Errorf("writing the allocation ledger: %w", err)
	}
	s.Remember(cm, l, s.known)
	return nil
}

func (s *Store) Remember(cm *corev1.ConfigMap, l allocation.Ledger, known map[string]bool) {
	if len(known) > 64 {
		known = map[string]bool{} // the cache lags by a few versions at most
	}
	known[cm.ResourceVersion] = true
	s.cm, s.ledger, s.known = cm.DeepCopy(), allocation.Ledger{Bindings: maps.Clone(l.Bindings)}, known
}

// Watched names the one object of its kind the controllers' cache must see: the ledger
// (manager.Options.Watched), so that no informer lists every ConfigMap of the cluster.
func Watched() map[client.Object]client.ObjectKey {
	return map[client.Object]client.ObjectKey{&corev1.ConfigMap{}: {Namespace: DefaultNamespace, Name: Name}}
}

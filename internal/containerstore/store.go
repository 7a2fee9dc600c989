// Package containerstore owns what the node knows of its Docker containers: the store the
// watcher keeps in step with the engine, and who owns each container.
package containerstore

import (
	"sync"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/docker"
)

// Store is the node's last known view of its Docker containers, kept by the
// ContainerWatcher and read by the controllers that act on containers. While it is not
// synced (Docker unreachable) nothing may conclude that a container is gone.
type Store struct {
	mu     sync.RWMutex
	byID   map[string]docker.Container
	gone   map[string]docker.Container
	notes  map[string]string
	synced bool
	at     time.Time
}

// New returns an empty, unsynced store.
func New() *Store {
	return &Store{byID: map[string]docker.Container{}, gone: map[string]docker.Container{}, notes: map[string]string{}}
}

// Get returns a container by full ID; synced is false while Docker is unreachable, and
// then a missing container may still exist.
func (s *Store) Get(id string) (c docker.Container, ok, synced bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok = s.byID[id]
	return c, ok, s.synced
}

// Gone returns the last known state of a container seen removed, until Forget.
func (s *Store) Gone(id string) (docker.Container, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.gone[id]
	return c, ok
}

// Forget drops what is remembered of a removed container.
func (s *Store) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.gone, id)
}

// Synced reports whether the store reflects the engine now.
func (s *Store) Synced() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.synced
}

// All returns every known container.
func (s *Store) All() []docker.Container {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]docker.Container, 0, len(s.byID))
	for _, c := range s.byID {
		out = append(out, c)
	}
	return out
}

// Put records a container's latest state and returns the one it replaces.
func (s *Store) Put(c docker.Container) (prev docker.Container, existed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, existed = s.byID[c.ID]
	s.byID[c.ID] = c
	delete(s.gone, c.ID)
	return prev, existed
}

// Remove records a container as removed and returns its last state.
func (s *Store) Remove(id string) (prev docker.Container, existed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, existed = s.byID[id]
	if existed {
		delete(s.byID, id)
		s.gone[id] = prev
	}
	return prev, existed
}

// Replace makes the store match a full listing and returns what changed since the last
// one: containers that appeared, that went, and the previous state of those that changed.
func (s *Store) Replace(list []docker.Container, at time.Time) (added, removed []docker.Container, changed map[string]docker.Container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed = map[string]docker.Container{}
	next := make(map[string]docker.Container, len(list))
	for _, c := range list {
		next[c.ID] = c
		prev, ok := s.byID[c.ID]
		switch {
		case !ok:
			added = append(added, c)
		case prev.State != c.State || !prev.StartedAt.Equal(c.StartedAt):
			changed[c.ID] = prev
		}
	}
	for id, c := range s.byID {
		if _, ok := next[id]; !ok {
			removed = append(removed, c)
			s.gone[id] = c
		}
	}
	s.byID, s.synced, s.at = next, true, at
	return added, removed, changed
}

// SyncedAt is when the last full listing was taken.
func (s *Store) SyncedAt() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.at
}

// SetSynced marks the store stale (false) when Docker becomes unreachable.
func (s *Store) SetSynced(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.synced = v
}

// Note remembers why gpuwarden is about to act on a container, for the record of the
// engine's event that follows.
func (s *Store) Note(id, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes[id] = reason
}

// TakeNote returns and forgets the reason noted for a container.
func (s *Store) TakeNote(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.notes[id]
	delete(s.notes, id)
	return r
}

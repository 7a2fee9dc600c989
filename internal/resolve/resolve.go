// Package resolve computes what applies to a user: the effective GPU quota and container
// policy. One mechanism serves both kinds: every object whose subjects or selector match
// is merged field by field in ascending precedence, an unset field inherits, and
// "unlimited" is an explicit value that also wins over lower precedence.
package resolve

import (
	"errors"
	"fmt"
	"os/user"
	"slices"
	"sort"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Groups resolves a user's host groups.
type Groups interface {
	GroupsOf(user string) ([]string, error)
}

// HostGroups reads the host's group database through NSS (files, LDAP, …).
type HostGroups struct{}

// GroupsOf returns the names of the user's groups; a user the host does not know has none.
func (HostGroups) GroupsOf(name string) ([]string, error) {
	u, err := user.Lookup(name)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up user %s: %w", name, err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("looking up the groups of %s: %w", name, err)
	}
	var out []string
	for _, id := range ids {
		if g, err := user.LookupGroupId(id); err == nil {
			out = append(out, g.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// StaticGroups maps users to groups, for tests and for hosts configured by hand.
type StaticGroups map[string][]string

// GroupsOf implements Groups.
func (s StaticGroups) GroupsOf(name string) ([]string, error) { return slices.Clone(s[name]), nil }

// byPrecedence sorts ascending by precedence, then by name so merges are deterministic.
func byPrecedence[T any](items []T, precedence func(T) int32, name func(T) string) {
	sort.SliceStable(items, func(i, j int) bool {
		pi, pj := precedence(items[i]), precedence(items[j])
		if pi != pj {
			return pi < pj
		}
		return name(items[i]) < name(items[j])
	})
}

// CachedGroups remembers each user's groups for TTL, so that a pass over hundreds of
// allocations does not ask NSS (and behind it LDAP) hundreds of times.
type CachedGroups struct {
	Groups Groups
	TTL    time.Duration
	Clock  clock.PassiveClock

	mu      sync.Mutex
	entries map[string]cachedGroups
}

type cachedGroups struct {
	groups []string
	at     time.Time
}

// GroupsOf implements Groups; errors are not cached.
func (c *CachedGroups) GroupsOf(user string) ([]string, error) {
	now := c.Clock.Now()
	c.mu.Lock()
	e, ok := c.entries[user]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.TTL {
		return slices.Clone(e.groups), nil
	}
	g, err := c.Groups.GroupsOf(user)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]cachedGroups{}
	}
	c.entries[user] = cachedGroups{groups: g, at: now}
	c.mu.Unlock()
	return slices.Clone(g), nil
}

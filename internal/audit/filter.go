package audit

import (
	"bytes"
	"context"
	"strings"
	"time"
)

// Filter selects events; every field that is set must match (AND).
type Filter struct {
	// User matches the user exactly.
	User string
	// Type matches whole dotted segments from the start: "gpu" matches gpu and gpu.*,
	// not gpus.*; "gpu.allocate" matches only itself and gpu.allocate.*.
	Type string
	// Container matches the container's name or ID (a prefix of the ID of 12 or more characters).
	Container string
	// Allocations, with Container, match the records of these allocations too: those bound
	// to the container, whose first records (gpu.allocate of a Gateway allocation) can come
	// before the container exists. ContainerAllocations finds them.
	Allocations map[string]bool
	// Since and Until bound the time, inclusive and exclusive.
	Since, Until time.Time
}

// Match reports whether e passes the filter.
func (f Filter) Match(e *Event) bool { return f.matcher().match(e) }

// TypeMatches reports whether eventType is prefix (whole dotted segments) or below it.
func TypeMatches(prefix, eventType string) bool {
	if prefix == "" || eventType == prefix {
		return true
	}
	return strings.HasPrefix(eventType, prefix) && eventType[len(prefix)] == '.'
}

// matcher is a Filter prepared for scanning many lines.
type matcher struct {
	f Filter
	// since and until in the envelope's timestamp format, for comparing raw lines.
	since, until string
	// userField is `"user":"U"` as the writer encodes it, or nil when U needs escaping.
	userField []byte
}

var (
	timestampPrefix = []byte(`{"timestamp":"`)
	typeKey         = []byte(`","event_type":"`)
)

func (f Filter) matcher() *matcher {
	m := &matcher{f: f}
	if !f.Since.IsZero() {
		m.since = f.Since.UTC().Format(TimeFormat)
	}
	if !f.Until.IsZero() {
		m.until = f.Until.UTC().Format(TimeFormat)
	}
	if f.User != "" && plainJSON(f.User) {
		m.userField = []byte(`"user":"` + f.User + `"`)
	}
	return m
}

// plainJSON reports whether s encodes in JSON as itself (no escapes).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// cannotMatch rejects, without decoding, a line in the compact v1 envelope that the
// filter cannot match. It never rejects a line it is unsure of.
func (m *matcher) cannotMatch(line []byte) bool {
	const tsLen = len(TimeFormat)
	if !bytes.HasPrefix(line, timestampPrefix) || line[len(line)-1] != '}' || len(line) < len(timestampPrefix)+tsLen+len(typeKey) {
		return false
	}
	rest := line[len(timestampPrefix):]
	if !bytes.HasPrefix(rest[tsLen:], typeKey) {
		return false // another timestamp layout: decode to be sure
	}
	ts := string(rest[:tsLen])
	if m.since != "" && ts < m.since || m.until != "" && ts >= m.until {
		return true
	}
	if m.f.Type != "" {
		typ := rest[tsLen+len(typeKey):]
		if end := bytes.IndexByte(typ, '"'); end >= 0 && bytes.IndexByte(typ[:end], '\\') < 0 &&
			!TypeMatches(m.f.Type, string(typ[:end])) {
			return true
		}
	}
	if m.userField != nil && !bytes.Contains(line, m.userField) {
		return true
	}
	return false
}

func (m *matcher) match(e *Event) bool {
	f := m.f
	switch {
	case f.User != "" && e.User != f.User:
		return false
	case f.Type != "" && !TypeMatches(f.Type, e.Type):
		return false
	case !f.Since.IsZero() && e.Time.Before(f.Since):
		return false
	case !f.Until.IsZero() && !e.Time.Before(f.Until):
		return false
	case f.Container != "" && !containerMatches(f.Container, e) && !f.Allocations[allocationOf(e)]:
		return false
	}
	return true
}

func containerMatches(c string, e *Event) bool {
	if e.Container() == c {
		return true
	}
	id, _ := e.Details["container_id"].(string)
	return id != "" && (id == c || len(c) >= 12 && strings.HasPrefix(id, c))
}

// allocationOf is the allocation an event names, or "".
func allocationOf(e *Event) string {
	a, _ := e.Details["allocation"].(string)
	return a
}

// ContainerAllocations returns the allocations that the records in files naming container
// (as Filter.Container matches it) tie to it: a gpu.* record of an allocation attached to the
// container, or a container record naming the allocation it was made for. A user other than
// "" reads that user's records only: another user's container of the same name ties none.
func ContainerAllocations(ctx context.Context, files []string, user, container string) (map[string]bool, error) {
	out := map[string]bool{}
	_, err := Read(ctx, files, Filter{User: user, Container: container}, func(e *Event) error {
		if a := allocationOf(e); a != "" {
			out[a] = true
		}
		return nil
	})
	return out, err
}

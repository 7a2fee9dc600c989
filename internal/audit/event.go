// Package audit owns gpuwarden's audit log: JSON Lines in DS01's schema v1 envelope, written
// by one group-committing writer per process with built-in rotation, and read back across
// the live, rotated and compressed files.
package audit

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// SchemaVersion is the envelope version written, DS01's schema v1.
const SchemaVersion = "1"

// TimeFormat is the envelope's timestamp: UTC, RFC 3339 with microseconds, ending in Z.
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// Event is one audit record.
type Event struct {
	// Time is when it happened; the writer stamps it when zero.
	Time time.Time
	// Type is dotted, e.g. gpu.allocate.
	Type string
	// Source is the component that decided, e.g. allocation-controller.
	Source string
	// User is the user concerned, when known.
	User string
	// Details are the event's fields.
	Details map[string]any
	// ID is unique; the writer assigns one when empty. Readers use it to drop duplicates.
	ID string
	// Node is the GPU node; the writer fills in its own when empty.
	Node string
}

// wire is the JSON form; field order is the envelope's.
type wire struct {
	Timestamp     string         `json:"timestamp"`
	EventType     string         `json:"event_type"`
	Source        string         `json:"source,omitempty"`
	SchemaVersion string         `json:"schema_version"`
	User          string         `json:"user,omitempty"`
	Details       map[string]any `json:"details,omitempty"`
	EventID       string         `json:"event_id"`
	Node          string         `json:"node,omitempty"`
}

// AppendJSON appends e as one JSON line (with the trailing newline) to buf.
func (e *Event) AppendJSON(buf []byte) ([]byte, error) {
	w := wire{
		Timestamp:     e.Time.UTC().Format(TimeFormat),
		EventType:     e.Type,
		Source:        e.Source,
		SchemaVersion: SchemaVersion,
		User:          e.User,
		EventID:       e.ID,
		Node:          e.Node,
	}
	if len(e.Details) > 0 {
		w.Details = e.Details
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&w); err != nil {
		return buf, fmt.Errorf("encoding %s event: %w", e.Type, err)
	}
	return append(buf, b.Bytes()...), nil // Encode ends the line with '\n'
}

// NewID returns a random, unique event ID (128 bits, hex).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// DecisionID is the event ID of one allocation decision (kind allocate or release, of the
// binding made at bound): the same each time the decision is recorded — again after a crash
// lost the first record's flush — so that readers keep it once.
func DecisionID(kind, allocation string, bound time.Time) string {
	h := sha256.Sum256([]byte(kind + "\x00" + allocation + "\x00" + strconv.FormatInt(bound.Unix(), 10)))
	return hex.EncodeToString(h[:16])
}

// decision says whether an event type is an allocation decision, recorded again after a
// crash under its DecisionID.
func decision(t string) bool { return t == TypeGPUAllocate || t == TypeGPURelease }

// Container returns the container named in the event's details ("container" or
// "container_name"), or "".
func (e *Event) Container() string {
	for _, k := range []string{"container", "container_name"} {
		if s, ok := e.Details[k].(string); ok {
			return s
		}
	}
	return ""
}

// Printable is s as it may be shown on a terminal: control characters (escape sequences,
// tabs that would break a table), bidirectional overrides and other invisible runes written
// as Go escapes, and so are bytes that are not UTF-8. An audit log holds what users chose
// (names, labels); printing it must not let them drive the reader's terminal.
func Printable(s string) string {
	if !utf8.ValidString(s) {
		q := strconv.QuoteToGraphic(s)
		return q[1 : len(q)-1]
	}
	for _, r := range s {
		if !unicode.IsGraphic(r) || r == '\t' || unicode.Is(unicode.Cf, r) {
			q := strconv.QuoteToGraphic(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

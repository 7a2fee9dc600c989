// Package detect holds the pure rule of unmanaged-use detection: a sighting counts once it
// is seen in two scans in a row (a one-off, such as a quick nvidia-smi, never does), and it
// ends the first scan it is not seen in.
package detect

// Tracker follows sightings by key across scans. The zero value is ready to use.
type Tracker[K comparable, V any] struct {
	pending   map[K]bool
	confirmed map[K]V
}

// Observe takes one scan's sightings and returns those confirmed by it (seen in the previous
// scan too, not confirmed before) and those that ended (confirmed, not seen now, with what
// was known of them).
func (t *Tracker[K, V]) Observe(seen map[K]V) (started, ended map[K]V) {
	if t.pending == nil {
		t.pending, t.confirmed = map[K]bool{}, map[K]V{}
	}
	started, ended = map[K]V{}, map[K]V{}
	for k, v := range seen {
		switch _, known := t.confirmed[k]; {
		case known:
		case t.pending[k]:
			delete(t.pending, k)
			t.confirmed[k] = v
			started[k] = v
		default:
			t.pending[k] = true
		}
	}
	for k := range t.pending {
		if _, ok := seen[k]; !ok {
			delete(t.pending, k) // a one-off: never reported
		}
	}
	for k, v := range t.confirmed {
		if _, ok := seen[k]; !ok {
			delete(t.confirmed, k)
			ended[k] = v
		}
	}
	return started, ended
}

// Confirmed returns what is confirmed now.
func (t *Tracker[K, V]) Confirmed() map[K]V { return t.confirmed }

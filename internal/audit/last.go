package audit

// Last keeps the last n events added (all when n is 0), in the order they came, and, when
// MaxBytes is set, no more than about that many bytes of them: the oldest of the last n go
// first (HeldBack counts them).
type Last struct {
	n int
	// MaxBytes bounds what the events kept take, about; 0 is no bound. The newest event is
	// always kept.
	MaxBytes int
	buf      []Event
	sizes    []int
	head     int
	bytes    int
	total    int
}

// NewLast keeps the last n events; 0 keeps all.
func NewLast(n int) *Last { return &Last{n: n} }

// Add keeps e, forgetting the oldest event kept when n are, or when MaxBytes would be passed.
func (l *Last) Add(e Event) {
	l.total++
	size := 0
	if l.MaxBytes > 0 {
		size = e.size()
	}
	l.buf, l.sizes, l.bytes = append(l.buf, e), append(l.sizes, size), l.bytes+size
	for l.n > 0 && len(l.buf)-l.head > l.n || l.MaxBytes > 0 && l.bytes > l.MaxBytes && len(l.buf)-l.head > 1 {
		l.bytes -= l.sizes[l.head]
		l.buf[l.head] = Event{} // for the collector
		l.head++
	}
	if l.head > 64 && l.head > len(l.buf)/2 {
		l.buf, l.sizes, l.head = append(l.buf[:0], l.buf[l.head:]...), append(l.sizes[:0], l.sizes[l.head:]...), 0
	}
}

// Events returns the events kept, oldest first.
func (l *Last) Events() []Event { return l.buf[l.head:] }

// HeldBack is how many of the last n events added (of all, when n is 0) were not kept, for
// MaxBytes.
func (l *Last) HeldBack() int {
	want := l.total
	if l.n > 0 && l.n < want {
		want = l.n
	}
	return want - (len(l.buf) - l.head)
}

// size is about what e takes: its strings, and a little for everything else.
func (e *Event) size() int {
	n := 128 + len(e.Type) + len(e.Source) + len(e.User) + len(e.ID) + len(e.Node)
	for k, v := range e.Details {
		n += len(k) + valueSize(v)
	}
	return n
}

func valueSize(v any) int {
	switch v := v.(type) {
	case string:
		return 16 + len(v)
	case []any:
		n := 24
		for _, x := range v {
			n += valueSize(x)
		}
		return n
	case []string:
		n := 24
		for _, x := range v {
			n += 16 + len(x)
		}
		return n
	case map[string]any:
		n := 48
		for k, x := range v {
			n += 16 + len(k) + valueSize(x)
		}
		return n
	default:
		return 16
	}
}

package reservation

import "time"

// Clip is the part of w within [from, to); false when they share no moment.
func Clip(w Window, from, to time.Time) (Window, bool) {
	if w.Start.Before(from) {
		w.Start = from
	}
	if w.End.After(to) {
		w.End = to
	}
	return w, w.Start.Before(w.End)
}

// Reserved are the windows of t that overlap [from, to), in order, as they keep their
// devices: the window that released (the time its devices went back unused; zero: never)
// falls in ends at released, and is left out when nothing of it is left in [from, to).
func Reserved(t Times, released, from, to time.Time) []Window {
	var out []Window
	for _, w := range t.Between(from, to) {
		if !released.IsZero() && w.Contains(released) {
			w.End = released
			if !w.Start.Before(w.End) || !w.Overlaps(Window{Start: from, End: to}) {
				continue
			}
		}
		out = append(out, w)
	}
	return out
}

// Cells are the cells that w overlaps among n of length step from from (cell i is
// [from+i·step, from+(i+1)·step)): those from lo up to, not including, hi; lo == hi when
// none.
func Cells(w Window, from time.Time, step time.Duration, n int) (lo, hi int) {
	if step <= 0 || n <= 0 {
		return 0, 0
	}
	w, ok := Clip(w, from, from.Add(time.Duration(n)*step))
	if !ok {
		return 0, 0
	}
	lo = int(w.Start.Sub(from) / step)
	hi = int((w.End.Sub(from) + step - 1) / step)
	return lo, min(hi, n)
}

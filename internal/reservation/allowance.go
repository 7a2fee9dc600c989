package reservation

import (
	"time"

	"github.com/gpuwarden/gpuwarden/internal/allocation"
)

// MaxOwnBookings bounds a user's own bookings that are pending or reserve devices: beyond
// it a new one is refused, whatever their allowance.
const MaxOwnBookings = 32

// Ahead is how far ahead a user may book: the allowance's window (a month for Month).
func Ahead(w allocation.Window) time.Duration {
	if w.Month || w.Span == 0 {
		return 31 * 24 * time.Hour
	}
	return w.Span
}

// Peak is the most gpu-equivalent-hours a user's bookings reserve from now on in any one
// window of w (a rolling span, or a calendar month) that a new booking of weight with
// windows t falls in: the new one and their accepted others together. It is the window
// that the allowance (GPUQuota limits.reservedGPUHours per window) is held to.
func Peak(w allocation.Window, now time.Time, t Times, weight float64, others []Booked) (float64, Window) {
	span := Ahead(w)
	from := later(now, t.First.Start)
	until := t.First.End
	if t.Weekly {
		until = from.Add(span + 2*Week) // beyond, weekly windows repeat what was seen
	}
	mine := t.Between(from, until)
	if len(mine) == 0 {
		return 0, Window{}
	}
	all := func(p Window) float64 {
		p.Start = later(p.Start, now) // what is past is used, not booked
		if !p.End.After(p.Start) {
			return 0
		}
		h := Hours(t, weight, p)
		for _, b := range others {
			h += Hours(b.Times, b.Weight, p)
		}
		return h
	}
	var candidates []Window
	if w.Month {
		for m := w.Start(mine[0].Start); m.Before(mine[len(mine)-1].End); m = m.AddDate(0, 1, 0) {
			candidates = append(candidates, Window{Start: m, End: m.AddDate(0, 1, 0)})
		}
	} else {
		// The sum over a sliding window is greatest where its start meets a booked window's
		// start, or its end a booked window's end.
		near := Window{Start: mine[0].Start.Add(-span), End: mine[len(mine)-1].End.Add(span)}
		edges := func(ws []Window) {
			for _, x := range ws {
				candidates = append(candidates, Window{Start: x.Start, End: x.Start.Add(span)}, Window{Start: x.End.Add(-span), End: x.End})
			}
		}
		edges(t.Between(near.Start, near.End))
		for _, b := range others {
			edges(b.Times.Between(near.Start, near.End))
		}
	}
	best, at := 0.0, Window{}
	for _, p := range candidates {
		touches := false
		for _, x := range mine {
			touches = touches || x.Overlaps(p)
		}
		if !touches {
			continue
		}
		if h := all(p); h > best {
			best, at = h, p
		}
	}
	return best, at
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

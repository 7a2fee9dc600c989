package reservation

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
)

// Choice is where a reservation is accepted, or why it is not.
type Choice struct {
	Node    string
	Slots   []allocation.Slot
	Reason  string
	Message string
}

// Accepted reports whether the reservation got devices.
func (c Choice) Accepted() bool { return c.Reason == "" }

// Choose finds devices for a reservation whose windows are t on its node (any node when
// node is ""; nodes are tried in name order): devices that no accepted reservation holds
// in an overlapping window. Of those, devices nobody holds now are preferred (held holds
// now's holdings by node), so that fewer holders are displaced at the start.
func Choose(req allocation.Request, node string, t Times, inventory map[string][]allocation.Slot, others []Booked, held map[string][]allocation.Holding) Choice {
	nodes := slices.Sorted(maps.Keys(inventory))
	if node != "" {
		if _, ok := inventory[node]; !ok {
			return Choice{Reason: gpuwardenv1alpha1.ReasonUnsatisfiable, Message: fmt.Sprintf("no GPU node %s is known", node)}
		}
		nodes = []string{node}
	}
	if len(nodes) == 0 {
		return Choice{Reason: gpuwardenv1alpha1.ReasonUnsatisfiable, Message: "no GPU node is known"}
	}
	var first Choice
	for _, n := range nodes {
		var taken []allocation.Holding
		var in []string
		for _, o := range others {
			if o.Node != n {
				continue
			}
			if w, ok := Overlap(t, o.Times); ok {
				taken = append(taken, o.Holding())
				in = append(in, fmt.Sprintf("%s (GPU %s, %s to %s)", o.Name, o.Summary, w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339)))
			}
		}
		inv := healthyOnly(inventory[n])
		if d := allocation.Decide(inv, append(slices.Clone(taken), held[n]...), allocation.Quota{}, req); d.Placed() {
			return Choice{Node: n, Slots: d.Slots}
		}
		d := allocation.Decide(inv, taken, allocation.Quota{}, req)
		if d.Placed() {
			return Choice{Node: n, Slots: d.Slots}
		}
		c := Choice{Reason: ReasonOf(d, len(req.Devices) > 0, len(taken) > 0), Message: d.Message}
		if len(in) > 0 {
			c.Message = fmt.Sprintf("%s on %s: reserved in an overlapping window by %s", d.Message, n, strings.Join(in, "; "))
		} else if node == "" {
			c.Message = fmt.Sprintf("%s on %s", d.Message, n)
		}
		if first.Reason == "" || (first.Reason == gpuwardenv1alpha1.ReasonUnsatisfiable && c.Reason != first.Reason) {
			first = c
		}
	}
	return first
}

// ReasonOf is the reservation's reason for a decision that did not place: named devices
// others reserve conflict; a shortage others' reservations cause leaves no room; one the
// node itself has is unsatisfiable.
func ReasonOf(d allocation.Decision, named, others bool) string {
	switch {
	case d.Final():
		return gpuwardenv1alpha1.ReasonUnsatisfiable
	case named && others:
		return gpuwardenv1alpha1.ReasonDevicesConflict
	case others:
		return gpuwardenv1alpha1.ReasonNoRoom
	}
	return gpuwardenv1alpha1.ReasonUnsatisfiable
}

// healthyOnly marks nothing foreign: a reservation is for later, when today's foreign
// processes may be gone; unhealthy devices stay out.
func healthyOnly(slots []allocation.Slot) []allocation.Slot {
	out := make([]allocation.Slot, len(slots))
	for i, s := range slots {
		s.Foreign = false
		out[i] = s
	}
	return out
}

// Weight is what slots reserve at once, in gpu-equivalents.
func Weight(slots []allocation.Slot) float64 {
	w := 0.0
	for _, s := range slots {
		w += s.Weight()
	}
	return w
}

// Period is the allowance's window that a booking starting at start counts in: the
// budget window from start (a rolling one), or the calendar month (UTC) it falls in.
func Period(w allocation.Window, start time.Time) Window {
	if w.Month {
		s := w.Start(start)
		return Window{Start: s, End: s.AddDate(0, 1, 0)}
	}
	if w.Span == 0 {
		w.Span = 30 * 24 * time.Hour
	}
	return Window{Start: start, End: start.Add(w.Span)}
}

// Hours is how many gpu-equivalent-hours a booking of weight with windows t reserves
// within p.
func Hours(t Times, weight float64, p Window) float64 {
	h := 0.0
	for _, w := range t.Between(p.Start, p.End) {
		s, e := w.Start, w.End
		if s.Before(p.Start) {
			s = p.Start
		}
		if e.After(p.End) {
			e = p.End
		}
		h += weight * e.Sub(s).Hours()
	}
	return h
}

// FormatHours prints gpu-hours for people, to two decimals.
func FormatHours(h float64) string {
	return strconv.FormatFloat(float64(int64(h*100+0.5))/100, 'f', -1, 64)
}

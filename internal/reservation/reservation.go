// Package reservation is what GPU reservations mean in time and on devices: their windows
// (one-off or weekly), which overlap, whom they are for, which devices a request must
// leave alone now, and what a user's bookings add up to against their allowance. It is
// pure: objects and times go in, answers come out.
package reservation

import (
	"fmt"
	"sort"
	"strings"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// Week is how far a weekly reservation's windows are apart.
const Week = 7 * 24 * time.Hour

// Window is one occurrence of a reservation: from Start to End.
type Window struct {
	Start, End time.Time
}

// Overlaps reports whether w and o share a moment.
func (w Window) Overlaps(o Window) bool { return w.Start.Before(o.End) && o.Start.Before(w.End) }

// Contains reports whether t is within w.
func (w Window) Contains(t time.Time) bool { return !t.Before(w.Start) && t.Before(w.End) }

// Hours is w's length in hours.
func (w Window) Hours() float64 { return w.End.Sub(w.Start).Hours() }

// Times are a reservation's windows: the first, and whether it comes back weekly.
type Times struct {
	First  Window
	Weekly bool
}

// TimesOf reads a reservation's windows from its spec.
func TimesOf(spec *gpuwardenv1alpha1.GPUReservationSpec) Times {
	return Times{First: Window{Start: spec.Start.UTC(), End: spec.End.UTC()}, Weekly: spec.Repeat == gpuwardenv1alpha1.RepeatWeekly}
}

// Between are the windows that overlap [from, to), in order.
func (t Times) Between(from, to time.Time) []Window {
	if !t.Weekly {
		if t.First.Overlaps(Window{from, to}) {
			return []Window{t.First}
		}
		return nil
	}
	k := 0
	if s := from.Unix() - t.First.End.Unix(); s > 0 {
		k = int(s / int64(Week/time.Second)) // the first window that may end after from (in seconds: a span of centuries overflows a Duration)
	}
	var out []Window
	for ; ; k++ {
		w := t.nth(k)
		if !w.Start.Before(to) {
			return out
		}
		if w.End.After(from) {
			out = append(out, w)
		}
	}
}

func (t Times) nth(k int) Window {
	return Window{Start: t.First.Start.AddDate(0, 0, 7*k), End: t.First.End.AddDate(0, 0, 7*k)}
}

// Current is the window now falls in, else the next one; false when none is left.
func (t Times) Current(now time.Time) (Window, bool) {
	if !t.Weekly {
		return t.First, now.Before(t.First.End)
	}
	if ws := t.Between(now, now.Add(Week+t.First.End.Sub(t.First.Start))); len(ws) > 0 {
		return ws[0], true
	}
	return Window{}, false // unreachable: a weekly reservation never runs out
}

// Next is the first start after now (zero when none is left).
func (t Times) Next(now time.Time) time.Time {
	if w, ok := t.Current(now); ok {
		if w.Start.After(now) {
			return w.Start
		}
		if t.Weekly {
			return w.Start.Add(Week)
		}
	}
	return time.Time{}
}

// Overlap is the first window of a that overlaps one of b, if any.
func Overlap(a, b Times) (Window, bool) {
	from := a.First.Start
	if b.First.Start.After(from) {
		from = b.First.Start
	}
	from = from.Add(-Week) // a weekly window that began before both first starts
	to := from.Add(3 * Week)
	for _, t := range []Times{a, b} {
		if !t.Weekly && t.First.End.Before(to) {
			to = t.First.End
		}
	}
	bw := b.Between(from, to)
	for _, w := range a.Between(from, to) {
		for _, o := range bw {
			if w.Overlaps(o) {
				return w, true
			}
		}
	}
	return Window{}, false
}

// Includes reports whether subjects name the user (by name, by a group of theirs, or
// everyone).
func Includes(subjects []gpuwardenv1alpha1.Subject, user string, groups []string) bool {
	return resolve.SubjectsInclude(subjects, user, groups)
}

// Who says whom subjects name, for people: "alice, group nlp-lab", "no one (drained)".
func Who(subjects []gpuwardenv1alpha1.Subject) string {
	if len(subjects) == 0 {
		return "no one (drained)"
	}
	var out []string
	for _, s := range subjects {
		switch s.Kind {
		case gpuwardenv1alpha1.SubjectEveryone:
			out = append(out, "everyone")
		case gpuwardenv1alpha1.SubjectGroup:
			out = append(out, "group "+s.Name)
		default:
			out = append(out, s.Name)
		}
	}
	return strings.Join(out, ", ")
}

// Booked is an accepted reservation as the allocator honours it.
type Booked struct {
	Name     string
	Node     string
	Slots    []string // UUIDs
	Times    Times
	Subjects []gpuwardenv1alpha1.Subject
	// Charge says its users' use counts against their quota.
	Charge bool
	// Stop says holders crossing the start are stopped at it (else the users wait).
	Stop bool
	// ReleasedUnused is when the current window's devices went back to everyone (zero:
	// they did not).
	ReleasedUnused time.Time
	// Summary lists the devices for people.
	Summary string
	// Weight is what it reserves at once, in gpu-equivalents.
	Weight float64
	// ReleaseAfter gives the devices back for the rest of a window its users left them
	// unused this long after its start (0: never).
	ReleaseAfter time.Duration
	// Booker is the user whose own booking it is, counted against their allowance ("" for
	// an admin's).
	Booker string
}

// BookerOf is the user whose own booking r is, as the API server's admission recorded its
// creator; "" for an admin's booking. A reservation without the record counts as a booking
// of the one user it names (its subjects' first), never as an admin's.
func BookerOf(r *gpuwardenv1alpha1.GPUReservation) string {
	if r.Annotations[gpuwardenv1alpha1.AnnotationBookedByAdmin] == "true" {
		return ""
	}
	if by := r.Annotations[gpuwardenv1alpha1.AnnotationBookedBy]; by != "" {
		return by
	}
	if len(r.Spec.Subjects) > 0 && r.Spec.Subjects[0].Name != "" {
		return r.Spec.Subjects[0].Name
	}
	return gpuwardenv1alpha1.UnknownUser
}

// Of turns accepted (or active) reservations into what the allocator honours; the others
// (pending, rejected, ended, or with no devices) reserve nothing.
func Of(rsvs []gpuwardenv1alpha1.GPUReservation) []Booked {
	var out []Booked
	for i := range rsvs {
		r := &rsvs[i]
		if (r.Status.Phase != gpuwardenv1alpha1.ReservationAccepted && r.Status.Phase != gpuwardenv1alpha1.ReservationActive) ||
			len(r.Status.Devices) == 0 || r.DeletionTimestamp != nil {
			continue
		}
		b := Booked{Name: r.Name, Node: r.Status.NodeName, Times: TimesOf(&r.Spec), Subjects: r.Spec.Subjects,
			Charge: r.Spec.ChargeQuota, Stop: r.Spec.Displace == gpuwardenv1alpha1.DisplaceStop, Summary: r.Status.DevicesSummary,
			Booker: BookerOf(r)}
		b.Charge = b.Charge || b.Booker != "" // a user's own booking charges their quota, whatever it says
		if d := r.Spec.ReleaseUnusedAfter; d != nil {
			b.ReleaseAfter, _ = time.ParseDuration(string(*d))
		}
		for _, d := range r.Status.Devices {
			b.Slots = append(b.Slots, d.UUID)
			b.Weight += d.Weight.AsApproximateFloat64()
		}
		if r.Status.ReleasedUnused != nil {
			b.ReleasedUnused = r.Status.ReleasedUnused.Time
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Active is the window b is in at now, when its devices are its users' alone (not given
// back unused).
func (b Booked) Active(now time.Time) (Window, bool) {
	w, ok := b.Times.Current(now)
	if !ok || !w.Contains(now) {
		return Window{}, false
	}
	if !b.ReleasedUnused.IsZero() && w.Contains(b.ReleasedUnused) {
		return w, false
	}
	return w, true
}

// For reports whether user (in groups) is one of b's users.
func (b Booked) For(user string, groups []string) bool { return Includes(b.Subjects, user, groups) }

// Holding is b's devices as a holding that belongs to no user.
func (b Booked) Holding() allocation.Holding {
	return allocation.Holding{Name: "reservation/" + b.Name, Slots: b.Slots}
}

// UserBookingShield is how long before its start a user's own booking keeps work without
// a runtime limit off its devices (an admin's does from its acceptance): a user with a small
// allowance cannot keep such work off many devices for weeks.
const UserBookingShield = 24 * time.Hour

// Keep is what a request of user that may hold its devices from now for d (0: with no
// bound) must leave alone: the devices of every reservation not for them that is active
// now or starts before the hold would end, with the first such reservation's words for
// why. Before a start, work whose time ends by it may use the devices (backfill).
func Keep(booked []Booked, node, user string, groups []string, now time.Time, d time.Duration) (keep []allocation.Holding, why string) {
	for _, b := range booked {
		if b.Node != node || b.For(user, groups) {
			continue
		}
		w, active := b.Active(now)
		if !active {
			next := b.Times.Next(now)
			if next.IsZero() || (d > 0 && !now.Add(d).After(next)) {
				continue
			}
			if d == 0 && b.Booker != "" && next.Sub(now) > UserBookingShield {
				continue // a user's own booking does not keep work without a limit off for long
			}
			w, _ = b.Times.Current(next)
		}
		keep = append(keep, b.Holding())
		if why == "" {
			why = b.Phrase(w, active)
		}
	}
	return keep, why
}

// Phrase says what b reserves in window w, for a request that must leave it alone.
func (b Booked) Phrase(w Window, active bool) string {
	when := fmt.Sprintf("from %s to %s", w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339))
	if active {
		when = "until " + w.End.Format(time.RFC3339)
	}
	return fmt.Sprintf("GPU %s reserved by GPUReservation %s for %s %s", b.Summary, b.Name, Who(b.Subjects), when)
}

// Mine are the reservations active now for user, in name order: their requests go to
// these devices first.
func Mine(booked []Booked, node, user string, groups []string, now time.Time) []Booked {
	var out []Booked
	for _, b := range booked {
		if _, active := b.Active(now); active && b.Node == node && len(b.Subjects) > 0 && b.For(user, groups) {
			out = append(out, b)
		}
	}
	return out
}

// NextChange is the first start or end of a window of any of booked after now (zero when
// none is left): the allocator decides again then.
func NextChange(booked []Booked, now time.Time) time.Time {
	var next time.Time
	for _, b := range booked {
		if w, ok := b.Times.Current(now); ok {
			for _, t := range []time.Time{w.Start, w.End} {
				if t.After(now) && (next.IsZero() || t.Before(next)) {
					next = t
				}
			}
		}
	}
	return next
}

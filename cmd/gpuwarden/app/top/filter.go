package top

import (
	"cmp"
	"slices"
	"strings"

	"github.com/gpuwarden/gpuwarden/internal/overview"
	"github.com/gpuwarden/gpuwarden/internal/reservation"
)

// The orders the GPUs can be sorted in; the first is the default.
var sorts = []string{"node", "user", "util", "memory"}

// filter is what of a snapshot is shown: one user's part (user empty: everyone's; the
// reservations that name them or everyone, as group members are not known here), the GPUs
// in the order sort names.
type filter struct {
	user string
	sort string
}

// apply is the part of s the filter shows, in its order; s is left as it is.
func (f filter) apply(s overview.Snapshot) overview.Snapshot {
	out := s
	out.Devices = slices.Clone(s.Devices)
	out.Queue, out.Reservations, out.Users = slices.Clone(s.Queue), slices.Clone(s.Reservations), slices.Clone(s.Users)
	if u := f.user; u != "" {
		out.Devices = slices.DeleteFunc(out.Devices, func(d overview.Device) bool { return d.Holder == nil || d.Holder.User != u })
		out.Queue = slices.DeleteFunc(out.Queue, func(w overview.Waiting) bool { return w.User != u })
		out.Reservations = slices.DeleteFunc(out.Reservations, func(b overview.Booking) bool { return !reservation.Includes(b.Subjects, u, nil) })
		out.Users = slices.DeleteFunc(out.Users, func(x overview.User) bool { return x.Name != u })
	}
	switch f.sort {
	case "user":
		slices.SortStableFunc(out.Devices, func(a, b overview.Device) int {
			return cmp.Or(compareKnown(holderName(a), holderName(b)), strings.Compare(holderName(a), holderName(b)))
		})
	case "util":
		slices.SortStableFunc(out.Devices, func(a, b overview.Device) int { return descending(a.UtilizationPercent, b.UtilizationPercent) })
	case "memory":
		slices.SortStableFunc(out.Devices, func(a, b overview.Device) int { return descending(a.MemoryUsedBytes, b.MemoryUsedBytes) })
	}
	return out
}

func holderName(d overview.Device) string {
	if d.Holder == nil {
		return ""
	}
	return d.Holder.User
}

// compareKnown puts the known (non-empty) before the unknown.
func compareKnown(a, b string) int {
	switch {
	case a == "" && b != "":
		return 1
	case a != "" && b == "":
		return -1
	}
	return 0
}

// descending orders the highest first, the unknown last.
func descending[T int64 | float64](a, b *T) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return cmp.Compare(*b, *a)
}

// next is the value after cur in list, the first after the last (or when cur is not in it).
func next(list []string, cur string) string {
	i := slices.Index(list, cur)
	return list[(i+1)%len(list)]
}

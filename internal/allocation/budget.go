package allocation

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// BudgetDays is how many UTC days of each user's use the ledger keeps, day by day: the
// longest budget window (90d) and the day it began in.
const BudgetDays = 91

// DefaultBudgetWindow is a budget's window where none is set.
const DefaultBudgetWindow = "30d"

// Window is a budget's window: a rolling span, or the calendar month (UTC).
type Window struct {
	Span  time.Duration
	Month bool
}

// ParseWindow reads a budget window: "Month", "30d" (days, at most 90) or "168h" (hours);
// "" is DefaultBudgetWindow.
func ParseWindow(s string) (Window, error) {
	if s == "" {
		s = DefaultBudgetWindow
	}
	if s == gpuwardenv1alpha1.BudgetWindowMonth {
		return Window{Month: true}, nil
	}
	unit := time.Hour
	n := strings.TrimSuffix(s, "h")
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, unit = d, 24*time.Hour
	}
	v, err := strconv.Atoi(n)
	if err != nil || v < 1 || n == s || time.Duration(v)*unit > (BudgetDays-1)*24*time.Hour {
		return Window{}, fmt.Errorf("budget window %q is not Month, a number of days (30d, at most 90d) or hours (168h)", s)
	}
	return Window{Span: time.Duration(v) * unit}, nil
}

// String is the window as a quota writes it.
func (w Window) String() string {
	switch {
	case w.Month:
		return gpuwardenv1alpha1.BudgetWindowMonth
	case w.Span%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", int(w.Span/(24*time.Hour)))
	default:
		return fmt.Sprintf("%dh", int(w.Span/time.Hour))
	}
}

// Phrase is the window for people: "the last 30d", "this month (UTC)".
func (w Window) Phrase() string {
	if w.Month {
		return "this month (UTC)"
	}
	return "the last " + w.String()
}

// Start is when the window that ends at now began.
func (w Window) Start(now time.Time) time.Time {
	if w.Month {
		now = now.UTC()
		return time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return now.Add(-w.Span)
}

// day is the UTC day t falls in, as a day number.
func day(t time.Time) int64 { return int64(math.Floor(float64(t.Unix()) / 86400)) }

// dayStart is when day d begins.
func dayStart(d int64) time.Time { return time.Unix(d*86400, 0).UTC() }

// spend adds weight × [from, to) to u's days, each day its part, keeping BudgetDays up to
// to's day.
func (u *Usage) spend(weight float64, from, to time.Time) {
	if !to.After(from) || weight <= 0 {
		return
	}
	last := day(to)
	first := last - BudgetDays + 1
	u.shift(first)
	for d := max(day(from), first); d <= last; d++ {
		s, e := dayStart(d), dayStart(d+1)
		if to.Before(e) {
			e = to
		}
		h := weight * e.Sub(later(s, from)).Hours()
		if h > 0 {
			u.Days[d-u.Day0] = round4(u.Days[d-u.Day0] + h)
		}
	}
}

// shift makes u's days begin at first (dropping older ones), long enough for BudgetDays;
// the days are copied first (a cloned ledger shares them).
func (u *Usage) shift(first int64) {
	u.Days = append([]float64(nil), u.Days...)
	if len(u.Days) == 0 {
		u.Day0, u.Days = first, make([]float64, BudgetDays)
		return
	}
	if first > u.Day0 {
		drop := int(min(first-u.Day0, int64(len(u.Days))))
		u.Days = append(u.Days[drop:], make([]float64, drop)...)
		u.Day0 = first
	}
	for len(u.Days) < BudgetDays {
		u.Days = append(u.Days, 0)
	}
}

// Later is the later of a and b.
func Later(a, b time.Time) time.Time { return later(a, b) }

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// spentSince is what u's ended holds used from since: whole days, the first in part (the
// day's use is taken as spread evenly over it).
func (u Usage) spentSince(since time.Time) float64 {
	total := 0.0
	first := day(since)
	for i, h := range u.Days {
		d := u.Day0 + int64(i)
		switch {
		case d > first:
			total += h
		case d == first:
			total += h * dayStart(d+1).Sub(since).Hours() / 24
		}
	}
	return total
}

// Spent is what the users used in w up to now, in gpu-equivalent-hours: the holds they
// ended (the ledger's days) and those they still hold, as gpuwarden report counts them.
func (l Ledger) Spent(users []string, w Window, now time.Time) float64 {
	since := w.Start(now)
	total := 0.0
	member := map[string]bool{}
	for _, u := range users {
		member[u] = true
		total += l.Usage[u].spentSince(since)
	}
	for _, b := range l.Bindings {
		if !member[b.User] || b.Uncharged {
			continue
		}
		from := later(b.BoundAt, since)
		for _, s := range b.Slots {
			if now.After(from) {
				total += s.Weight * now.Sub(from).Hours()
			}
		}
	}
	return total
}

// BudgetFrees is when the users' use in w falls to below limit − need if they hold nothing
// more from now: the start of the next month for Month, else the day the oldest use leaves
// the rolling window. Zero when it never does in the days kept (it is below already, or what
// they hold now alone is over).
func (l Ledger) BudgetFrees(users []string, w Window, now time.Time, limit, need float64) time.Time {
	if w.Month {
		n := now.UTC()
		return time.Date(n.Year(), n.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	}
	// What they hold now counts until it ends (now) and leaves the window w.Span later;
	// day by day, find when what is left in the window is below.
	ended := Ledger{Usage: map[string]Usage{}}
	for _, u := range users {
		ended.Usage[u] = l.Usage[u]
	}
	for _, b := range l.Bindings {
		if !contains(users, b.User) || b.Uncharged {
			continue
		}
		c := ended.Usage[b.User]
		for _, s := range b.Slots {
			c.spend(s.Weight, later(b.BoundAt, w.Start(now)), now)
		}
		ended.Usage[b.User] = c
	}
	// Each hour from now until the whole window has passed.
	for h := time.Duration(0); h <= w.Span; h += time.Hour {
		t := now.Add(h).Truncate(time.Hour)
		if !t.After(now) {
			continue
		}
		if ended.Spent(users, w, t) < limit-need-Epsilon {
			return t
		}
	}
	return now.Add(w.Span)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// FormatHours is gpu-hours for people and status fields, to two decimals ("12.5").
func FormatHours(v float64) string { return hours(v) }

// SpentLately reports whether u used anything in the days kept as of now.
func (u Usage) SpentLately(now time.Time) bool { return u.spentLately(now) }

// spentLately reports whether u used anything in the days kept as of now.
func (u Usage) spentLately(now time.Time) bool {
	return u.spentSince(dayStart(day(now)-BudgetDays+1)) > 0
}

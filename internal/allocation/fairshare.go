package allocation

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// DefaultHalfLife is how fast past GPU use is forgotten by the queue's fair share: use a
// half-life ago counts half (Slurm's PriorityDecayHalfLife default).
const DefaultHalfLife = 7 * 24 * time.Hour

// Usage is one user's recent GPU use as the ledger keeps it: the gpu-equivalent-hours of
// the holds they ended, decayed with a half-life, as of At; and their typical hold.
type Usage struct {
	// GPUHours are decayed gpu-equivalent-hours as of At.
	GPUHours float64   `json:"gpuHours"`
	At       time.Time `json:"at"`
	// Typical is an average of the user's recent holds (the last ones weigh most), in
	// seconds; Holds is how many holds it was taken from.
	Typical float64 `json:"typicalSeconds,omitempty"`
	Holds   int     `json:"holds,omitempty"`
	// Days are the gpu-equivalent-hours of the holds they ended, by UTC day from Day0 (a
	// day number: Unix days), BudgetDays of them: what GPU-hour budgets count.
	Day0 int64     `json:"day0,omitempty"`
	Days []float64 `json:"days,omitempty"`
}

// Equal reports whether u and v are the same record.
func (u Usage) Equal(v Usage) bool {
	return u.GPUHours == v.GPUHours && u.At.Equal(v.At) && u.Typical == v.Typical && u.Holds == v.Holds && u.Day0 == v.Day0 && slices.Equal(u.Days, v.Days)
}

// decay is what v counts after d at halfLife.
func decay(v float64, d, halfLife time.Duration) float64 {
	if d <= 0 || halfLife <= 0 {
		return v
	}
	return v * math.Exp2(-float64(d)/float64(halfLife))
}

// heldHours is the decayed gpu-equivalent-hours, as of to, of weight held from from to to.
func heldHours(weight float64, from, to time.Time, halfLife time.Duration) float64 {
	d := to.Sub(from)
	if d <= 0 {
		return 0
	}
	if halfLife <= 0 {
		return weight * d.Hours()
	}
	// ∫ weight · 2^(−(to−s)/h) ds over [from, to]
	return weight * halfLife.Hours() / math.Ln2 * (1 - math.Exp2(-float64(d)/float64(halfLife)))
}

// GPUHoursAt is u's decayed gpu-equivalent-hours at t.
func (u Usage) GPUHoursAt(t time.Time, halfLife time.Duration) float64 {
	return decay(u.GPUHours, t.Sub(u.At), halfLife)
}

// TypicalHold is the user's typical hold; false when none ended yet.
func (u Usage) TypicalHold() (time.Duration, bool) {
	return time.Duration(u.Typical * float64(time.Second)), u.Holds > 0
}

// typicalWeight is how much the latest hold moves the typical one.
const typicalWeight = 0.3

// forgetBelow: a user whose decayed use falls below this is dropped from the ledger.
const forgetBelow = 1e-3

// Charge adds b's hold, ended at end, to its user's usage (l.Usage is made when nil) and
// drops users whose use has decayed to nothing.
func (l *Ledger) Charge(b Binding, end time.Time, halfLife time.Duration) {
	if l.Usage == nil {
		l.Usage = map[string]Usage{}
	}
	weight := 0.0
	for _, s := range b.Slots {
		weight += s.Weight
	}
	u := l.Usage[b.User]
	held := end.Sub(b.BoundAt)
	u.GPUHours = u.GPUHoursAt(end, halfLife) + heldHours(weight, b.BoundAt, end, halfLife)
	if !b.Uncharged {
		u.spend(weight, b.BoundAt, end)
	}
	if u.At.IsZero() || end.After(u.At) {
		u.At = end.Round(0).UTC()
	}
	if held > 0 {
		if u.Holds == 0 {
			u.Typical = held.Seconds()
		} else {
			u.Typical = (1-typicalWeight)*u.Typical + typicalWeight*held.Seconds()
		}
		u.Holds++
	}
	l.Usage[b.User] = u
	for user, v := range l.Usage {
		if user != b.User && v.GPUHoursAt(end, halfLife) < forgetBelow && !v.spentLately(end) {
			delete(l.Usage, user)
		}
	}
}

// RecentUse is user's decayed gpu-equivalent-hours at now: the holds they ended and those
// they still hold.
func (l Ledger) RecentUse(user string, now time.Time, halfLife time.Duration) float64 {
	used := l.Usage[user].GPUHoursAt(now, halfLife)
	for _, b := range l.Bindings {
		if b.User != user {
			continue
		}
		for _, s := range b.Slots {
			used += heldHours(s.Weight, b.BoundAt, now, halfLife)
		}
	}
	return used
}

// FairShare ranks a waiting request among those of its priority: its user's recent use
// over their quota, less AgeWeight for each hour it has waited. The lower goes first.
type FairShare struct {
	// Use is the user's decayed gpu-equivalent-hours; Quota what they are divided by (the
	// user's gpuEquivalents limit, or the node's GPUs where none bounds them), set by QuotaFrom.
	Use, Quota float64
	QuotaFrom  string
	Waited     time.Duration
	AgeWeight  float64
	HalfLife   time.Duration
}

// Value is the request's rank, from its use to a tenth of a gpu-hour and its wait to the
// minute (as String shows them, so that what people read orders the queue).
func (f FairShare) Value() float64 {
	q := f.Quota
	if q <= 0 {
		q = 1
	}
	return math.Round(f.Use*10)/10/q - f.AgeWeight*f.Waited.Round(time.Minute).Hours()
}

// String is the rank and how it was counted, for people: "1.25: recent use 10.0 gpu-h
// (half-life 168h0m0s) / quota 8 (GPUQuota researchers)".
func (f FairShare) String() string {
	s := fmt.Sprintf("recent use %.1f gpu-h (half-life %s) / quota %s (%s)", math.Round(f.Use*10)/10, f.HalfLife, num(f.Quota), f.QuotaFrom)
	if f.AgeWeight > 0 {
		s += fmt.Sprintf(", less %s per hour waited × %s", num(f.AgeWeight), f.Waited.Round(time.Minute))
	}
	return fmt.Sprintf("%.2f: %s", f.Value(), s)
}

// ShareStep is the step of the queue's order a fair-share rank falls in (SortQueue):
// ranks in one step are equal.
func ShareStep(rank float64) int64 { return int64(math.Floor(rank / ShareResolution)) }

package statuspage

import (
	"cmp"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/overview"
	"github.com/gpuwarden/gpuwarden/internal/report"
)

// View is the page as both the template (JavaScript off) and the script (live) render it:
// every value already written for people, so that the two draw the same thing. Its JSON
// is what /status.json and /events send.
type View struct {
	Title   string `json:"title"`
	Node    string `json:"node"`
	Updated string `json:"updated"`
	// UpdatedISO is Updated as RFC 3339, for <time datetime>.
	UpdatedISO string `json:"updatedISO"`
	// Filter is the ?user= the page is narrowed to; "" for everyone.
	Filter string `json:"filter"`
	// Notices are what keeps the page from being whole: no readings, no data yet.
	Notices  []string     `json:"notices"`
	Summary  string       `json:"summary"`
	Devices  []DeviceView `json:"devices"`
	Queue    []QueueRow   `json:"queue"`
	Unplaced string       `json:"unplaced"`
	Days     []Day        `json:"days"`
	Users    []UserRow    `json:"users"`
	Usage    UsageView    `json:"usage"`
}

// DeviceView is one tile: a whole GPU, a GPU in MIG mode, or one of its instances.
type DeviceView struct {
	Name  string `json:"name"`
	Model string `json:"model"`
	// Kind is "gpu", "mig-parent" or "mig"; State "free", "held", "borrowed", "reserved",
	// "mig" or "unhealthy", and StateLabel it in words.
	Kind       string      `json:"kind"`
	State      string      `json:"state"`
	StateLabel string      `json:"stateLabel"`
	Holder     *HolderView `json:"holder"`
	// Facts are the times that matter: idle since, warned at, stopped at, runtime end.
	Facts     []Fact `json:"facts"`
	Util      Meter  `json:"util"`
	Memory    Meter  `json:"memory"`
	Sensors   string `json:"sensors"`
	UtilSpark Spark  `json:"utilSpark"`
	MemSpark  Spark  `json:"memSpark"`
}

// HolderView is who holds a device.
type HolderView struct {
	User       string   `json:"user"`
	Container  string   `json:"container"`
	Allocation string   `json:"allocation"`
	Type       string   `json:"type"`
	Since      string   `json:"since"`
	Marks      []string `json:"marks"`
}

// Fact is one labelled value; Warn marks one that is near or due.
type Fact struct {
	Label string `json:"label"`
	Value string `json:"value"`
	Warn  bool   `json:"warn"`
}

// Meter is a value against its whole, as a bar: Known false when there is no reading.
type Meter struct {
	Known   bool    `json:"known"`
	Percent float64 `json:"percent"`
	Text    string  `json:"text"`
	// Label is the bar's accessible name.
	Label string `json:"label"`
	High  bool   `json:"high"`
}

// QueueRow is one waiting request.
type QueueRow struct {
	Place          string `json:"place"`
	Name           string `json:"name"`
	User           string `json:"user"`
	Request        string `json:"request"`
	Waiting        string `json:"waiting"`
	EstimatedStart string `json:"estimatedStart"`
	LatestStart    string `json:"latestStart"`
	Why            string `json:"why"`
}

// Day is one column of the week's calendar.
type Day struct {
	Label    string        `json:"label"`
	ISO      string        `json:"iso"`
	Today    bool          `json:"today"`
	Bookings []BookingView `json:"bookings"`
}

// BookingView is one reservation window on one day.
type BookingView struct {
	Name    string `json:"name"`
	Time    string `json:"time"`
	For     string `json:"for"`
	What    string `json:"what"`
	Phase   string `json:"phase"`
	Active  bool   `json:"active"`
	Weekly  bool   `json:"weekly"`
	Summary string `json:"summary"`
}

// UserRow is one user's holdings against their quota and budget.
type UserRow struct {
	Name       string `json:"name"`
	Held       string `json:"held"`
	Quota      Meter  `json:"quota"`
	Containers string `json:"containers"`
	Borrowed   string `json:"borrowed"`
	Waiting    string `json:"waiting"`
	Budget     Meter  `json:"budget"`
}

// UsageView is the last 30 days from the audit log.
type UsageView struct {
	Period  string      `json:"period"`
	Note    string      `json:"note"`
	Rows    []UsageRow  `json:"rows"`
	Advice  []AdviceRow `json:"advice"`
	Updated string      `json:"updated"`
}

// UsageRow is one user's 30 days.
type UsageRow struct {
	User      string `json:"user"`
	Allocated string `json:"allocated"`
	Used      string `json:"used"`
	UsedShare string `json:"usedShare"`
	Idle      string `json:"idle"`
	Stops     string `json:"stops"`
	Rejected  string `json:"rejected"`
	Binds     string `json:"binds"`
	MeanWait  string `json:"meanWait"`
	// Bar is Allocated against the busiest user's.
	Bar Meter `json:"bar"`
}

// AdviceRow is one line of right-size advice.
type AdviceRow struct {
	User          string `json:"user"`
	ContainerType string `json:"containerType"`
	Suggestion    string `json:"suggestion"`
	Runs          string `json:"runs"`
	Freed         string `json:"freed"`
	Text          string `json:"text"`
}

// Usage is the audit log's report as the page last computed it.
type Usage struct {
	Report report.Report
	// At is when it was computed; Err why it could not be.
	At  time.Time
	Err error
}

// maxFilter bounds ?user=.
const maxFilter = 64

// render makes the View of a snapshot at now, with the devices' histories and the usage,
// narrowed to the users whose names contain filter.
func render(s overview.Snapshot, hist map[string]*series, u Usage, filter string, loc *time.Location) View {
	now := s.Time.In(loc)
	t := timeFmt{now: now, loc: loc}
	v := View{Title: "GPUs", Node: s.Node, Updated: now.Format("15:04:05 MST"), UpdatedISO: now.Format(time.RFC3339), Filter: filter,
		Notices: []string{}, Devices: []DeviceView{}, Queue: []QueueRow{}, Users: []UserRow{}}
	if s.Node != "" {
		v.Title = "GPUs on " + s.Node
	}
	if s.ReadingsError != "" {
		v.Notices = append(v.Notices, "No readings of the GPUs: "+s.ReadingsError)
	}
	match := func(user string) bool { return filter == "" || strings.Contains(user, filter) }

	held, free := 0, 0
	for _, d := range s.Devices {
		if d.Holder != nil {
			held++
		} else if !d.MIG {
			free++
		}
		if filter != "" && (d.Holder == nil || !match(d.Holder.User)) {
			continue
		}
		v.Devices = append(v.Devices, deviceView(d, hist[d.UUID], t))
	}
	v.Summary = fmt.Sprintf("%d held, %d free, %d waiting", held, free, len(s.Queue))

	for _, w := range s.Queue {
		if !match(w.User) {
			continue
		}
		v.Queue = append(v.Queue, QueueRow{Place: strconv.Itoa(int(w.Position)), Name: w.Name, User: w.User, Request: w.Request,
			Waiting: t.ago(w.WaitingSince), EstimatedStart: t.optional(w.EstimatedStart, "unknown"), LatestStart: t.optional(w.LatestStart, "none"), Why: w.Why})
	}
	if s.Unplaced > 0 {
		v.Unplaced = fmt.Sprintf("%d more pending request(s) not yet placed in the queue.", s.Unplaced)
	}
	v.Days = week(s.Reservations, now, loc, match)
	for _, us := range s.Users {
		if !match(us.Name) {
			continue
		}
		v.Users = append(v.Users, userRow(us))
	}
	v.Usage = usageView(u, t, match)
	return v
}

func deviceView(d overview.Device, h *series, t timeFmt) DeviceView {
	dv := DeviceView{Name: fmt.Sprintf("GPU %d", d.Index), Model: d.Model, Kind: "gpu", State: "free", StateLabel: "Free", Facts: []Fact{}}
	switch {
	case d.Profile != "":
		dv.Kind, dv.Name = "mig", fmt.Sprintf("GPU %d · %s", d.Index, d.Profile)
	case d.MIG:
		dv.Kind, dv.State, dv.StateLabel = "mig-parent", "mig", "MIG mode: held through its instances"
	}
	if h := d.Holder; h != nil {
		dv.State, dv.StateLabel = "held", "Held"
		hv := &HolderView{User: h.User, Container: cmp.Or(h.Container, "(no container yet)"), Allocation: h.Allocation, Type: h.Type, Marks: []string{}}
		if h.Since != nil {
			hv.Since = t.ago(*h.Since)
		}
		if h.Borrowed {
			dv.State, dv.StateLabel = "borrowed", "Held, borrowed"
			hv.Marks = append(hv.Marks, "borrowed: beyond quota, given back when asked for")
		}
		if d.ReservedBy != "" {
			hv.Marks = append(hv.Marks, "reserved: "+d.ReservedBy)
		}
		dv.Holder = hv
		if h.IdleSince != nil {
			dv.Facts = append(dv.Facts, Fact{Label: "Idle since", Value: t.at(*h.IdleSince)})
		}
		if h.IdleWarnAt != nil {
			dv.Facts = append(dv.Facts, Fact{Label: "Idle warning", Value: t.at(*h.IdleWarnAt), Warn: true})
		}
		if h.IdleStopAt != nil {
			dv.Facts = append(dv.Facts, Fact{Label: "Idle stop", Value: t.at(*h.IdleStopAt), Warn: true})
		}
		if h.RuntimeEnd != nil {
			dv.Facts = append(dv.Facts, Fact{Label: "Runtime ends", Value: t.at(*h.RuntimeEnd), Warn: h.RuntimeEnd.Sub(t.now) < time.Hour})
		}
		if h.DisplacedBy != "" {
			f := Fact{Label: "Makes way for", Value: h.DisplacedBy, Warn: true}
			if h.DisplacedAt != nil {
				f.Value += ", " + t.at(*h.DisplacedAt)
			}
			dv.Facts = append(dv.Facts, f)
		}
	} else if d.ReservedBy != "" {
		dv.State, dv.StateLabel = "reserved", "Reserved: "+d.ReservedBy
	}
	if d.Health != "" && d.Health != "Healthy" {
		dv.State, dv.StateLabel = "unhealthy", dv.StateLabel+" · "+d.Health
	}
	if u := d.UtilizationPercent; u != nil {
		dv.Util = Meter{Known: true, Percent: clamp(*u), Text: fmt.Sprintf("%.0f %%", *u), High: *u >= 90}
	} else {
		dv.Util = Meter{Text: "no reading"}
		if d.Profile != "" {
			dv.Util.Text = "not given on MIG"
		}
	}
	dv.Util.Label = "Utilisation " + dv.Util.Text
	if d.MemoryUsedBytes != nil && d.MemoryTotalBytes != nil && *d.MemoryTotalBytes > 0 {
		p := 100 * float64(*d.MemoryUsedBytes) / float64(*d.MemoryTotalBytes)
		dv.Memory = Meter{Known: true, Percent: clamp(p), Text: fmt.Sprintf("%s of %s", gib(*d.MemoryUsedBytes), gib(*d.MemoryTotalBytes)), High: p >= 90}
	} else if d.MemoryTotalBytes != nil {
		dv.Memory = Meter{Text: gib(*d.MemoryTotalBytes) + ", use unknown"}
	} else {
		dv.Memory = Meter{Text: "no reading"}
	}
	dv.Memory.Label = "Memory " + dv.Memory.Text
	var sensors []string
	if d.TemperatureC != nil {
		sensors = append(sensors, fmt.Sprintf("%.0f °C", *d.TemperatureC))
	}
	if d.PowerWatts != nil {
		sensors = append(sensors, fmt.Sprintf("%.0f W", *d.PowerWatts))
	}
	dv.Sensors = strings.Join(sensors, " · ")
	dv.UtilSpark = h.spark(func(p point) (float64, bool) { return p.util, p.hasUtil }, "Utilisation")
	dv.MemSpark = h.spark(func(p point) (float64, bool) { return p.mem, p.hasMem }, "Memory used")
	return dv
}

// clamp is p within 0–100; NaN is 0 (min and max keep a NaN, which JSON cannot carry).
func clamp(p float64) float64 {
	if math.IsNaN(p) {
		return 0
	}
	return max(0, min(100, p))
}

func gib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<30), 'f', 1, 64) + " GiB" }

// week is the calendar: seven days from today, each with the windows that overlap it.
func week(bs []overview.Booking, now time.Time, loc *time.Location, match func(string) bool) []Day {
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc)
	days := make([]Day, 7)
	for i := range days {
		start := today.AddDate(0, 0, i)
		end := today.AddDate(0, 0, i+1)
		d := Day{Label: start.Format("Mon 2 Jan"), ISO: start.Format("2006-01-02"), Today: i == 0, Bookings: []BookingView{}}
		for _, b := range bs {
			if !b.Start.Before(end) || !b.End.After(start) || !match(b.For) && !match(b.Name) {
				continue
			}
			from, to := b.Start.In(loc), b.End.In(loc)
			span := from.Format("15:04")
			if from.Before(start) {
				span = "…"
			}
			span += "–"
			if to.After(end) {
				span += "…"
			} else {
				span += to.Format("15:04")
			}
			what := b.Request
			if b.Devices != "" {
				what = "GPU " + b.Devices
			}
			bv := BookingView{Name: b.Name, Time: span, For: b.For, What: what, Phase: b.Phase, Active: b.Active, Weekly: b.Weekly}
			bv.Summary = fmt.Sprintf("%s, %s to %s, for %s: %s (%s)", b.Name, from.Format("Mon 15:04"), to.Format("Mon 15:04"), b.For, what, b.Phase)
			if b.Active {
				bv.Summary += ", on now"
			}
			d.Bookings = append(d.Bookings, bv)
		}
		days[i] = d
	}
	return days
}

func userRow(u overview.User) UserRow {
	r := UserRow{Name: u.Name, Held: eq(u.GPUEquivalents), Containers: strconv.Itoa(u.Containers), Borrowed: "", Waiting: ""}
	if u.Borrowed > 0 {
		r.Borrowed = eq(u.Borrowed)
	}
	if u.Waiting > 0 {
		r.Waiting = strconv.Itoa(u.Waiting)
	}
	switch q, err := strconv.ParseFloat(u.Quota, 64); {
	case u.Quota == "":
		r.Quota = Meter{Text: eq(u.GPUEquivalents) + ", no quota"}
	case u.Quota == "unlimited":
		r.Quota = Meter{Text: eq(u.GPUEquivalents) + " of unlimited"}
	case err == nil && q > 0:
		p := 100 * u.GPUEquivalents / q
		r.Quota = Meter{Known: true, Percent: clamp(p), Text: eq(u.GPUEquivalents) + " of " + u.Quota, High: p > 100}
	default:
		r.Quota = Meter{Text: eq(u.GPUEquivalents) + " of " + u.Quota}
	}
	r.Quota.Label = "GPU-equivalents held: " + r.Quota.Text
	if u.BudgetGPUHours > 0 {
		p := 100 * u.BudgetUsedGPUHours / u.BudgetGPUHours
		r.Budget = Meter{Known: true, Percent: clamp(p), High: p >= 90,
			Text: fmt.Sprintf("%s of %s GPU-h", hours(u.BudgetUsedGPUHours), hours(u.BudgetGPUHours))}
		if u.BudgetWindow != "" {
			r.Budget.Text += " per " + u.BudgetWindow
		}
	} else {
		r.Budget = Meter{Text: "no budget"}
	}
	r.Budget.Label = "Budget used: " + r.Budget.Text
	return r
}

func eq(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }

func hours(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

func usageView(u Usage, t timeFmt, match func(string) bool) UsageView {
	v := UsageView{Rows: []UsageRow{}, Advice: []AdviceRow{}}
	switch {
	case u.Err != nil:
		v.Note = "The audit log could not be read: " + u.Err.Error()
	case u.At.IsZero():
		v.Note = "Reading the audit log…"
	}
	if u.At.IsZero() {
		return v
	}
	r := u.Report
	v.Updated = t.at(u.At)
	v.Period = fmt.Sprintf("%s to %s", r.Since.In(t.loc).Format("2 Jan 15:04"), r.Until.In(t.loc).Format("2 Jan 15:04"))
	top := 0.0
	for _, row := range r.Rows {
		top = max(top, row.AllocatedGPUHours)
	}
	for _, row := range r.Rows {
		if !match(row.User) {
			continue
		}
		ur := UsageRow{User: row.User, Allocated: hours(row.AllocatedGPUHours), Used: hours(row.UsedGPUHours), UsedShare: "–",
			Idle: hours(row.IdleGPUHours), Stops: strconv.Itoa(row.IdleStops + row.RuntimeStops), Rejected: strconv.Itoa(row.Rejections),
			Binds: strconv.Itoa(row.Binds), MeanWait: "–"}
		if row.UtilizationKnownHours > 0 {
			ur.UsedShare = fmt.Sprintf("%.0f %%", 100*row.UsedGPUHours/row.UtilizationKnownHours)
		}
		if w := row.MeanWait(); w > 0 {
			ur.MeanWait = message.Age(w)
		}
		if top > 0 {
			ur.Bar = Meter{Known: true, Percent: clamp(100 * row.AllocatedGPUHours / top), Text: ur.Allocated + " GPU-h"}
		}
		ur.Bar.Label = "Allocated " + ur.Allocated + " GPU-hours"
		v.Rows = append(v.Rows, ur)
	}
	for _, a := range r.Advice {
		if !match(a.User) {
			continue
		}
		v.Advice = append(v.Advice, AdviceRow{User: a.User, ContainerType: cmp.Or(a.ContainerType, "–"), Suggestion: a.Suggestion,
			Runs: fmt.Sprintf("%d of %d", a.Fit, a.Judged), Freed: strconv.FormatFloat(a.GPUHoursFreed, 'f', 1, 64), Text: a.String()})
	}
	return v
}

// timeFmt writes times for people, relative to now.
type timeFmt struct {
	now time.Time
	loc *time.Location
}

// at is a clock time with how far it is: "14:30 (in 12m)", "Tue 09:00 (in 2d)".
func (t timeFmt) at(x time.Time) string {
	x = x.In(t.loc)
	layout := "15:04"
	if y, m, d := x.Date(); y != t.now.Year() || m != t.now.Month() || d != t.now.Day() {
		layout = "Mon 2 Jan 15:04"
	}
	d := x.Sub(t.now)
	switch {
	case d > 30*time.Second:
		return x.Format(layout) + " (in " + message.Age(d) + ")"
	case d < -30*time.Second:
		return x.Format(layout) + " (" + message.Age(-d) + " ago)"
	}
	return x.Format(layout) + " (now)"
}

func (t timeFmt) optional(x *time.Time, none string) string {
	if x == nil {
		return none
	}
	return t.at(*x)
}

// ago is how long since x: "under a minute", "12m", "3h5m".
func (t timeFmt) ago(x time.Time) string {
	d := t.now.Sub(x)
	if d < time.Minute {
		return "under a minute"
	}
	return message.Age(d)
}

// Package reserveweek replays a lab week on one node of eight GPUs with GPU reservations,
// through the rules the allocator applies (package reservation): Choose accepts or rejects
// each booking when it is made, some of them mid-week while jobs run; Mine sends a
// reservation's users to its devices first; everyone else's requests are placed by
// allocation.Decide with reservation.Keep's holdings kept off, so that work whose runtime
// limit ends before a start may use the devices until then (backfill); and a reservation
// that says Stop stops, so that they are gone by its start, the holders on its devices that cross it (the
// controller's displace, mirrored here), while one that says Wait stops nothing. About
// twenty users submit jobs of heavy-tailed length, bounded by their ContainerPolicy's
// maxRuntime (2h or 8h; some have none). The same week is replayed against a reference
// that holds the reserved devices idle from acceptance to the start. The traces come from
// seeds and the clock is simulated, a pass a minute; nothing is timed.
package reserveweek

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/reservation"
)

const (
	gpus = 8
	node = "gpu01"
	// Step is the time between two allocation passes.
	Step = time.Minute
	// displaceWarning mirrors controllers/allocation.DisplaceWarning: how long ahead of a
	// Stop reservation's start the holders it stops are told.
	displaceWarning = time.Hour
)

// Setting is how a stop takes time: the sample interval (Slack: a runtime limit is seen
// up to one sample late, and the allocator adds it to a hold's bound twice, as
// controllers/allocation's holdBound does), the checkpoint hook's run (uniform up to Hook,
// for the jobs that have one; HookTimeout is what the allocator counts for it), the stop
// (Grace when the job ignores SIGTERM, a second otherwise) and the node's sweep (Pass).
type Setting struct {
	Slack, Hook, HookTimeout, Grace, Pass time.Duration
}

// DefaultSetting is the sample policies' grace period and sample interval, hooks of up to
// two minutes counted at their label's two minutes, and the sweep's two seconds.
var DefaultSetting = Setting{Slack: time.Minute, Hook: 2 * time.Minute, HookTimeout: 2 * time.Minute, Grace: 60 * time.Second, Pass: 2 * time.Second}

// bound is how long a hold of a user with runtime limit limit lasts at most as the
// allocator counts it (controllers/allocation's holdBound with gpuHoldAfterStop 0): the
// limit, the stop's grace and a sample interval, and a sample interval more. 0: no bound.
func (s Setting) bound(limit time.Duration) time.Duration {
	if limit <= 0 {
		return 0
	}
	return limit + s.Grace + 2*s.Slack
}

// User is one of the lab's users: their host groups and their ContainerPolicy's
// maxRuntime (0: none).
type User struct {
	Name   string
	Groups []string
	Limit  time.Duration
}

// Job is one request: who, how many GPUs, when, how long it would run; Hook when it has a
// checkpoint hook, IgnoresTerm when a stop waits the grace period for it.
type Job struct {
	Name, User  string
	GPUs        int
	Arrive      time.Time
	Run         time.Duration
	Hook        bool
	IgnoresTerm bool
	// For names the reservation whose start the job came for ("" for the lab's own work).
	For string
}

// Booking is a GPUReservation as it is created: by an admin (no allowance), at Booked.
type Booking struct {
	Name     string
	Subjects []gpuwardenv1alpha1.Subject
	GPUs     int
	Devices  []string
	Start    time.Time
	End      time.Time
	Weekly   bool
	Stop     bool
	Booked   time.Time
}

// Week is what is replayed: from Start for seven days.
type Week struct {
	Start    time.Time
	Users    []User
	Jobs     []Job
	Bookings []Booking
}

// Policy is how requests of other users treat reserved devices before a start.
type Policy int

const (
	// Backfill is reservation.Keep with each request's hold bound: work whose runtime
	// limit ends before the start may use the devices until then.
	Backfill Policy = iota
	// HeldFromAcceptance is the reference: the devices are nobody's from the reservation's
	// acceptance to its start (Keep as for a request without a bound, and the
	// reservation's own users kept off too until the start).
	HeldFromAcceptance
)

func (p Policy) String() string {
	if p == Backfill {
		return "backfill"
	}
	return "held from acceptance"
}

// Causes of a late start: what held a reserved device one pass after the start.
const (
	// CauseStopping: a holder the reservation stops for its start, whose checkpoint hook
	// and stop were still running (Stop only; bounded by hook, grace and a pass).
	CauseStopping = "stopping"
	// CauseBeforeAcceptance: a holder bound before the reservation was accepted, which the
	// reservation does not stop (Wait), or not yet (Stop).
	CauseBeforeAcceptance = "before acceptance"
	// CauseBackfill: a holder another user's request put there after the acceptance,
	// through Keep (the rule should prevent it).
	CauseBackfill = "backfill"
	// CauseOtherReservation: a holder that another reservation's user started on its own
	// reservation's devices (Mine), crossing into this one.
	CauseOtherReservation = "another reservation's user"
)

// Occurrence is one window of an accepted reservation that started within the week.
type Occurrence struct {
	Name  string
	Stop  bool
	Start time.Time
	// Late is how long after the start its devices were first all free for its users
	// (held by none, or by them; the whole window when they never were); Cause what held
	// one a pass after the start.
	Late  time.Duration
	Cause string
}

// Result is what a replay measured.
type Result struct {
	Occurrences []Occurrence
	// Accepted and Rejected bookings, with the rejections' reasons.
	Accepted int
	Rejected []string
	// PreStart is the reserved GPU-hours before a start (from the acceptance; for a weekly
	// reservation, outside its windows); Backfill what other users' work held of them,
	// bound after the acceptance (through Keep); OwnEarly what its own users' work held of
	// them; Spill what another reservation's users held of them, placed on their own
	// reservation's devices (Mine); BeforeAccept what holders from before the acceptance
	// held.
	PreStart, Backfill, OwnEarly, Spill, BeforeAccept float64
	// PerReservation is Backfill and PreStart by reservation (the one whose start is next
	// on the device).
	PerReservation map[string][2]float64
	// Stopped counts busy containers a reservation stopped, by whether it said Wait or
	// Stop.
	StoppedWait, StoppedStop int
	// GPUHours is what was held within the week.
	GPUHours float64
}

// Late counts the occurrences that started more than a pass late, all and by cause.
func (r Result) Late() (all int, by map[string]int) {
	by = map[string]int{}
	for _, o := range r.Occurrences {
		if o.Late > Step {
			all++
			by[o.Cause]++
		}
	}
	return all, by
}

// LateWait counts the Wait occurrences late for cause.
func (r Result) LateWait(cause string) int {
	n := 0
	for _, o := range r.Occurrences {
		if o.Late > Step && !o.Stop && o.Cause == cause {
			n++
		}
	}
	return n
}

// MaxLate is the longest delay of a start, for occurrences late for cause ("" any).
func (r Result) MaxLate(cause string) time.Duration {
	var m time.Duration
	for _, o := range r.Occurrences {
		if o.Late > Step && (cause == "" || o.Cause == cause) {
			m = max(m, o.Late)
		}
	}
	return m
}

// BackfillShare is the share of the pre-start reserved GPU-hours that backfill used, in %.
func (r Result) BackfillShare() float64 {
	if r.PreStart == 0 {
		return 0
	}
	return 100 * r.Backfill / r.PreStart
}

// Add sums o into r (for several weeks).
func (r *Result) Add(o Result) {
	r.Occurrences = append(r.Occurrences, o.Occurrences...)
	r.Accepted += o.Accepted
	r.Rejected = append(r.Rejected, o.Rejected...)
	r.PreStart += o.PreStart
	r.Backfill += o.Backfill
	r.OwnEarly += o.OwnEarly
	r.Spill += o.Spill
	r.BeforeAccept += o.BeforeAccept
	r.StoppedWait += o.StoppedWait
	r.StoppedStop += o.StoppedStop
	r.GPUHours += o.GPUHours
	if r.PerReservation == nil {
		r.PerReservation = map[string][2]float64{}
	}
	for k, v := range o.PerReservation {
		s := r.PerReservation[k]
		r.PerReservation[k] = [2]float64{s[0] + v[0], s[1] + v[1]}
	}
}

// Debug, when set, is told what held each late start's devices.
var Debug func(format string, args ...any)

// Monday is the week replayed by Generate.
var Monday = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

func user(name string) []gpuwardenv1alpha1.Subject {
	return []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: name}}
}

// at is day d (0: Monday) at h:m of the week from start.
func at(start time.Time, d, h, m int) time.Time {
	return start.Add(time.Duration(d*24*60+h*60+m) * time.Minute)
}

// Bookings are the week's reservations, all made by an admin: a standing weekly booking of
// GPU 3 on Tuesday mornings (Wait); four GPUs on Friday for a group's paper deadline,
// booked on Wednesday (Stop); a drain of two GPUs on Sunday night, booked on Thursday
// (Stop); bookings made at little notice (30 minutes, Stop; an hour, Wait; two hours, of
// GPU 3 right after Tuesday morning's, Wait); and two that cannot be met (six GPUs within
// Friday's four; GPU 3 within Tuesday morning's).
func Bookings(start time.Time) []Booking {
	return []Booking{
		{Name: "tue-mornings", Subjects: user("u10"), Devices: []string{"GPU-3"}, Start: at(start, 1-14, 8, 0), End: at(start, 1-14, 12, 0), Weekly: true, Booked: start},
		{Name: "tue-gpu3-dup", Subjects: user("u05"), Devices: []string{"GPU-3"}, Start: at(start, 1, 9, 0), End: at(start, 1, 10, 0), Booked: at(start, 0, 12, 0)},
		{Name: "tue-noon", Subjects: user("u09"), Devices: []string{"GPU-3"}, Start: at(start, 1, 12, 0), End: at(start, 1, 14, 0), Booked: at(start, 1, 10, 0)},
		{Name: "wed-deadline", Subjects: user("u12"), GPUs: 2, Start: at(start, 2, 16, 0), End: at(start, 2, 20, 0), Stop: true, Booked: at(start, 2, 15, 30)},
		{Name: "fri-paper", Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectGroup, Name: "nlp"}}, GPUs: 4,
			Start: at(start, 4, 9, 0), End: at(start, 4, 17, 0), Stop: true, Booked: at(start, 2, 14, 0)},
		{Name: "fri-big", Subjects: user("u03"), GPUs: 6, Start: at(start, 4, 10, 0), End: at(start, 4, 12, 0), Booked: at(start, 2, 18, 0)},
		{Name: "thu-demo", Subjects: user("u07"), GPUs: 2, Start: at(start, 3, 14, 0), End: at(start, 3, 18, 0), Booked: at(start, 3, 13, 0)},
		{Name: "sun-maint", GPUs: 2, Start: at(start, 6, 20, 0), End: at(start, 7, 0, 0), Stop: true, Booked: at(start, 3, 10, 0)},
	}
}

// Users are twenty: u00–u07 with a maxRuntime of 2h, u08–u13 of 8h, u14–u19 with none;
// u01 and u02 are the group nlp.
func Users() []User {
	var out []User
	for i := range 20 {
		u := User{Name: fmt.Sprintf("u%02d", i)}
		switch {
		case i < 8:
			u.Limit = 2 * time.Hour
		case i < 14:
			u.Limit = 8 * time.Hour
		}
		if i == 1 || i == 2 {
			u.Groups = []string{"nlp"}
		}
		out = append(out, u)
	}
	return out
}

// Generate makes the week of Monday from seed: each user submits one to four jobs on a
// weekday between 8:00 and 20:00 and up to one at the weekend; a job asks for one GPU
// (65 %), two (25 %) or four; it would run a log-normal time (median 50 minutes for the
// users with a 2h limit, 3 hours for the others; σ 1), at least 5 minutes, cut at the
// user's limit (three days without one); half have a checkpoint hook, half ignore SIGTERM.
func Generate(seed uint64) Week {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := Week{Start: Monday, Users: Users(), Bookings: Bookings(Monday)}
	for _, u := range w.Users {
		for day := range 7 {
			n, from, span := 1+r.IntN(4), 8*60, 12*60
			if day >= 5 {
				n, from = r.IntN(2), 10*60
			}
			for range n {
				g := 1
				switch x := r.Float64(); {
				case x > 0.9:
					g = 4
				case x > 0.65:
					g = 2
				}
				median := 3 * time.Hour
				if u.Limit == 2*time.Hour {
					median = 50 * time.Minute
				}
				w.Jobs = append(w.Jobs, Job{Name: fmt.Sprintf("%s-%d", u.Name, len(w.Jobs)), User: u.Name, GPUs: g,
					Arrive: w.Start.Add(time.Duration(day*24*60+from+r.IntN(span)) * time.Minute),
					Run:    heavyTail(r, median, u.Limit), Hook: r.IntN(2) == 0, IgnoresTerm: r.IntN(2) == 0})
			}
		}
	}
	sort.SliceStable(w.Jobs, func(i, j int) bool { return w.Jobs[i].Arrive.Before(w.Jobs[j].Arrive) })
	return w
}

// heavyTail is a log-normal run of median m (σ 1), at least 5 minutes, cut at limit (three
// days without one), to the minute.
func heavyTail(r *rand.Rand, m, limit time.Duration) time.Duration {
	d := time.Duration(float64(m) * math.Exp(r.NormFloat64()))
	if limit <= 0 {
		limit = 72 * time.Hour
	}
	return min(max(d, 5*time.Minute), limit).Truncate(time.Minute)
}

// running is a bound job.
type running struct {
	job     *Job
	bound   time.Time
	release time.Time // when its devices go back
	latest  time.Time // the latest end the allocator counts (zero: none)
	on      string    // the reservation whose devices it was placed on as its user ("" none)
	stopper string    // the reservation stopping it ("" none)
}

// booking is a booking as the replay follows it.
type booking struct {
	Booking
	obj      gpuwardenv1alpha1.GPUReservation
	decided  bool
	accepted time.Time // zero: not accepted
}

// occurrence is an occurrence being watched at its start.
type occurrence struct {
	b      *booking
	slots  []string
	window reservation.Window
	free   time.Time // the first pass that found its devices free for its users
	cause  string
}

type replay struct {
	w       Week
	p       Policy
	s       Setting
	r       *rand.Rand
	now     time.Time
	end     time.Time
	groups  map[string][]string
	limits  map[string]time.Duration
	inv     []allocation.Slot
	book    allocation.Ledger
	run     map[string]*running
	jobs    []Job
	next    int
	waiting []*Job
	bs      []*booking
	booked  []reservation.Booked
	occs    []*occurrence
	res     Result
	serial  int
}

// Replay runs the week through the allocator's rules under policy p.
func Replay(w Week, p Policy, s Setting, seed uint64) Result {
	x := newReplay(w, p, s, seed)
	for x.now = w.Start; x.now.Before(x.end); x.now = x.now.Add(Step) {
		x.step()
	}
	return x.result()
}

func newReplay(w Week, p Policy, s Setting, seed uint64) *replay {
	x := &replay{w: w, p: p, s: s, r: rand.New(rand.NewPCG(seed, 7)), end: w.Start.Add(reservation.Week),
		groups: map[string][]string{}, limits: map[string]time.Duration{},
		book: allocation.Ledger{Bindings: map[string]allocation.Binding{}}, run: map[string]*running{},
		res: Result{PerReservation: map[string][2]float64{}}}
	for _, u := range w.Users {
		x.groups[u.Name], x.limits[u.Name] = u.Groups, u.Limit
	}
	for i := range gpus {
		u := fmt.Sprintf("GPU-%d", i)
		x.inv = append(x.inv, allocation.Slot{GPUIndex: i, GPUUUID: u, UUID: u, Healthy: true})
	}
	for _, b := range w.Bookings {
		x.bs = append(x.bs, &booking{Booking: b})
	}
	x.jobs = slices.Clone(w.Jobs)
	sort.SliceStable(x.jobs, func(i, j int) bool { return x.jobs[i].Arrive.Before(x.jobs[j].Arrive) })
	return x
}

// step is one pass at now: holds end, requests and bookings arrive, bookings are decided,
// requests placed, holders displaced; then what the pass left is measured.
func (x *replay) step() {
	x.releases()
	for x.next < len(x.jobs) && !x.jobs[x.next].Arrive.After(x.now) {
		x.waiting = append(x.waiting, &x.jobs[x.next])
		x.next++
	}
	x.reservations()
	x.arrivals()
	x.place()
	x.displace()
	x.watch()
	x.account()
}

func (x *replay) result() Result {
	for _, o := range x.occs {
		late := o.free.Sub(o.window.Start)
		if o.free.IsZero() {
			late = x.end.Sub(o.window.Start)
		}
		x.res.Occurrences = append(x.res.Occurrences, Occurrence{Name: o.b.Name, Stop: o.b.Stop, Start: o.window.Start, Late: late, Cause: o.cause})
	}
	return x.res
}

// releases ends the holds whose time has come; a reservation's user whose window goes on
// submits the next job, and a job a reservation stopped comes back (from its checkpoint
// when it has a hook).
func (x *replay) releases() {
	for _, name := range slices.Sorted(maps.Keys(x.run)) {
		h := x.run[name]
		if h.release.After(x.now) {
			continue
		}
		delete(x.book.Bindings, name)
		delete(x.run, name)
		j := h.job
		if h.stopper != "" {
			left := j.Run
			if j.Hook {
				left = j.Run - h.release.Sub(h.bound)
			}
			if left > 0 {
				x.submit(Job{Name: j.Name + "-again", User: j.User, GPUs: j.GPUs, Run: left, Hook: j.Hook, IgnoresTerm: j.IgnoresTerm, For: j.For})
			}
			continue
		}
		if j.For == "" {
			continue
		}
		for _, b := range x.bs {
			if b.Name != j.For || b.accepted.IsZero() {
				continue
			}
			if w, ok := reservation.TimesOf(&b.obj.Spec).Current(x.now); ok && w.Contains(x.now) && w.End.Sub(x.now) >= 30*time.Minute {
				x.submit(Job{Name: fmt.Sprintf("%s-%s-next", j.User, b.Name), User: j.User, GPUs: j.GPUs, For: b.Name,
					Run: x.forWindow(j.User, w.End.Sub(x.now)), Hook: x.r.IntN(2) == 0, IgnoresTerm: x.r.IntN(2) == 0})
			}
		}
	}
}

// forWindow is how long a reservation's user runs with span of the window left: half to
// one and a half times it, cut at their limit.
func (x *replay) forWindow(user string, span time.Duration) time.Duration {
	d := time.Duration(float64(span) * (0.5 + x.r.Float64())).Truncate(time.Minute)
	if l := x.limits[user]; l > 0 {
		d = min(d, l)
	}
	return d
}

func (x *replay) submit(j Job) {
	x.serial++
	j.Name = fmt.Sprintf("%s.%d", j.Name, x.serial)
	j.Arrive = x.now
	x.waiting = append(x.waiting, &j)
}

// reservations decides the bookings made by now (as decideReservation does, for an
// admin's booking) and follows the accepted ones' phases.
func (x *replay) reservations() {
	changed := false
	for _, b := range x.bs {
		if b.decided || b.Booked.After(x.now) {
			continue
		}
		b.decided, changed = true, true
		b.obj = b.object()
		t := reservation.TimesOf(&b.obj.Spec)
		if _, ok := t.Current(x.now); !ok {
			x.res.Rejected = append(x.res.Rejected, b.Name+": "+gpuwardenv1alpha1.ReasonWindowPassed)
			continue
		}
		req := allocation.Request{GPUs: b.GPUs, Devices: b.Devices}
		c := reservation.Choose(req, node, t, map[string][]allocation.Slot{node: x.inv}, x.booked, map[string][]allocation.Holding{node: x.book.Holdings()})
		if !c.Accepted() {
			x.res.Rejected = append(x.res.Rejected, b.Name+": "+c.Reason)
			continue
		}
		st := &b.obj.Status
		st.Phase, st.NodeName = gpuwardenv1alpha1.ReservationAccepted, c.Node
		for _, s := range c.Slots {
			st.Devices = append(st.Devices, gpuwardenv1alpha1.BoundDevice{Index: int32(s.GPUIndex), UUID: s.UUID, Weight: *resource.NewQuantity(1, resource.DecimalSI)})
		}
		st.DevicesSummary = allocation.DevicesSummary(st.Devices)
		b.accepted = x.now
		x.res.Accepted++
		x.booked = x.bookedNow()
		for _, w := range t.Between(x.now, x.end) {
			if !w.Start.Before(x.now) && w.Start.Add(Step).Before(x.end) {
				o := &occurrence{b: b, window: w}
				for _, d := range st.Devices {
					o.slots = append(o.slots, d.UUID)
				}
				x.occs = append(x.occs, o)
			}
		}
	}
	for _, b := range x.bs {
		if b.accepted.IsZero() || b.obj.Status.Phase == gpuwardenv1alpha1.ReservationEnded {
			continue
		}
		t := reservation.TimesOf(&b.obj.Spec)
		w, ok := t.Current(x.now)
		phase := gpuwardenv1alpha1.ReservationAccepted
		switch {
		case !ok:
			phase = gpuwardenv1alpha1.ReservationEnded
		case w.Contains(x.now):
			phase = gpuwardenv1alpha1.ReservationActive
		}
		if phase != b.obj.Status.Phase {
			b.obj.Status.Phase, changed = phase, true
		}
	}
	if changed {
		x.booked = x.bookedNow()
	}
}

func (x *replay) bookedNow() []reservation.Booked {
	var objs []gpuwardenv1alpha1.GPUReservation
	for _, b := range x.bs {
		if !b.accepted.IsZero() {
			objs = append(objs, b.obj)
		}
	}
	return reservation.Of(objs)
}

// object is the GPUReservation b creates.
func (b *booking) object() gpuwardenv1alpha1.GPUReservation {
	r := gpuwardenv1alpha1.GPUReservation{ObjectMeta: metav1.ObjectMeta{Name: b.Name, CreationTimestamp: metav1.NewTime(b.Booked),
		Annotations: map[string]string{gpuwardenv1alpha1.AnnotationBookedBy: "admin", gpuwardenv1alpha1.AnnotationBookedByAdmin: "true"}},
		Spec: gpuwardenv1alpha1.GPUReservationSpec{Subjects: b.Subjects, NodeName: node, Start: metav1.NewTime(b.Start), End: metav1.NewTime(b.End),
			Repeat: gpuwardenv1alpha1.RepeatNone, Displace: gpuwardenv1alpha1.DisplaceWait}}
	if b.Weekly {
		r.Spec.Repeat = gpuwardenv1alpha1.RepeatWeekly
	}
	if b.Stop {
		r.Spec.Displace = gpuwardenv1alpha1.DisplaceStop
	}
	if len(b.Devices) > 0 {
		r.Spec.Request.Devices = b.Devices
	} else {
		n := int32(b.GPUs)
		r.Spec.Request.GPUs = &n
	}
	return r
}

// arrivals: at each start of an accepted reservation's window, its users come with jobs
// for its devices (split among them).
func (x *replay) arrivals() {
	for _, o := range x.occs {
		if !o.window.Start.Equal(x.now) || len(o.b.Subjects) == 0 {
			continue
		}
		var users []string
		for _, u := range x.w.Users {
			if reservation.Includes(o.b.Subjects, u.Name, u.Groups) {
				users = append(users, u.Name)
			}
		}
		n := len(o.b.obj.Status.Devices)
		for i, u := range users {
			g := n / len(users)
			if i < n%len(users) {
				g++
			}
			if g > 0 {
				x.submit(Job{Name: fmt.Sprintf("%s-%s", u, o.b.Name), User: u, GPUs: g, For: o.b.Name,
					Run: x.forWindow(u, o.window.End.Sub(o.window.Start)), Hook: x.r.IntN(2) == 0, IgnoresTerm: x.r.IntN(2) == 0})
			}
		}
	}
}

// place is the allocation pass, in arrival order, as controllers/allocation's decide
// places a request: on an active reservation's devices first for its users (Mine), else
// on the node with what reservations keep off (Keep) held. Within a pass, what Mine and
// Keep say for a user is worked out once, and a request for more GPUs than are neither
// held nor kept off for its user (but for the devices Mine offers), or like one that did
// not fit (same user and size), is not decided until something binds: the answer is the
// same (no quota applies).
func (x *replay) place() {
	sort.SliceStable(x.waiting, func(i, j int) bool { return x.waiting[i].Arrive.Before(x.waiting[j].Arrive) })
	var still []*Job
	held := x.book.Holdings()
	type ask struct {
		user string
		gpus int
	}
	failed := map[ask]bool{}
	mine := map[string][]reservation.Booked{}
	keeps := map[string][]allocation.Holding{}
	room := map[string]int{} // devices neither held nor kept off, by user
	for _, j := range x.waiting {
		groups := x.groups[j.User]
		if _, ok := mine[j.User]; !ok {
			mine[j.User] = reservation.Mine(x.booked, node, j.User, groups, x.now)
			keeps[j.User] = x.keep(j.User, groups)
		}
		if _, ok := room[j.User]; !ok {
			room[j.User] = roomOf(x.inv, held, keeps[j.User], mine[j.User])
		}
		if j.GPUs > room[j.User] || failed[ask{j.User, j.GPUs}] {
			still = append(still, j)
			continue
		}
		req := allocation.Request{User: j.User, GPUs: j.GPUs}
		placed := false
		for _, b := range mine[j.User] {
			var on []allocation.Slot
			for _, s := range x.inv {
				if slices.Contains(b.Slots, s.UUID) {
					on = append(on, s)
				}
			}
			// Another reservation of the same devices that starts before it would end is
			// kept, as controllers/allocation's onReservation does.
			if d := allocation.Decide(on, slices.Concat(held, keeps[j.User]), allocation.Quota{}, req); d.Placed() {
				held = append(held, x.bind(j, d.Slots, b.Name))
				placed = true
				break
			}
		}
		if !placed {
			if d := allocation.Decide(x.inv, slices.Concat(held, keeps[j.User]), allocation.Quota{}, req); d.Placed() {
				held = append(held, x.bind(j, d.Slots, ""))
				placed = true
			}
		}
		if placed {
			clear(failed)
			clear(room)
			continue
		}
		failed[ask{j.User, j.GPUs}] = true
		still = append(still, j)
	}
	x.waiting = still
}

// roomOf counts the slots of inv none of held holds that are not kept off, or that are
// the devices of one of mine (Mine places there whatever Keep says).
func roomOf(inv []allocation.Slot, held, keep []allocation.Holding, mine []reservation.Booked) int {
	in := func(hs []allocation.Holding, u string) bool {
		return slices.ContainsFunc(hs, func(h allocation.Holding) bool { return slices.Contains(h.Slots, u) })
	}
	n := 0
	for _, s := range inv {
		if !in(held, s.UUID) && (!in(keep, s.UUID) || slices.ContainsFunc(mine, func(b reservation.Booked) bool { return slices.Contains(b.Slots, s.UUID) })) {
			n++
		}
	}
	return n
}

// keep is what a request of user must leave alone under the policy.
func (x *replay) keep(user string, groups []string) []allocation.Holding {
	if x.p == Backfill {
		d := x.s.bound(x.limits[user])
		if d > 0 {
			d += x.s.HookTimeout // as controllers/allocation's keepOff counts the hook a container may run
		}
		keep, _ := reservation.Keep(x.booked, node, user, groups, x.now, d)
		return keep
	}
	keep, _ := reservation.Keep(x.booked, node, user, groups, x.now, 0)
	for _, b := range x.booked {
		if _, active := b.Active(x.now); !active && b.For(user, groups) && !b.Times.Next(x.now).IsZero() {
			keep = append(keep, b.Holding())
		}
	}
	return keep
}

// bind holds slots for j from now, and works out when it ends: at the end of its run, or,
// where its runtime limit comes first, when the stop it gets then is done (a sample late at
// most, its hook, its stop).
func (x *replay) bind(j *Job, slots []allocation.Slot, on string) allocation.Holding {
	b := x.book.Bind(j.Name, j.User, node, slots, x.now)
	b.Reservation = on
	x.book.Bindings[j.Name] = b
	h := &running{job: j, bound: x.now, on: on, release: x.now.Add(j.Run)}
	if l := x.limits[j.User]; l > 0 {
		h.latest = x.now.Add(x.s.bound(l))
		if j.Hook {
			h.latest = h.latest.Add(x.s.HookTimeout) // as controllers/allocation's holder counts it
		}
		if j.Run >= l {
			h.release = x.now.Add(l + time.Duration(x.r.Int64N(int64(x.s.Slack))) + x.stopTime(j))
		}
	}
	x.run[j.Name] = h
	return allocation.Holds(j.Name, j.User, slots)
}

// stopTime is how long stopping j takes: its hook, then SIGTERM (the grace period where
// it ignores it), then the sweep.
func (x *replay) stopTime(j *Job) time.Duration {
	d := x.s.Pass + time.Second
	if j.Hook {
		d += time.Duration(x.r.Int64N(int64(x.s.Hook)))
	}
	if j.IgnoresTerm {
		d += x.s.Grace - time.Second
	}
	return d
}

// stopLead mirrors controllers/reclaim's stopLead: the stop of a displaced holder begins
// its hook's timeout (when it has one), its grace period and three sweeps before the
// start.
func (x *replay) stopLead(j *Job) time.Duration {
	d := x.s.Grace + 3*x.s.Pass
	if j.Hook {
		d += x.s.HookTimeout
	}
	return d
}

// displace mirrors controllers/allocation's displace (a Stop reservation marks, within
// displaceWarning of its start, the holders on its devices not its users whose latest end
// crosses the start or who have none; within the window, every such holder) and the
// node's sweep (a marked holder's stop begins stopLead before the start: hook, stop,
// release).
func (x *replay) displace() {
	for _, b := range x.booked {
		w, ok := b.Times.Current(x.now)
		if !b.Stop || !ok || x.now.Before(w.Start.Add(-displaceWarning)) {
			continue
		}
		if _, active := b.Active(x.now); w.Contains(x.now) && !active {
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(x.book.Bindings)) {
			bd := x.book.Bindings[name]
			if bd.Reservation == b.Name || !slices.ContainsFunc(bd.Slots, func(s allocation.Bound) bool { return slices.Contains(b.Slots, s.UUID) }) ||
				b.For(bd.User, x.groups[bd.User]) {
				continue
			}
			h := x.run[name]
			if w.Start.After(x.now) {
				if !h.latest.IsZero() && !h.latest.After(w.Start) {
					continue
				}
			}
			if x.now.Before(w.Start.Add(-x.stopLead(h.job))) || h.stopper != "" {
				continue // told now; stopped so that the devices are free at the start
			}
			h.stopper = b.Name
			if at := x.now.Add(x.stopTime(h.job)); at.Before(h.release) {
				h.release = at
			}
			if x.bookingOf(b.Name).obj.Spec.Displace == gpuwardenv1alpha1.DisplaceWait {
				x.res.StoppedWait++ // never, by the rule: counted from the object all the same
			} else {
				x.res.StoppedStop++
			}
		}
	}
}

// watch finds, for each occurrence that has started, the first pass at which its devices
// are free for its users, and what held them a pass after the start.
func (x *replay) watch() {
	for _, o := range x.occs {
		if x.now.Before(o.window.Start) || !o.free.IsZero() {
			continue
		}
		var in []*running
		for _, name := range slices.Sorted(maps.Keys(x.book.Bindings)) {
			bd := x.book.Bindings[name]
			if slices.ContainsFunc(bd.Slots, func(s allocation.Bound) bool { return slices.Contains(o.slots, s.UUID) }) && !reservation.Includes(o.b.Subjects, bd.User, x.groups[bd.User]) {
				in = append(in, x.run[name])
			}
		}
		if len(in) == 0 {
			o.free = x.now
			continue
		}
		if !x.now.Before(o.window.End) {
			o.free = o.window.End // its users never had them in the window
			continue
		}
		if x.now.Equal(o.window.Start.Add(Step)) {
			o.cause = x.causeOf(o, in)
		}
	}
}

// causeOf is why in still held o's devices a pass after its start: the cause the rules
// should prevent first.
func (x *replay) causeOf(o *occurrence, in []*running) string {
	var causes []string
	for _, h := range in {
		if Debug != nil {
			Debug("%s %s: %s of %s bound %s on %q stopper %q release %s latest %s", o.b.Name, o.window.Start.Format("Mon 15:04"), h.job.Name, h.job.User,
				h.bound.Format("Mon 15:04"), h.on, h.stopper, h.release.Format("Mon 15:04:05"), h.latest.Format("Mon 15:04"))
		}
		switch {
		case h.bound.Before(o.b.accepted) && h.stopper != "":
			causes = append(causes, CauseStopping)
		case h.bound.Before(o.b.accepted):
			causes = append(causes, CauseBeforeAcceptance)
		case h.on != "" && h.on != o.b.Name:
			causes = append(causes, CauseOtherReservation)
		default:
			causes = append(causes, CauseBackfill)
		}
	}
	for _, c := range []string{CauseBackfill, CauseOtherReservation, CauseBeforeAcceptance, CauseStopping} {
		if slices.Contains(causes, c) {
			return c
		}
	}
	return ""
}

// account adds this pass's minute of holds: all of them, and those on reserved devices
// before a start (attributed to the reservation whose start is next on the device).
func (x *replay) account() {
	h := Step.Hours()
	by := map[string]string{} // device → holder
	for _, name := range slices.Sorted(maps.Keys(x.book.Bindings)) {
		for _, s := range x.book.Bindings[name].Slots {
			by[s.UUID] = name
			x.res.GPUHours += h
		}
	}
	for _, s := range x.inv {
		var first *reservation.Booked
		var firstAt time.Time
		for i, b := range x.booked {
			if !slices.Contains(b.Slots, s.UUID) {
				continue
			}
			if _, active := b.Active(x.now); active {
				first = nil
				break
			}
			if n := b.Times.Next(x.now); !n.IsZero() && (first == nil || n.Before(firstAt)) {
				first, firstAt = &x.booked[i], n
			}
		}
		if first == nil {
			continue
		}
		accepted := x.bookingOf(first.Name).accepted
		x.res.PreStart += h
		pr := x.res.PerReservation[first.Name]
		pr[1] += h
		if name, ok := by[s.UUID]; ok {
			bd := x.book.Bindings[name]
			switch {
			case bd.BoundAt.Before(accepted):
				x.res.BeforeAccept += h
			case first.For(bd.User, x.groups[bd.User]):
				x.res.OwnEarly += h
			case bd.Reservation != "":
				x.res.Spill += h
			default:
				x.res.Backfill += h
				pr[0] += h
			}
		}
		x.res.PerReservation[first.Name] = pr
	}
}

func (x *replay) bookingOf(name string) *booking {
	for _, b := range x.bs {
		if b.Name == name {
			return b
		}
	}
	return &booking{}
}

// Package allocation decides whether and where a GPU request can be placed. It is pure: the
// inventory, the live allocations, the requester's effective quota and the request go in, a
// decision comes out, and nothing is read or written on the way.
package allocation

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// Epsilon is the tolerance of gpu-equivalent arithmetic: 7 × 1/7 fits in a quota of 1.
const Epsilon = 1e-9

// Slot is a unit that can be given out: a whole GPU (MIG disabled) or one MIG instance.
type Slot struct {
	GPUIndex int
	// GPUUUID is the UUID of the GPU the slot is (or is on).
	GPUUUID string
	// UUID is the GPU's UUID, or the MIG instance's.
	UUID string
	// Profile is the MIG profile ("" for a whole GPU).
	Profile string
	// Share is what a MIG instance costs in gpu-equivalents, as the GPU object records it
	// (3/7 for a 3g slice of a 7-slice GPU); a whole GPU costs 1.
	Share float64
	// Healthy is false for a GPU with XID/NVML errors or one that fell off the bus.
	Healthy bool
	// Foreign is true when processes that belong to no allocation run on it.
	Foreign bool
}

// Weight is what the slot costs in gpu-equivalents.
func (s Slot) Weight() float64 {
	if s.Profile == "" || s.Share <= 0 {
		return 1
	}
	return s.Share
}

// Holding is a live (Bound) allocation.
type Holding struct {
	Name  string
	User  string
	Slots []string // UUIDs
	// Weight is the sum of its slots' weights.
	Weight float64
	// Uncharged holds its slots but counts against no quota (a reservation's that does
	// not charge its users).
	Uncharged bool
}

// Limit is one effective limit and the object that set it.
type Limit[T any] struct {
	// Set is false when no object sets the limit (it does not apply).
	Set bool
	// Unlimited is true when an object lifts the limit explicitly.
	Unlimited bool
	Value     T
	// From names the object that set it, e.g. GPUQuota students.
	From string
	// Shared is true when it comes from a Shared quota: the pool's holdings count, not only
	// the requester's.
	Shared bool
}

// limited reports whether the limit applies.
func (l Limit[T]) limited() bool { return l.Set && !l.Unlimited }

// Quota is a user's effective quota. Pool lists the users whose holdings count against
// the limits marked Shared (the requester included).
type Quota struct {
	GPUEquivalents      Limit[float64]
	MaxGPUsPerContainer Limit[int]
	MaxContainers       Limit[int]
	AllowFullGPU        Limit[bool]
	Pool                []string
	// Borrow is how much beyond GPUEquivalents may be held, borrowed, while GPUs are free.
	Borrow Limit[float64]
	// Budget is a budget of gpu-equivalent-hours over BudgetWindow (Shared: the pool's).
	Budget       Limit[float64]
	BudgetWindow Window
	// BudgetUsed is what the budget's users used in its window so far; BudgetFrees when
	// enough of it frees up (zero: unknown). The caller fills both in where Budget applies.
	BudgetUsed  float64
	BudgetFrees time.Time
	// BudgetPool are the users whose use BudgetUsed counts (the requester among them).
	BudgetPool []string
}

// Request is what is asked for: exactly one of GPUs, MIGProfile or Devices.
type Request struct {
	User       string
	GPUs       int
	MIGProfile string
	// Devices are UUIDs of GPUs or MIG instances.
	Devices []string
}

// Decision is the outcome: Slots when placed, else a Reason and a Message for people.
// Borrowed says the slots take (or, waiting for capacity, would take) the user beyond their
// quota, within what they may borrow.
type Decision struct {
	Slots    []Slot
	Reason   string
	Message  string
	Borrowed bool
}

// Placed reports whether the request got its slots.
func (d Decision) Placed() bool { return d.Reason == "" }

// Final reports whether the request can never be placed as it stands (NoCapacity can).
func (d Decision) Final() bool {
	return d.Reason != "" && d.Reason != gpuwardenv1alpha1.ReasonNoCapacity
}

// Decide checks, in order: the per-container cap, full-GPU permission, max containers, the
// gpu-equivalent quota (charging each slot's real weight), then capacity.
func Decide(inventory []Slot, live []Holding, q Quota, req Request) Decision {
	if len(req.Devices) > 0 {
		uuids, missing, twice := ResolveDevices(inventory, req.Devices)
		if len(twice) > 0 {
			return reject(gpuwardenv1alpha1.ReasonUnsatisfiable, "the request names the same device more than once (%s)", strings.Join(twice, ", "))
		}
		if len(missing) == 0 {
			req.Devices = uuids // indices named as UUIDs from here on
		}
	}
	want := req.GPUs
	switch {
	case req.MIGProfile != "":
		want = 1
	case len(req.Devices) > 0:
		want = len(req.Devices)
	}
	if l := q.MaxGPUsPerContainer; l.limited() && want > l.Value {
		return reject(gpuwardenv1alpha1.ReasonContainerLimitExceeded, "%s asked for %s in one container; the limit is %d (%s)",
			req.User, plural(want, "GPU"), l.Value, l.From)
	}
	byUUID := map[string]Slot{}
	for _, s := range inventory {
		byUUID[s.UUID] = s
	}
	wantsFull := req.GPUs > 0
	for _, u := range req.Devices {
		if s, ok := byUUID[u]; ok && s.Profile == "" {
			wantsFull = true
		}
	}
	if l := q.AllowFullGPU; wantsFull && l.Set && !l.Value {
		return reject(gpuwardenv1alpha1.ReasonFullGPUNotAllowed, "%s may not hold whole GPUs, only MIG slices (%s)", req.User, l.From)
	}
	self := usage(live, []string{req.User}, req.User)
	pool := usage(live, q.Pool, req.User)
	if l := q.MaxContainers; l.limited() {
		u := pick(l.Shared, pool, self)
		if u.containers+1 > l.Value {
			return reject(gpuwardenv1alpha1.ReasonMaxContainersExceeded, "%s holds %d/%d containers (%s)", u.who, u.containers, l.Value, l.From)
		}
	}
	if l := q.Budget; l.limited() && q.BudgetUsed >= l.Value-Epsilon {
		who := req.User
		if len(q.BudgetPool) > 1 {
			who = fmt.Sprintf("the pool of %s shared with %s", req.User, strings.Join(others(q.BudgetPool, req.User), ", "))
		}
		msg := fmt.Sprintf("%s used %s of a budget of %s gpu-hours in %s (%s)", who, hours(q.BudgetUsed), num(l.Value), q.BudgetWindow.Phrase(), l.From)
		if !q.BudgetFrees.IsZero() {
			msg += "; enough frees up at " + q.BudgetFrees.UTC().Format(time.RFC3339)
		}
		return reject(gpuwardenv1alpha1.ReasonBudgetExceeded, "%s", msg)
	}
	cost, ok := requestCost(inventory, byUUID, req, want)
	borrowed := false
	if l := q.GPUEquivalents; l.limited() && ok {
		var d Decision
		if borrowed, d = overQuota(q, pick(l.Shared, pool, self), cost); d.Reason != "" {
			return d
		}
	}
	slots, why := place(inventory, live, req, want, byUUID)
	if slots == nil {
		return Decision{Reason: gpuwardenv1alpha1.ReasonNoCapacity, Message: why, Borrowed: borrowed}
	}
	if l := q.GPUEquivalents; l.limited() && !ok {
		// requestCost could not price the request: price what was found
		var d Decision
		if borrowed, d = overQuota(q, pick(l.Shared, pool, self), weight(slots)); d.Reason != "" {
			return d
		}
	}
	return Decision{Slots: slots, Borrowed: borrowed}
}

// overQuota judges a request of cost against the gpu-equivalent quota: within it; beyond it
// but within what may be borrowed (true); or refused (the decision says why).
func overQuota(q Quota, u held, cost float64) (bool, Decision) {
	l := q.GPUEquivalents
	if u.gpuEq+cost <= l.Value+Epsilon {
		return false, Decision{}
	}
	if b := q.Borrow; b.limited() && b.Value > 0 {
		if u.gpuEq+cost <= l.Value+b.Value+Epsilon {
			return true, Decision{}
		}
		return false, reject(gpuwardenv1alpha1.ReasonQuotaExceeded, "%s holds %s/%s gpu-equivalents and asked for %s more (%s), beyond the %s they may borrow (%s)",
			u.who, num(u.gpuEq), num(l.Value), num(cost), l.From, num(b.Value), b.From)
	}
	return false, reject(gpuwardenv1alpha1.ReasonQuotaExceeded, "%s holds %s/%s gpu-equivalents and asked for %s more (%s)",
		u.who, num(u.gpuEq), num(l.Value), num(cost), l.From)
}

// hours is gpu-hours for people: to two decimals, or to three significant digits below
// one (a budget of 0.001 gpu-hours is used up by 3.6 GPU-seconds).
func hours(v float64) string {
	if v > 0 && v < 1 {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// held is what a user or a pool holds now.
type held struct {
	who        string
	containers int
	gpuEq      float64
}

func pick(shared bool, pool, self held) held {
	if shared {
		return pool
	}
	return self
}

// usage is what the users (the requester always among them) hold now.
func usage(live []Holding, users []string, requester string) held {
	members := map[string]bool{requester: true}
	for _, u := range users {
		members[u] = true
	}
	h := held{who: requester}
	for _, l := range live {
		if members[l.User] && !l.Uncharged {
			h.containers++
			h.gpuEq += l.Weight
		}
	}
	if len(members) > 1 {
		h.who = fmt.Sprintf("the pool of %s shared with %s", requester, strings.Join(others(users, requester), ", "))
	}
	return h
}

func others(pool []string, user string) []string {
	var out []string
	for _, u := range pool {
		if u != user {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out
}

// requestCost prices the request before placement; false when it cannot be priced (an
// unknown profile or device), in which case the placed slots are priced instead.
func requestCost(inventory []Slot, byUUID map[string]Slot, req Request, want int) (float64, bool) {
	switch {
	case req.MIGProfile != "":
		for _, s := range inventory {
			if s.Profile == req.MIGProfile {
				return s.Weight(), true
			}
		}
		return 0, false
	case len(req.Devices) > 0:
		total := 0.0
		for _, u := range req.Devices {
			s, ok := byUUID[u]
			if !ok {
				return 0, false
			}
			total += s.Weight()
		}
		return total, true
	default:
		return float64(want), true
	}
}

// place picks slots: whole GPUs by lowest free index; a MIG profile by best fit (the GPU
// with the fewest free slices left, then the lowest index); named devices as named. Never
// an unhealthy slot, one with foreign processes, or one held by a live allocation.
func place(inventory []Slot, live []Holding, req Request, want int, byUUID map[string]Slot) ([]Slot, string) {
	held := heldSlots(live)
	free := func(s Slot) bool { return freeSlot(s, held) }
	switch {
	case len(req.Devices) > 0:
		var out []Slot
		for _, u := range req.Devices {
			s, ok := byUUID[u]
			switch {
			case !ok:
				return nil, fmt.Sprintf("no device %s on this node", u)
			case !s.Healthy:
				return nil, fmt.Sprintf("device %s is unhealthy", u)
			case s.Foreign:
				return nil, fmt.Sprintf("device %s runs processes of no allocation", u)
			case held[u]:
				return nil, fmt.Sprintf("device %s is held by another allocation", u)
			}
			out = append(out, s)
		}
		return out, ""
	case req.MIGProfile != "":
		freeSlices := map[int]float64{} // the free share of each partitioned GPU
		for _, s := range inventory {
			if s.Profile != "" && free(s) {
				freeSlices[s.GPUIndex] += s.Weight()
			}
		}
		var best *Slot
		for i := range inventory {
			s := inventory[i]
			if s.Profile != req.MIGProfile || !free(s) {
				continue
			}
			if best == nil || freeSlices[s.GPUIndex] < freeSlices[best.GPUIndex] ||
				freeSlices[s.GPUIndex] == freeSlices[best.GPUIndex] && s.GPUIndex < best.GPUIndex {
				best = &inventory[i]
			}
		}
		if best == nil {
			return nil, fmt.Sprintf("no free MIG instance of profile %s", req.MIGProfile)
		}
		return []Slot{*best}, ""
	default:
		var whole []Slot
		for _, s := range inventory {
			if s.Profile == "" && free(s) {
				whole = append(whole, s)
			}
		}
		sort.SliceStable(whole, func(i, j int) bool { return whole[i].GPUIndex < whole[j].GPUIndex })
		if len(whole) < want {
			return nil, fmt.Sprintf("%s free of %s asked for", plural(len(whole), "whole GPU"), strconv.Itoa(want))
		}
		return whole[:want], ""
	}
}

func weight(slots []Slot) float64 {
	w := 0.0
	for _, s := range slots {
		w += s.Weight()
	}
	return w
}

func reject(reason, format string, args ...any) Decision {
	return Decision{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// FormatEquivalents prints a gpu-equivalent count for people: 2, 0.43, 1.29; a tiny one
// in full (0.000000001), never as 0.
func FormatEquivalents(f float64) string { return num(f) }

func num(f float64) string {
	if s := strconv.FormatFloat(float64(int64(f*100+0.5))/100, 'f', -1, 64); s != "0" || f < Epsilon/2 {
		return s
	}
	return strconv.FormatFloat(float64(int64(f*1e9+0.5))/1e9, 'f', -1, 64)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

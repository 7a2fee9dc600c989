// Package labweek replays a synthetic week of a shared GPU lab through the idle rules of
// internal/lifecycle in simulated time, to measure what reclaim saves: GPU-hours held by
// idle containers, the part of them held beyond the idle timeout, and busy containers
// stopped. The trace is generated from a seed, so every run replays the same week.
package labweek

import (
	"math/rand/v2"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
)

// Minute is the trace's resolution.
const Minute = time.Minute

// Week is the trace's length in minutes.
const Week = 7 * 24 * 60

// Container is one GPU container of the trace: the minutes it would run with no policy and
// whether it is busy in each.
type Container struct {
	User string
	Kind string
	// Start is the minute it starts; Busy[i] says whether it is busy at Start+i.
	Start int
	Busy  []bool
	// KeepAlive containers have their keep-alive file touched every morning.
	KeepAlive bool
	// Dips are minutes it is busy on the CPU only (a checkpoint written, data loaded).
	CPUOnly map[int]bool
}

// Trace is a week of containers on a node with GPUs GPUs.
type Trace struct {
	Containers []Container
	GPUs       int
}

// Generate makes a week for users users (at least 40) on gpus GPUs from seed: notebooks
// with busy bursts, short pauses and a lunch break, many left running overnight; forgotten
// containers; long trainings with brief dips; and keep-alive users.
func Generate(seed uint64, users, gpus int) Trace {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	tr := Trace{GPUs: gpus}
	for u := range users {
		user := "user" + itoa(u)
		switch {
		case u%20 == 0: // forgotten: a quick try on Monday, never removed
			start := 10*60 + r.IntN(8*60)
			c := Container{User: user, Kind: "forgotten", Start: start}
			for m := start; m < Week; m++ {
				c.Busy = append(c.Busy, m-start < 60+r.IntN(2))
			}
			tr.Containers = append(tr.Containers, c)
		case u%10 == 1: // training: a long run with dips, then left idle a while
			start := r.IntN(3 * 24 * 60)
			run := (24 + r.IntN(36)) * 60
			c := Container{User: user, Kind: "training", Start: start, CPUOnly: map[int]bool{}}
			for i := 0; i < run && start+i < Week; i++ {
				c.Busy = append(c.Busy, true)
				if i%90 == 89 { // checkpoint: 2 minutes on the CPU only
					c.CPUOnly[i], c.CPUOnly[i-1] = true, true
				}
				if i%240 == 200 { // a data-loading stall: 2 minutes idle
					c.Busy[i], c.Busy[i-1] = false, false
				}
			}
			for i := 0; i < 6*60 && start+len(c.Busy) < Week; i++ {
				c.Busy = append(c.Busy, false)
			}
			tr.Containers = append(tr.Containers, c)
		default: // notebook users, one session a weekday
			keep := u%10 == 7
			for day := range 5 {
				start := day*24*60 + 9*60 + r.IntN(150)
				c := Container{User: user, Kind: "notebook", Start: start, KeepAlive: keep}
				end := day*24*60 + 17*60 + r.IntN(150)
				overnight := r.IntN(10) < 6 // left running until the next morning
				if overnight {
					end = min(Week, (day+1)*24*60+9*60)
				}
				lunch := day*24*60 + 12*60 + r.IntN(60)
				for m := start; m < end; {
					burst := 15 + r.IntN(75)
					for i := 0; i < burst && m < end; i, m = i+1, m+1 {
						c.Busy = append(c.Busy, m < day*24*60+18*60 && !(m >= lunch && m < lunch+50))
					}
					pause := 3 + r.IntN(20)
					for i := 0; i < pause && m < end; i, m = i+1, m+1 {
						c.Busy = append(c.Busy, false)
					}
				}
				tr.Containers = append(tr.Containers, c)
			}
		}
	}
	return tr
}

func itoa(i int) string {
	if i < 10 {
		return "0" + string(rune('0'+i))
	}
	return string(rune('0'+i/10)) + string(rune('0'+i%10))
}

// Result is one way of running the week.
type Result struct {
	// IdleGPUHours: GPU-hours held by running containers that were not busy.
	IdleGPUHours float64
	// BeyondTimeoutGPUHours: the part of those held after the container had been idle
	// longer than the timeout (a fresh keep-alive file excepted: that is the user's choice).
	BeyondTimeoutGPUHours float64
	// BusyStopped counts containers stopped while busy (in the minute of the stop or the one
	// before).
	BusyStopped int
	Stopped     int
	// MaxDelay is the longest time from a container's idle deadline to its stop.
	MaxDelay time.Duration
}

// Replay runs the trace with samples every sampleEvery through rules (mode Enforce), or
// with no policy at all when sampleEvery is 0. A container's GPU is held from its start
// until it ends or is stopped.
func Replay(tr Trace, rules lifecycle.Rules, sampleEvery time.Duration) Result {
	var res Result
	epoch := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC) // a Monday
	at := func(m int) time.Time { return epoch.Add(time.Duration(m) * Minute) }
	timeout := int(rules.Idle.Timeout.Duration / Minute)
	every := int(sampleEvery / Minute)
	running := make([]int, Week+1) // GPUs held by minute, for high demand
	for _, c := range tr.Containers {
		for i := range c.Busy {
			running[c.Start+i]++
		}
	}
	for _, c := range tr.Containers {
		started := at(c.Start)
		st := lifecycle.IdleState{}
		idleRun := 0
		for i, busy := range c.Busy {
			m := c.Start + i
			if busy {
				idleRun = 0
			} else {
				idleRun++
				res.IdleGPUHours += 1.0 / 60
				if idleRun > timeout && !keptAlive(c, m) {
					res.BeyondTimeoutGPUHours += 1.0 / 60
				}
			}
			if every == 0 || m%every != 0 {
				continue
			}
			s := sampleOf(c, i, at(m))
			out := lifecycle.ObserveIdle(st, s, rules, lifecycle.Running{StartedAt: started,
				AllocatedFraction: float64(running[m]) / float64(tr.GPUs),
				KeepAlive: func() (time.Time, bool, error) {
					if !c.KeepAlive {
						return time.Time{}, false, nil
					}
					return at(lastMorning(m)), true, nil
				}})
			st = out.State
			if stopped(out) {
				res.Stopped++
				if busy || (i > 0 && c.Busy[i-1]) {
					res.BusyStopped++
				}
				for _, n := range out.Notices {
					if n.Kind == lifecycle.IdleStop {
						res.MaxDelay = max(res.MaxDelay, at(m).Sub(n.Deadline))
					}
				}
				break
			}
		}
	}
	return res
}

func stopped(r lifecycle.IdleResult) bool {
	for _, n := range r.Notices {
		if n.Kind == lifecycle.IdleStop {
			return true
		}
	}
	return false
}

// lastMorning is the last 08:00 at or before minute m, when keep-alive users touch their file.
func lastMorning(m int) int {
	day := m / (24 * 60)
	t := day*24*60 + 8*60
	if t > m {
		t -= 24 * 60
	}
	return t
}

// keptAlive reports whether a fresh keep-alive file (within 24 h) covers minute m.
func keptAlive(c Container, m int) bool { return c.KeepAlive && m-lastMorning(m) < 24*60 }

// sampleOf is what a sample sees of the container at its i-th minute.
func sampleOf(c Container, i int, t time.Time) lifecycle.Sample {
	s := lifecycle.Sample{Time: t, GPUKnown: true, HasRates: i > 0, CPUPercent: 0.5, NetworkBytesPerSecond: 200}
	switch {
	case c.CPUOnly[i]:
		s.CPUPercent = 100
	case c.Busy[i]:
		s.GPUPercent, s.CPUPercent = 85, 120
	}
	return s
}

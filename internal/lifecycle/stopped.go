// Package lifecycle decides what is due to a container over time, as its effective
// ContainerPolicy says. It is pure: the container's state, the policy and the time in; the
// actions due now and when to look again out.
package lifecycle

import (
	"fmt"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// Action is something due to a container. Its value is the one vocabulary of actions in
// metrics (gpuwarden_lifecycle_actions_total{action}) and records, whatever the mode.
type Action string

// Actions.
const (
	// ReleaseGPUs gives a stopped container's GPUs back.
	ReleaseGPUs Action = "release"
	// Remove removes the container.
	Remove Action = "remove"
	// Stop stops a running container.
	Stop Action = "stop"
)

// Reasons, as the audit log records them (DS01's names where it had one).
const (
	ReasonCreatedNeverStarted = "created_never_started"
	ReasonHoldExpired         = "hold_expired"
	ReasonStopped             = "stopped_too_long"
)

// Due is one action due now.
type Due struct {
	Action Action
	Reason string
	// Message says why for people, naming the limit and the policy that set it.
	Message string
	// Policy is the ContainerPolicy that set the limit.
	Policy string
}

// Container is what the rules read of a container, whatever engine runs it.
type Container struct {
	// NeverStarted is true for one created and never started.
	NeverStarted bool
	// Stopped is true for one that exited or died.
	Stopped bool
	// Created and FinishedAt are when it was created and when it last stopped.
	Created, FinishedAt time.Time
	// HoldsGPUs is true while a Bound allocation gives it devices.
	HoldsGPUs bool
	// Protected containers are never removed.
	Protected bool
}

// Policy field paths of the limits read here.
const (
	pathHold    = "gpuHoldAfterStop"
	pathRemove  = "removeAfterStop"
	pathCreated = "createdNeverStartedTimeout"
)

// NotRunning returns what is due to a container that is not running: removal of one created
// and never started once createdNeverStartedTimeout has passed; for a stopped one, release of
// its GPUs (if it holds any) after gpuHoldAfterStop and removal after removeAfterStop.
// Protected containers are never removed. next is how long until the next limit falls due
// (0: none will).
func NotRunning(c Container, p resolve.Policy, now time.Time) (due []Due, next time.Duration) {
	wait := func(d time.Duration) {
		if d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	check := func(path string, since time.Time, action Action, reason, what string) {
		l := p.Duration(path)
		if !l.Applies() {
			return
		}
		elapsed := now.Sub(since)
		if elapsed < l.Duration {
			wait(l.Duration - elapsed)
			return
		}
		due = append(due, Due{Action: action, Reason: reason, Policy: l.From,
			Message: fmt.Sprintf("%s %s; %s is %s (%s)", what, round(elapsed), path, l.Duration, l.From)})
	}
	switch {
	case c.NeverStarted:
		if !c.Protected && !c.Created.IsZero() {
			check(pathCreated, c.Created, Remove, ReasonCreatedNeverStarted, "created and never started for")
		}
	case c.Stopped && !c.FinishedAt.IsZero():
		if c.HoldsGPUs {
			check(pathHold, c.FinishedAt, ReleaseGPUs, ReasonHoldExpired, "stopped for")
		}
		if !c.Protected {
			check(pathRemove, c.FinishedAt, Remove, ReasonStopped, "stopped for")
		}
	}
	return due, next
}

func round(d time.Duration) time.Duration {
	if d > time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// Coming is an action on a container that is scheduled but not due yet.
type Coming struct {
	Action Action
	// At is when it falls due.
	At time.Time
	// Limit is the policy limit that schedules it, and Policy the ContainerPolicy that set it.
	Limit  string
	Policy string
}

// Upcoming returns what NotRunning will find due later, and when: so that the owner hears of
// an irreversible action (a removal, a release of held GPUs) before it happens. Actions
// already due are not in it.
func Upcoming(c Container, p resolve.Policy, now time.Time) []Coming {
	var out []Coming
	add := func(path string, since time.Time, action Action) {
		if l := p.Duration(path); l.Applies() && now.Sub(since) < l.Duration {
			out = append(out, Coming{Action: action, At: since.Add(l.Duration), Limit: path, Policy: l.From})
		}
	}
	switch {
	case c.NeverStarted:
		if !c.Protected && !c.Created.IsZero() {
			add(pathCreated, c.Created, Remove)
		}
	case c.Stopped && !c.FinishedAt.IsZero():
		if c.HoldsGPUs {
			add(pathHold, c.FinishedAt, ReleaseGPUs)
		}
		if !c.Protected {
			add(pathRemove, c.FinishedAt, Remove)
		}
	}
	return out
}

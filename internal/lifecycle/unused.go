package lifecycle

import (
	"fmt"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// ReasonUnused is the release reason, as records name it, of a user's own allocation that
// no container used within releaseUnusedAfter.
const ReasonUnused = "unused"

// DefaultReleaseUnusedAfter is how long a user's own allocation may stay Bound without a
// container where no policy sets releaseUnusedAfter: a reservation nobody uses does not
// hold a GPU for ever.
const DefaultReleaseUnusedAfter = time.Hour

// pathUnused is the policy field read here.
const pathUnused = "releaseUnusedAfter"

// DefaultFrom names where the limit comes from when no policy sets it.
const DefaultFrom = "gpuwarden's default"

// UnusedLimit is the effective releaseUnusedAfter: the policy's, its default when no policy
// sets it (From DefaultFrom), or Unlimited when a policy lifts it.
func UnusedLimit(p resolve.Policy) resolve.Limit {
	l := p.Duration(pathUnused)
	if !l.Set {
		return resolve.Limit{Duration: DefaultReleaseUnusedAfter, Set: true, From: DefaultFrom}
	}
	return l
}

// Unused returns the release due to an allocation Bound at bound and used by no container
// since, once releaseUnusedAfter has passed; else, in next, how long until it falls due (0:
// never, the limit is lifted), and in coming when.
func Unused(bound time.Time, p resolve.Policy, now time.Time) (due *Due, coming *Coming, next time.Duration) {
	l := UnusedLimit(p)
	if !l.Applies() || bound.IsZero() {
		return nil, nil, 0
	}
	elapsed := now.Sub(bound)
	if elapsed < l.Duration {
		return nil, &Coming{Action: ReleaseGPUs, At: bound.Add(l.Duration), Limit: pathUnused, Policy: l.From}, l.Duration - elapsed
	}
	return &Due{Action: ReleaseGPUs, Reason: ReasonUnused, Policy: l.From,
		Message: fmt.Sprintf("no container used it in the %s since it was bound; %s is %s (%s)", round(elapsed), pathUnused, l.Duration, l.From)}, nil, 0
}

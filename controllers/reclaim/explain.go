package reclaim

// `gpuwarden explain container C`: the node's controller explains a container from what
// it has sampled, served beside /metrics at ExplainPath.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// ExplainPath serves the explanation of the container named by ?name= (a name or an ID
// prefix), as plain text.
const ExplainPath = "/explain/container"

// Explainer answers ExplainPath.
type Explainer struct {
	// Reclaim has the containers' last samples.
	Reclaim *Reclaimer
	Store   *containerstore.Store
	Owners  *containerstore.Owners
	// Actions resolve the policy of a container not sampled yet, and remember the stops.
	Actions *actions.Actions
	// Client reads the allocation a stopped container holds.
	Client   client.Reader
	Interval time.Duration
}

func (e *Explainer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	name := strings.TrimPrefix(req.URL.Query().Get("name"), "/")
	if name == "" {
		http.Error(w, "name a container: ?name=NAME or an ID prefix", http.StatusBadRequest)
		return
	}
	c, err := e.find(name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	e.explain(req.Context(), w, c)
}

func (e *Explainer) find(name string) (docker.Container, error) {
	if !e.Store.Synced() {
		return docker.Container{}, fmt.Errorf("the Docker engine is not reachable now; containers cannot be looked up")
	}
	var matches []docker.Container
	for _, c := range e.Store.All() {
		if strings.TrimPrefix(c.Name, "/") == name || c.ID == name {
			return c, nil
		}
		if len(name) >= 4 && strings.HasPrefix(c.ID, name) {
			matches = append(matches, c)
		}
	}
	switch len(matches) {
	case 0:
		return docker.Container{}, fmt.Errorf("no container %q on this node", name)
	case 1:
		return matches[0], nil
	}
	return docker.Container{}, fmt.Errorf("%q matches %d containers; give more of the ID", name, len(matches))
}

func (e *Explainer) explain(ctx context.Context, w io.Writer, c docker.Container) {
	obs, sampled := e.Reclaim.observed(c.ID)
	owner := e.Owners.Of(c)
	policy := obs.Policy
	if !sampled {
		p, err := e.Actions.Policy(ctx, c, owner)
		if err != nil {
			fmt.Fprintf(w, "Reading the container's policy: %v\n", err)
			return
		}
		policy = p
	}
	fmt.Fprintf(w, "Container %s (%s) of %s, type %s, %s", message.ContainerName(c), docker.ShortID(c.ID), containerstore.OwnerOrUnknown(owner), labels.ContainerType(c.Labels), c.State)
	if c.State == docker.StateRunning && !c.StartedAt.IsZero() {
		fmt.Fprintf(w, " since %s", c.StartedAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	if labels.TypeClaimed(c.Labels) {
		explainClaim(w, c.Labels, policy)
	}
	fmt.Fprintf(w, "\nEffective policy, merged from %s\n", listOr(policy.Matched, "no ContainerPolicy (nothing applies)"))
	_ = policy.WriteTable(w)
	fmt.Fprintln(w)
	switch {
	case labels.IsProtected(c.Labels):
		fmt.Fprintln(w, "Never idle- or runtime-stopped: the container is labelled protected.")
		return
	case c.State != docker.StateRunning:
		e.explainNotRunning(ctx, w, c, policy)
		return
	case !sampled:
		fmt.Fprintf(w, "Not sampled: it holds no GPU through a Bound allocation (or has not been sampled yet; samples come every %s). Containers that hold no GPU are never idle- or runtime-stopped.\n", e.Interval)
		return
	}
	e.explainSamples(w, obs)
}

func (e *Explainer) explainSamples(w io.Writer, obs observation) {
	rules := obs.Rules
	fmt.Fprintf(w, "Last samples (every %s):\n", e.Interval)
	for _, s := range obs.Samples {
		v, signals := lifecycle.Judge(s, rules.Idle)
		if lifecycle.InStartupGrace(rules.Idle, obs.Container.StartedAt, s.Time) {
			v = lifecycle.InGrace
		}
		fmt.Fprintf(w, "  %s  %-7s %s\n", s.Time.UTC().Format("15:04:05"), v, lifecycle.Describe(signals))
		for _, sig := range signals {
			if sig.Active() {
				fmt.Fprintf(w, "           %s is at or above its threshold: the container is busy\n", sig.Name)
			}
		}
	}
	res := obs.Last
	fmt.Fprintln(w)
	timeout := rules.Idle.Timeout
	switch {
	case timeout.Unlimited:
		fmt.Fprintf(w, "Idle: never stopped for idling: %s lifts the idle timeout.\n", timeout.From)
	case !timeout.Applies():
		fmt.Fprintln(w, "Idle: never stopped for idling: no policy sets idle.timeout.")
	case res.Verdict == lifecycle.InGrace:
		fmt.Fprintf(w, "Idle: in its start-up grace of %s until %s; nothing is counted before.\n", rules.Idle.StartupGrace,
			obs.Container.StartedAt.Add(rules.Idle.StartupGrace).UTC().Format(time.RFC3339))
	case res.State.Since.IsZero():
		fmt.Fprintf(w, "Idle: active now; if it goes idle, it needs %d idle samples in a row, then %s of idling (%s%s) before a stop.\n",
			max(rules.Idle.Consecutive, 1), timeout.Duration, timeout.From, overrideNote(obs.Policy, "idle.timeout"))
	case !res.Counting(rules.Idle):
		fmt.Fprintf(w, "Idle: %d of %d idle samples in a row since %s; the idle time counts once there are %d.\n",
			res.State.Samples, max(rules.Idle.Consecutive, 1), res.State.Since.UTC().Format(time.RFC3339), max(rules.Idle.Consecutive, 1))
	default:
		fmt.Fprintf(w, "Idle: idle since %s, for %s; timeout %s (%s%s)", res.State.Since.UTC().Format(time.RFC3339), res.IdleFor.Round(time.Second), res.Timeout, timeout.From,
			overrideNote(obs.Policy, "idle.timeout"))
		if res.HighDemand {
			fmt.Fprintf(w, ", shortened from %s: %.0f%% of the node's GPU capacity is allocated", timeout.Duration, obs.Demand*100)
		}
		fmt.Fprintln(w, ".")
		for _, f := range rules.Idle.WarnAt {
			if f >= 1 {
				continue
			}
			at, sent := res.WarningAt(f)
			state := "due at " + at.UTC().Format(time.RFC3339)
			if sent {
				state = "sent, for the stop at " + res.StopAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(w, "  warning at %.0f%%: %s\n", f*100, state)
		}
		switch {
		case res.Unread != nil:
			fmt.Fprintf(w, "  held: the keep-alive file %s could not be read (%v); the warning or stop that is due waits for a sample that reads it\n", rules.Idle.KeepAlivePath, res.Unread)
		case res.Unjudged:
			fmt.Fprintln(w, "  held: the last sample could not be judged (a signal could not be read); the warning or stop that is due waits for a sample that can be")
		}
		switch {
		case !res.KeepAliveUntil.IsZero():
			fmt.Fprintf(w, "  stop: postponed by the keep-alive file %s (touched at %s) until %s; no warning names an earlier stop\n", rules.Idle.KeepAlivePath,
				res.KeepAliveTouched.UTC().Format(time.RFC3339), res.KeepAliveUntil.UTC().Format(time.RFC3339))
		case rules.Mode != gpuwardenv1alpha1.ModeEnforce:
			fmt.Fprintf(w, "  stop: due at %s, but mode %s never stops (it records what it would do)\n", res.StopAt.UTC().Format(time.RFC3339), rules.Mode)
		case rules.Idle.KeepAlivePath != "":
			fmt.Fprintf(w, "  stop: at %s unless it becomes busy or its keep-alive file %s, read once a warning may be due, postpones it\n", res.StopAt.UTC().Format(time.RFC3339), rules.Idle.KeepAlivePath)
		default:
			fmt.Fprintf(w, "  stop: at %s unless it becomes busy\n", res.StopAt.UTC().Format(time.RFC3339))
		}
	}
	limit := rules.Runtime.Max
	switch {
	case limit.Unlimited:
		fmt.Fprintf(w, "Runtime: no maximum: %s lifts it.\n", limit.From)
	case !limit.Applies():
		fmt.Fprintln(w, "Runtime: no maximum: no policy sets maxRuntime.")
	default:
		fmt.Fprintf(w, "Runtime: since %s (the binding or the first start, whichever was earlier); maximum %s (%s%s): stop at %s",
			obs.Runtime.UTC().Format(time.RFC3339), limit.Duration, limit.From, overrideNote(obs.Policy, "maxRuntime"), obs.Runtime.Add(limit.Duration).UTC().Format(time.RFC3339))
		if rules.Mode != gpuwardenv1alpha1.ModeEnforce {
			fmt.Fprintf(w, " (mode %s: not stopped)", rules.Mode)
		}
		fmt.Fprintln(w)
	}
}

// overrideNote says whose exemption the value at path overrides; empty when none.
func overrideNote(p resolve.Policy, path string) string {
	for _, o := range p.Overridden {
		if o.Path == path {
			return fmt.Sprintf(", which overrides the exemption %s gives (unlimited: [%s])", o.Exempt, o.Limit)
		}
	}
	return ""
}

func listOr(names []string, none string) string {
	if len(names) == 0 {
		return none
	}
	return "ContainerPolicy " + strings.Join(names, ", ")
}

// explainClaim says that the container's type is its owner's claim, and what that gives.
func explainClaim(w io.Writer, l map[string]string, policy resolve.Policy) {
	by := labels.TypeLabel(l)
	if by == "" {
		by = "its owner's labels"
	} else {
		by = "label " + by
	}
	fmt.Fprintf(w, "The type %s was claimed by %s on a create through the Docker gateway (%s=true): ", labels.ContainerType(l), by, gpuwardenv1alpha1.LabelTypeClaimed)
	if len(policy.TrustClaim) == 0 {
		fmt.Fprintf(w, "every policy treats the container as %s, so it gets %s containers' limits.\n", resolve.ClaimedTypeSeenAs, resolve.ClaimedTypeSeenAs)
		return
	}
	fmt.Fprintf(w, "ContainerPolicy %s grants claimed %s containers their limits; every other policy treats it as %s.\n",
		strings.Join(policy.TrustClaim, ", "), labels.ContainerType(l), resolve.ClaimedTypeSeenAs)
}

// explainNotRunning says what stopped a container that does not run, when, and what is
// scheduled for it (its GPUs given back, its removal) and when.
func (e *Explainer) explainNotRunning(ctx context.Context, w io.Writer, c docker.Container, policy resolve.Policy) {
	switch stop, ok := e.Actions.LastStop(c.ID); {
	case ok:
		fmt.Fprintf(w, "Stopped by gpuwarden at %s: %s\n", stop.At.UTC().Format(time.RFC3339), stop.Reason)
	case c.NeverStarted():
		fmt.Fprintln(w, "Created and never started.")
	default:
		fmt.Fprintf(w, "Stopped at %s, not by gpuwarden since it last started (as far as this controller has run); `gpuwarden events --container %s` shows every record of it.\n",
			c.FinishedAt.UTC().Format(time.RFC3339), message.ContainerName(c))
	}
	held := e.holds(ctx, c)
	now := e.Actions.Clock.Now()
	coming := lifecycle.Upcoming(lifecycle.Container{NeverStarted: c.NeverStarted(), Stopped: c.State.Stopped(), Created: c.Created,
		FinishedAt: c.FinishedAt, HoldsGPUs: held != nil, Protected: labels.IsProtected(c.Labels)}, policy, now)
	if held != nil {
		if hold := policy.Duration("gpuHoldAfterStop"); hold.Applies() && !c.FinishedAt.IsZero() && now.Sub(c.FinishedAt) >= hold.Duration {
			fmt.Fprintf(w, "Its GPU hold (%s) has passed: allocation %s gives its GPUs back.\n", hold.Duration, held.Name)
		}
	}
	for _, k := range coming {
		what := map[lifecycle.Action]string{lifecycle.Remove: "It will be removed", lifecycle.ReleaseGPUs: "Its GPUs go back"}[k.Action]
		fmt.Fprintf(w, "%s at %s (%s, set by %s).\n", what, k.At.UTC().Format(time.RFC3339), k.Limit, k.Policy)
	}
	if len(coming) == 0 && !labels.IsProtected(c.Labels) && !policy.Duration("removeAfterStop").Applies() {
		fmt.Fprintln(w, "No removal is scheduled: its policy sets no removeAfterStop.")
	}
}

// holds is the Bound allocation attached to the container, if any.
func (e *Explainer) holds(ctx context.Context, c docker.Container) *gpuwardenv1alpha1.GPUAllocation {
	if e.Client == nil {
		return nil
	}
	var list gpuwardenv1alpha1.GPUAllocationList
	if err := e.Client.List(ctx, &list); err != nil {
		return nil
	}
	for i := range list.Items {
		a := &list.Items[i]
		if a.Status.ContainerID == c.ID && a.Status.Phase == gpuwardenv1alpha1.PhaseBound && allocation.Live(a) {
			return a
		}
	}
	return nil
}

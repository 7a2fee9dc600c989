package resolve

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// Unlimited is the value of a time limit that a policy lifts explicitly.
const Unlimited = "unlimited"

// Container is what a container policy is selected by.
type Container struct {
	User   string
	Groups []string
	Type   gpuwardenv1alpha1.ContainerType
	Labels map[string]string
	// Claimed says Type is one the owner claimed by label on a create through the gateway
	// (gpuwarden.io/type-claimed): see PolicyMatches.
	Claimed bool
}

// ClaimedTypeSeenAs is the type a policy sees a container of a claimed type as, unless
// its selector names gpuwarden.io/type-claimed: the type of a create that claims none, so
// that a label its owner chose lifts no limit beyond what every container gets.
const ClaimedTypeSeenAs = gpuwardenv1alpha1.ContainerTypeDocker

// TrustsClaimedType reports whether p takes a claimed container type at its word: its
// selector.labels ask for gpuwarden.io/type-claimed "true", so the admin wrote it for
// containers whose type their owners claimed.
func TrustsClaimedType(p *gpuwardenv1alpha1.ContainerPolicy) bool {
	v, ok := p.Spec.Selector.Labels[gpuwardenv1alpha1.LabelTypeClaimed]
	return ok && v == "true"
}

// TypeFor is the container type p selects c by: c's own, or ClaimedTypeSeenAs when c's
// type is claimed and p does not trust claims.
func TypeFor(p *gpuwardenv1alpha1.ContainerPolicy, c Container) gpuwardenv1alpha1.ContainerType {
	if c.Claimed && !TrustsClaimedType(p) {
		return ClaimedTypeSeenAs
	}
	return c.Type
}

// PolicyValue is one effective field of a container policy and the policy that set it.
type PolicyValue struct {
	// Path is the field's dotted path, e.g. idle.timeout.
	Path string
	// Value is the field's value as JSON decodes it, or Unlimited.
	Value any
	// From names the policy, e.g. ContainerPolicy students.
	From string
}

// Policy is a container's effective policy: every field set by some matching policy.
type Policy struct {
	Values map[string]PolicyValue
	// Lifted are the values an `unlimited` replaced, by path: what would apply without the
	// exemption.
	Lifted map[string]PolicyValue
	// Matched are the policies that apply, in merge order; Expired those skipped for
	// expiry; Unusable those skipped because a stored value cannot be read (PolicyProblem).
	Matched, Expired, Unusable []string
	// TrustClaim are the matched policies that took a claimed container type at its word
	// (TrustsClaimedType); every other policy saw the container as ClaimedTypeSeenAs.
	TrustClaim []string
	// Overridden are the exemptions (spec.unlimited) of matched policies that a policy
	// merged after them cancels by setting the limit again, by path.
	Overridden []Override
}

// Override is an exemption of one policy that a policy merged after it (of higher
// precedence, or of the same precedence and a later name) cancels by setting the limit.
type Override struct {
	// Limit is the limit as spec.unlimited names it; Path its field, e.g. idle.timeout.
	Limit gpuwardenv1alpha1.PolicyLimitName
	Path  string
	// Exempt names the policy whose exemption does not hold, e.g. ContainerPolicy
	// devcontainers; By the policy whose value applies instead, and Value that value.
	Exempt, By string
	Value      any
}

// String says it for people.
func (o Override) String() string {
	return fmt.Sprintf("%s lifts %s (unlimited), but %s, merged after it, sets %s to %s: the exemption does not hold",
		o.Exempt, o.Limit, o.By, o.Path, FormatValue(o.Value))
}

// Get returns a field's value, and whether any policy set it.
func (p Policy) Get(path string) (any, bool) {
	v, ok := p.Values[path]
	return v.Value, ok
}

// Sorted returns the values ordered by path.
func (p Policy) Sorted() []PolicyValue {
	out := slices.Collect(maps.Values(p.Values))
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// LimitPath is the field a name usable in spec.unlimited lifts, e.g. idle.timeout.
func LimitPath(name gpuwardenv1alpha1.PolicyLimitName) string { return unlimitedPaths[name] }

// limitNamed is the name in spec.unlimited of the field at path; "" for a field no
// exemption lifts.
func limitNamed(path string) gpuwardenv1alpha1.PolicyLimitName {
	for name, p := range unlimitedPaths {
		if p == path {
			return name
		}
	}
	return ""
}

// unlimitedPaths maps the names usable in spec.unlimited to the fields they lift.
var unlimitedPaths = map[gpuwardenv1alpha1.PolicyLimitName]string{
	gpuwardenv1alpha1.PolicyLimitIdleTimeout:                "idle.timeout",
	gpuwardenv1alpha1.PolicyLimitMaxRuntime:                 "maxRuntime",
	gpuwardenv1alpha1.PolicyLimitGPUHoldAfterStop:           "gpuHoldAfterStop",
	gpuwardenv1alpha1.PolicyLimitRemoveAfterStop:            "removeAfterStop",
	gpuwardenv1alpha1.PolicyLimitCreatedNeverStartedTimeout: "createdNeverStartedTimeout",
	gpuwardenv1alpha1.PolicyLimitReleaseUnusedAfter:         "releaseUnusedAfter",
}

// PolicyMatches reports whether p's selector selects c: every list that is set must
// match, and an empty selector selects every container. A type c's owner claimed by label
// (c.Claimed) is matched as ClaimedTypeSeenAs unless p trusts claims (TrustsClaimedType).
func PolicyMatches(p *gpuwardenv1alpha1.ContainerPolicy, c Container) bool {
	s := p.Spec.Selector
	switch {
	case len(s.Users) > 0 && !slices.Contains(s.Users, c.User):
		return false
	case len(s.Groups) > 0 && !slices.ContainsFunc(s.Groups, func(g string) bool { return slices.Contains(c.Groups, g) }):
		return false
	case len(s.ContainerTypes) > 0 && !slices.Contains(s.ContainerTypes, TypeFor(p, c)):
		return false
	}
	for k, v := range s.Labels {
		if c.Labels[k] != v {
			return false
		}
	}
	return true
}

// EffectivePolicy merges the policies that select c and have not expired at now, field by
// field in ascending precedence.
func EffectivePolicy(policies []gpuwardenv1alpha1.ContainerPolicy, c Container, now time.Time) (Policy, error) {
	out := Policy{Values: map[string]PolicyValue{}, Lifted: map[string]PolicyValue{}}
	var matched []*gpuwardenv1alpha1.ContainerPolicy
	for i := range policies {
		p := &policies[i]
		if !PolicyMatches(p, c) {
			continue
		}
		if PolicyProblem(p) != nil {
			out.Unusable = append(out.Unusable, p.Name)
			continue
		}
		if p.Spec.Expires != nil && !now.Before(p.Spec.Expires.Time) {
			out.Expired = append(out.Expired, p.Name)
			continue
		}
		matched = append(matched, p)
	}
	byPrecedence(matched, func(p *gpuwardenv1alpha1.ContainerPolicy) int32 { return p.Spec.Precedence }, func(p *gpuwardenv1alpha1.ContainerPolicy) string { return p.Name })
	overridden := map[string]Override{} // by path
	for _, p := range matched {
		from := policyFrom + p.Name
		out.Matched = append(out.Matched, p.Name)
		if c.Claimed && TrustsClaimedType(p) {
			out.TrustClaim = append(out.TrustClaim, p.Name)
		}
		spec := p.Spec.DeepCopy()
		// These say where and when the policy applies, not what it sets.
		spec.Selector, spec.Precedence, spec.Expires, spec.Unlimited = gpuwardenv1alpha1.PolicySelector{}, 0, nil, nil
		data, err := json.Marshal(spec)
		if err != nil {
			return Policy{}, fmt.Errorf("reading ContainerPolicy %s: %w", p.Name, err)
		}
		var fields map[string]any
		if err := json.Unmarshal(data, &fields); err != nil {
			return Policy{}, fmt.Errorf("reading ContainerPolicy %s: %w", p.Name, err)
		}
		delete(fields, "selector")
		delete(fields, "precedence")
		flatten("", fields, func(path string, v any) {
			if prev, ok := out.Values[path]; ok && prev.Value == Unlimited {
				overridden[path] = Override{Limit: limitNamed(path), Path: path, Exempt: prev.From}
			}
			out.Values[path] = PolicyValue{Path: path, Value: v, From: from}
			delete(out.Lifted, path) // set again above the exemption
		})
		for _, f := range durationFields(&p.Spec) {
			// Shown in Go's own form (30m0s), whatever form the admin wrote.
			d, _ := ParseDuration(*f.value)
			out.Values[f.path] = PolicyValue{Path: f.path, Value: d.String(), From: from}
		}
		for _, name := range p.Spec.Unlimited {
			path := unlimitedPaths[name]
			if prev, ok := out.Values[path]; ok && prev.Value != Unlimited {
				out.Lifted[path] = prev
			}
			out.Values[path] = PolicyValue{Path: path, Value: Unlimited, From: from}
			delete(overridden, path) // lifted again above the override
		}
	}
	for path, o := range overridden {
		o.By, o.Value = out.Values[path].From, out.Values[path].Value
		out.Overridden = append(out.Overridden, o)
	}
	sort.Slice(out.Overridden, func(i, j int) bool { return out.Overridden[i].Path < out.Overridden[j].Path })
	return out, nil
}

// flatten calls fn for every leaf of a decoded JSON object; lists are leaves (they replace,
// never merge).
func flatten(prefix string, m map[string]any, fn func(string, any)) {
	for k, v := range m {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok && !strings.EqualFold(k, "labels") {
			flatten(path, sub, fn)
			continue
		}
		fn(path, v)
	}
}

// Limit is an effective time limit: Set false when no policy sets it (no limit applies);
// Unlimited when a policy lifts it explicitly.
type Limit struct {
	Duration  time.Duration
	Set       bool
	Unlimited bool
	// From names the policy that set it.
	From string
}

// Applies reports whether the limit is in force.
func (l Limit) Applies() bool { return l.Set && !l.Unlimited }

// Duration returns a time-limit field, e.g. gpuHoldAfterStop or idle.timeout.
func (p Policy) Duration(path string) Limit { return durationOf(p.Values, path) }

// LiftedDuration returns the time limit an `unlimited` replaced; Set false when none did.
func (p Policy) LiftedDuration(path string) Limit { return durationOf(p.Lifted, path) }

func durationOf(values map[string]PolicyValue, path string) Limit {
	v, ok := values[path]
	if !ok {
		return Limit{}
	}
	l := Limit{Set: true, From: v.From}
	s, _ := v.Value.(string)
	if s == Unlimited {
		l.Unlimited = true
		return l
	}
	d, err := ParseDuration(gpuwardenv1alpha1.Duration(s))
	if err != nil {
		// EffectivePolicy skips policies with unreadable durations: this is not reached.
		return Limit{}
	}
	l.Duration = d
	return l
}

// Mode is the policy's mode (spec.mode): Enforce unless a policy says otherwise.
func (p Policy) Mode() gpuwardenv1alpha1.PolicyMode {
	return gpuwardenv1alpha1.PolicyMode(p.String("mode", string(gpuwardenv1alpha1.ModeEnforce)))
}

// String returns a string field, or def when no policy sets it.
func (p Policy) String(path, def string) string {
	if s, ok := p.Values[path].Value.(string); ok && s != "" {
		return s
	}
	return def
}

// FormatValue shows a policy value for people: lists joined by commas, numbers in full
// (1048576, not 1.048576e+06).
func FormatValue(v any) string {
	switch v := v.(type) {
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = FormatValue(x)
		}
		return strings.Join(parts, ", ")
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// WriteTable writes the policies skipped (unusable, expired) and a FIELD VALUE FROM table of
// the effective values, for people.
func (p Policy) WriteTable(w io.Writer) error {
	if len(p.Unusable) > 0 {
		fmt.Fprintf(w, "  (skipped, a stored value cannot be read; see their Accepted condition: %s)\n", strings.Join(p.Unusable, ", "))
	}
	if len(p.Expired) > 0 {
		fmt.Fprintf(w, "  (expired, no longer applied: %s)\n", strings.Join(p.Expired, ", "))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FIELD\tVALUE\tFROM")
	for _, v := range p.Sorted() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Path, FormatValue(v.Value), v.From)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, o := range p.Overridden {
		if _, err := fmt.Fprintf(w, "  Exemption overridden: %s.\n", o); err != nil {
			return err
		}
	}
	return nil
}

// Quantity returns a quantity field, e.g. resources.memory, and the policy that set it; ok
// is false when no policy sets it (or its stored value is not a quantity).
func (p Policy) Quantity(path string) (q resource.Quantity, from string, ok bool) {
	v, set := p.Values[path]
	if !set {
		return q, "", false
	}
	switch x := v.Value.(type) {
	case string:
		parsed, err := resource.ParseQuantity(x)
		if err != nil {
			return q, "", false
		}
		return parsed, v.From, true
	case float64:
		return *resource.NewMilliQuantity(int64(x*1000), resource.DecimalSI), v.From, true
	}
	return q, "", false
}

// Int returns an integer field, e.g. resources.pidsLimit, and the policy that set it.
func (p Policy) Int(path string) (n int64, from string, ok bool) {
	v, set := p.Values[path]
	if x, isNum := v.Value.(float64); set && isNum {
		return int64(x), v.From, true
	}
	return 0, "", false
}

// policyFrom prefixes the name of the ContainerPolicy a value comes from.
const policyFrom = "ContainerPolicy "

// PolicyName is the name of the ContainerPolicy a value comes from ("ContainerPolicy x"
// is x); "" for a default.
func PolicyName(from string) string { return strings.TrimPrefix(from, policyFrom) }

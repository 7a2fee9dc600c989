package ds01

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// Precedences of what Convert writes: a user's override above every group, a type's
// lifecycle above the groups' (DS01 takes external containers' timeouts from their type),
// exemptions above all; among groups, DS01 takes the first group listing a user.
const (
	precedenceBase      = 0
	precedenceGroups    = 10
	precedenceTypes     = 1000
	precedenceOverrides = 2000
	precedenceExempt    = 3000
)

// keepAlivePath is where DS01's .keep-alive file lives in a container.
const keepAlivePath = "/workspace/.keep-alive"

// Result is the manifests and what could not be carried over.
type Result struct {
	Objects  []client.Object
	Warnings []string
}

type warnings struct{ list []string }

func (w *warnings) add(key, format string, args ...any) {
	w.list = append(w.list, key+": "+fmt.Sprintf(format, args...))
}

func notCarriedSection(k string) string {
	switch k {
	case "enforcement":
		return "per-user systemd slices are not gpuwarden's; quotas are enforced by allocation"
	case "gpu_allocation":
		return "MIG layout and allocation strategy come from the GPUs themselves"
	case "monitoring":
		return "label infrastructure containers gpuwarden.io/protected=true instead (ds01.protected is recognised)"
	case "bare_metal_access":
		return "host GPU processes are reported as unmanaged GPU use; there are no grants"
	case "access_control":
		return "admins are --gateway-admin-group (default gpuwarden-admin) and root"
	}
	return "gpuwarden has no such section"
}

// Convert reads DS01's files and returns equivalent GPUQuotas and ContainerPolicies.
func Convert(src Sources, now time.Time) (Result, error) {
	w := &warnings{}
	c, err := read(src, w)
	if err != nil {
		return Result{}, err
	}
	var defaultGroup values
	for _, g := range c.groups {
		if g.name == c.defaultGroup {
			defaultGroup = g.values
		}
	}
	if c.defaultGroup != "" && defaultGroup == nil {
		w.add("default_group", "group %q is not defined under groups:; users in no group get the defaults alone", c.defaultGroup)
	}
	// What cannot be carried over is said once, where the key is written; the merged blocks
	// below repeat keys, so their words go nowhere.
	lint := func(where string, v, pol values, takes map[string]bool) {
		quota("lint", nil, 0, v, w, where)
		policy("lint", gpuwardenv1alpha1.PolicySelector{}, 0, v, pol, takes, w, where)
	}
	everything := union(allTypes, managedOnly)
	lint("defaults", c.defaults, nil, everything)
	lint("", nil, c.policies, nil)
	for _, g := range c.groups {
		lint("groups."+g.name, g.values, block(g.values["policies"]), everything)
	}
	for _, t := range slices.Sorted(maps.Keys(c.types)) {
		lint("container_types."+t, c.types[t], nil, typeKeys)
	}
	for _, u := range slices.Sorted(maps.Keys(c.overrides)) {
		lint("user_overrides."+u, c.overrides[u], block(c.overrides[u]["policies"]), everything)
	}
	quiet := &warnings{}
	var out []client.Object
	base := merged(c.defaults, defaultGroup)
	out = append(out, quota("ds01-defaults", []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectEveryone}}, precedenceBase, base, quiet, "defaults"))
	// The defaults' timeouts apply to every type container_types does not name.
	out = append(out, policy("ds01-defaults", gpuwardenv1alpha1.PolicySelector{}, precedenceBase, base, c.policies, everything, quiet, "defaults"))
	for i, g := range c.groups {
		sel, subjects := groupSelector(g, src.Groups != "", w)
		if subjects == nil {
			continue
		}
		prec := int32(precedenceGroups + len(c.groups) - i)
		v := merged(c.defaults, g.values)
		name := "ds01-group-" + dnsName(g.name)
		out = append(out, quota(name, subjects, prec, v, quiet, "groups."+g.name))
		out = append(out, policy(name, sel, prec, v, merged(c.policies, block(g.values["policies"])), allTypes, quiet, "groups."+g.name))
		managed := sel
		managed.ContainerTypes = []gpuwardenv1alpha1.ContainerType{gpuwardenv1alpha1.ContainerTypeManaged}
		out = append(out, policy(name+"-managed", managed, prec, v, nil, managedOnly, quiet, "groups."+g.name))
	}
	for _, t := range slices.Sorted(maps.Keys(c.types)) {
		ct, ok := containerType(t)
		if !ok {
			w.add("container_types."+t, "gpuwarden has no container type %q (ds01-jobs containers are managed ones here); not carried over", t)
			continue
		}
		sel := gpuwardenv1alpha1.PolicySelector{ContainerTypes: []gpuwardenv1alpha1.ContainerType{ct}}
		out = append(out, policy("ds01-type-"+t, sel, precedenceTypes, c.types[t], nil, typeKeys, quiet, "container_types."+t))
	}
	for _, u := range slices.Sorted(maps.Keys(c.overrides)) {
		if !userName.MatchString(u) {
			w.add("user_overrides."+u, "%q is not a user name gpuwarden accepts; not carried over", u)
			continue
		}
		o := c.overrides[u]
		name := "ds01-user-" + dnsName(u)
		sel := gpuwardenv1alpha1.PolicySelector{Users: []string{u}}
		subjects := []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: u}}
		// Layered: only what the override sets; every group value it does not set stays.
		out = append(out, quota(name, subjects, precedenceOverrides, o, quiet, "user_overrides."+u))
		out = append(out, policy(name, sel, precedenceOverrides, o, block(o["policies"]), allTypes, quiet, "user_overrides."+u))
		managed := sel
		managed.ContainerTypes = []gpuwardenv1alpha1.ContainerType{gpuwardenv1alpha1.ContainerTypeManaged}
		out = append(out, policy(name+"-managed", managed, precedenceOverrides, o, nil, managedOnly, quiet, "user_overrides."+u))
	}
	for i, e := range c.exemptions {
		if obj := exempt(i, e, now, w); obj != nil {
			out = append(out, obj)
		}
	}
	return Result{Objects: compact(out), Warnings: dedupe(w.list)}, nil
}

// groupSelector selects a group's members: the users its member files list, or the host
// group of that name when no member files were given.
func groupSelector(g group, fromFiles bool, w *warnings) (gpuwardenv1alpha1.PolicySelector, []gpuwardenv1alpha1.Subject) {
	if !fromFiles && len(g.members) == 0 {
		return gpuwardenv1alpha1.PolicySelector{Groups: []string{g.name}}, []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectGroup, Name: g.name}}
	}
	var users []string
	var subjects []gpuwardenv1alpha1.Subject
	for _, u := range g.members {
		if !userName.MatchString(u) {
			w.add("groups."+g.name+".members", "%q is not a user name gpuwarden accepts; left out", u)
			continue
		}
		users = append(users, u)
		subjects = append(subjects, gpuwardenv1alpha1.Subject{Kind: gpuwardenv1alpha1.SubjectUser, Name: u})
	}
	if len(users) == 0 {
		w.add("groups."+g.name, "no members in %s.members; the group is not carried over", g.name)
		return gpuwardenv1alpha1.PolicySelector{}, nil
	}
	return gpuwardenv1alpha1.PolicySelector{Users: users}, subjects
}

var (
	userName   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@$-]*$`)
	notDNS     = regexp.MustCompile(`[^a-z0-9.-]+`)
	dockerSize = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?)([kmgt]?)b?$`)
)

func dnsName(s string) string {
	s = strings.ToLower(s)
	s = notDNS.ReplaceAllString(s, "-")
	return strings.Trim(s, "-.")
}

func containerType(t string) (gpuwardenv1alpha1.ContainerType, bool) {
	switch ct := gpuwardenv1alpha1.ContainerType(t); ct {
	case gpuwardenv1alpha1.ContainerTypeDevcontainer, gpuwardenv1alpha1.ContainerTypeCompose, gpuwardenv1alpha1.ContainerTypeDocker,
		gpuwardenv1alpha1.ContainerTypeUnknown, gpuwardenv1alpha1.ContainerTypeNotebook:
		return ct, true
	}
	return "", false
}

// The keys of a values block each kind of object takes, and those nothing takes.
var (
	quotaKeys = map[string]bool{"max_gpu_equivalents": true, "max_gpu_slots": true, "max_gpus_per_user": true, "max_mig_instances": true,
		"max_gpu_slots_per_container": true, "max_gpus_per_container": true, "max_mig_per_container": true,
		"allow_full_gpu": true, "max_containers_per_user": true, "priority": true}
	// allTypes: what applies to a user's every container.
	allTypes = map[string]bool{"gpu_hold_after_stop_h": true, "container_hold_after_stop_h": true, "sigterm_grace_s": true,
		"max_cpus": true, "memory": true, "shm_size": true, "pids_limit": true}
	// managedOnly: DS01's own containers' timeouts (other types take theirs from container_types).
	managedOnly = map[string]bool{"idle_timeout_h": true, "max_runtime_h": true}
	typeKeys    = map[string]bool{"idle_timeout_h": true, "max_runtime_h": true, "sigterm_grace_s": true}
	ignored     = map[string]string{
		"max_tasks":   "DS01 never read it",
		"memory_swap": "gpuwarden sets no swap limit (Docker's default lets a container swap up to its memory limit again)",
		"aggregate":   "per-user systemd slice caps (cpu_quota, memory_max, tasks_max) are not gpuwarden's; gpu_limit is the quota's gpuEquivalents",
		"gpu_memory":  "DS01 never enforced it", "io_read_bps": "DS01 never enforced it", "io_write_bps": "DS01 never enforced it",
		"ulimit_nofile": "DS01 never enforced it", "storage_workspace": "DS01 never enforced it", "storage_data": "DS01 never enforced it",
		"storage_tmp": "DS01 never enforced it",
		"policies":    "", // read as the policy block
		"members":     "", // read as the selector
	}
)

func quota(name string, subjects []gpuwardenv1alpha1.Subject, prec int32, v values, w *warnings, where string) *gpuwardenv1alpha1.GPUQuota {
	q := &gpuwardenv1alpha1.GPUQuota{
		TypeMeta:   metav1.TypeMeta{APIVersion: gpuwardenv1alpha1.GroupVersion.String(), Kind: "GPUQuota"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"gpuwarden.io/imported-from": "ds01"}},
		Spec:       gpuwardenv1alpha1.GPUQuotaSpec{Subjects: subjects, Precedence: prec},
	}
	l := &q.Spec.Limits
	unlimited := func(n gpuwardenv1alpha1.QuotaLimitName) { q.Spec.Unlimited = append(q.Spec.Unlimited, n) }
	if key, x, ok := first(v, "max_gpu_equivalents", "max_gpu_slots", "max_gpus_per_user", "max_mig_instances"); ok {
		if x == nil {
			unlimited(gpuwardenv1alpha1.LimitGPUEquivalents)
		} else if f, ok := number(x); ok && f >= 0 {
			l.GPUEquivalents = ptr.To(resource.MustParse(strconv.FormatFloat(round(f), 'f', -1, 64)))
		} else {
			w.add(where+"."+key, "%v is not a number of GPU-equivalents; not carried over", x)
		}
	}
	if key, x, ok := first(v, "max_gpu_slots_per_container", "max_gpus_per_container", "max_mig_per_container"); ok {
		if x == nil {
			unlimited(gpuwardenv1alpha1.LimitMaxGPUsPerContainer)
		} else if n, ok := count(x); ok {
			l.MaxGPUsPerContainer = &n
		} else {
			w.add(where+"."+key, "%v is not a whole number; not carried over", x)
		}
	}
	if x, ok := v["max_containers_per_user"]; ok {
		if x == nil {
			unlimited(gpuwardenv1alpha1.LimitMaxContainers)
		} else if n, ok := count(x); ok {
			l.MaxContainers = &n
		} else {
			w.add(where+".max_containers_per_user", "%v is not a whole number; not carried over", x)
		}
	}
	if x, ok := v["allow_full_gpu"]; ok {
		if b, ok := x.(bool); ok {
			l.AllowFullGPU = &b
		} else {
			w.add(where+".allow_full_gpu", "%v is not true or false; not carried over", x)
		}
	}
	if x, ok := v["priority"]; ok {
		if n, ok := count(x); ok {
			q.Spec.Priority = &n
		}
	}
	return q
}

// first returns the first of keys (a name and its aliases) that v sets.
func first(v values, keys ...string) (string, any, bool) {
	for _, k := range keys {
		if x, ok := v[k]; ok {
			return k, x, true
		}
	}
	return "", nil, false
}

func count(x any) (int32, bool) {
	f, ok := number(x)
	if !ok || f < 0 || f != float64(int32(f)) {
		return 0, false
	}
	return int32(f), true
}

// policy converts the keys of v that take (and, from pol, DS01's policies: block) into a
// ContainerPolicy; nil when it would set nothing.
func policy(name string, sel gpuwardenv1alpha1.PolicySelector, prec int32, v, pol values, takes map[string]bool, w *warnings, where string) *gpuwardenv1alpha1.ContainerPolicy {
	p := &gpuwardenv1alpha1.ContainerPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: gpuwardenv1alpha1.GroupVersion.String(), Kind: "ContainerPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"gpuwarden.io/imported-from": "ds01"}},
		Spec:       gpuwardenv1alpha1.ContainerPolicySpec{Selector: sel, Precedence: prec},
	}
	s := &p.Spec
	idle := func() *gpuwardenv1alpha1.IdlePolicy {
		if s.Idle == nil {
			s.Idle = &gpuwardenv1alpha1.IdlePolicy{}
		}
		return s.Idle
	}
	res := func() *gpuwardenv1alpha1.ContainerResources {
		if s.Resources == nil {
			s.Resources = &gpuwardenv1alpha1.ContainerResources{}
		}
		return s.Resources
	}
	lift := func(n gpuwardenv1alpha1.PolicyLimitName) { s.Unlimited = append(s.Unlimited, n) }
	for _, k := range slices.Sorted(maps.Keys(v)) {
		x := v[k]
		if !takes[k] {
			if quotaKeys[k] || allTypes[k] || managedOnly[k] || typeKeys[k] {
				continue
			}
			if why, ok := ignored[k]; ok {
				if why != "" {
					w.add(where+"."+k, "not carried over: %s", why)
				}
				continue
			}
			w.add(where+"."+k, "not a key gpuwarden knows; not carried over")
			continue
		}
		key := where + "." + k
		switch k {
		case "idle_timeout_h":
			if x == nil {
				lift(gpuwardenv1alpha1.PolicyLimitIdleTimeout)
			} else if d, ok := hours(x, w, key); ok {
				idle().Timeout = &d
			}
		case "max_runtime_h":
			if x == nil {
				lift(gpuwardenv1alpha1.PolicyLimitMaxRuntime)
			} else if d, ok := hours(x, w, key); ok {
				s.MaxRuntime = &d
			}
		case "gpu_hold_after_stop_h":
			if x == nil {
				lift(gpuwardenv1alpha1.PolicyLimitGPUHoldAfterStop)
			} else if d, ok := hours(x, w, key); ok {
				s.GPUHoldAfterStop = &d
			}
		case "container_hold_after_stop_h":
			if x == nil {
				lift(gpuwardenv1alpha1.PolicyLimitRemoveAfterStop)
			} else if d, ok := hours(x, w, key); ok {
				s.RemoveAfterStop = &d
			}
		case "sigterm_grace_s":
			if d, ok := duration(x, time.Second, w, key); ok {
				s.StopGracePeriod = &d
			}
		case "max_cpus":
			if q, ok := quantity(x, w, key, false); ok {
				res().CPUs, res().MaxCPUs = ptr.To(q), ptr.To(q)
			}
		case "memory":
			if q, ok := quantity(x, w, key, true); ok {
				res().Memory, res().MaxMemory = ptr.To(q), ptr.To(q)
			}
		case "shm_size":
			if q, ok := quantity(x, w, key, true); ok {
				res().ShmSize = ptr.To(q)
			}
		case "pids_limit":
			if x == nil {
				continue
			}
			if n, ok := number(x); ok && n >= 1 {
				res().PidsLimit = ptr.To(int64(n))
			} else {
				w.add(key, "%v is not a number of processes; not carried over", x)
			}
		}
	}
	policyBlock(s, pol, idle, w, strings.TrimPrefix(where+".policies", "."))
	if s.Idle == nil && s.MaxRuntime == nil && s.GPUHoldAfterStop == nil && s.RemoveAfterStop == nil && s.StopGracePeriod == nil &&
		s.Resources == nil && len(s.Unlimited) == 0 && s.CreatedNeverStartedTimeout == nil {
		return nil
	}
	return p
}

// policyBlock converts DS01's policies: keys.
func policyBlock(s *gpuwardenv1alpha1.ContainerPolicySpec, pol values, idle func() *gpuwardenv1alpha1.IdlePolicy, w *warnings, where string) {
	for _, k := range slices.Sorted(maps.Keys(pol)) {
		x := pol[k]
		key := where + "." + k
		percent := func() (int32, bool) {
			f, ok := number(x)
			if !ok || f < 0 || f > 100 {
				w.add(key, "%v is not a percentage; not carried over", x)
				return 0, false
			}
			if f != float64(int32(f)) {
				w.add(key, "%v rounded to %d: gpuwarden's thresholds are whole percentages", x, int32(f+0.5))
			}
			return int32(f + 0.5), true
		}
		switch k {
		case "gpu_idle_threshold":
			if n, ok := percent(); ok {
				idle().GPUUtilizationPercent = &n
			}
		case "cpu_idle_threshold":
			if n, ok := percent(); ok {
				idle().CPUPercent = &n
			}
		case "network_idle_threshold":
			if f, ok := number(x); ok && f >= 0 {
				idle().NetworkBytesPerSecond = ptr.To(int64(f))
				w.add(key, "DS01 compared bytes per check; gpuwarden takes %s as bytes per second over the sample window", strconv.FormatFloat(f, 'f', -1, 64))
			}
		case "idle_detection_window":
			if n, ok := count(x); ok && n >= 1 {
				idle().ConsecutiveSamples = &n
			}
		case "grace_period_m":
			if d, ok := duration(x, time.Minute, w, key); ok {
				idle().StartupGrace = &d
			}
		case "keepalive_max_duration_h":
			if d, ok := hours(x, w, key); ok {
				idle().KeepAlive = &gpuwardenv1alpha1.KeepAlive{Path: keepAlivePath, MaxAge: &d}
			}
		case "high_demand_threshold":
			f, ok := number(x)
			r, rok := number(pol["high_demand_idle_reduction"])
			if ok && rok && f >= 0 && f <= 1 && r >= 0 && r <= 1 {
				idle().HighDemand = &gpuwardenv1alpha1.HighDemand{AllocatedFraction: fraction(f), TimeoutFactor: fraction(1 - r)}
			} else {
				w.add(key, "high demand needs high_demand_threshold and high_demand_idle_reduction, both between 0 and 1; not carried over")
			}
		case "high_demand_idle_reduction":
			// read with high_demand_threshold
		case "sigterm_grace_s":
			if d, ok := duration(x, time.Second, w, key); ok {
				s.StopGracePeriod = &d
			}
		case "created_container_timeout_m":
			if d, ok := duration(x, time.Minute, w, key); ok {
				s.CreatedNeverStartedTimeout = &d
			}
		case "gpu_hold_after_manual_stop_m":
			w.add(key, "not carried over: DS01 never read it; gpuHoldAfterStop (from gpu_hold_after_stop_h) holds after any stop")
		default:
			w.add(key, "not a key gpuwarden knows; not carried over")
		}
	}
}

func union(sets ...map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, s := range sets {
		for k := range s {
			out[k] = true
		}
	}
	return out
}

func fraction(f float64) gpuwardenv1alpha1.Fraction {
	return gpuwardenv1alpha1.Fraction(strconv.FormatFloat(round(f), 'f', -1, 64))
}

func hours(x any, w *warnings, key string) (gpuwardenv1alpha1.Duration, bool) {
	return duration(x, time.Hour, w, key)
}

// duration is a number of units as a Go duration (0.5 h → 30m0s).
func duration(x any, unit time.Duration, w *warnings, key string) (gpuwardenv1alpha1.Duration, bool) {
	f, ok := number(x)
	if !ok || f < 0 || f > 99999*float64(time.Hour/unit) {
		w.add(key, "%v is not a duration gpuwarden can hold; not carried over", x)
		return "", false
	}
	d := time.Duration(f * float64(unit)).Round(time.Second)
	return gpuwardenv1alpha1.Duration(d.String()), true
}

// quantity reads a DS01 size (Docker's 32g, 512m: binary units) or a CPU count.
func quantity(x any, w *warnings, key string, bytes bool) (resource.Quantity, bool) {
	if !bytes {
		if f, ok := number(x); ok && f > 0 {
			return resource.MustParse(strconv.FormatFloat(round(f), 'f', -1, 64)), true
		}
		w.add(key, "%v is not a number of CPUs; not carried over", x)
		return resource.Quantity{}, false
	}
	s := strings.ToLower(strings.TrimSpace(fmt.Sprint(x)))
	m := dockerSize.FindStringSubmatch(s)
	if m == nil {
		w.add(key, "%v is not a size gpuwarden can read; not carried over", x)
		return resource.Quantity{}, false
	}
	suffix := map[string]string{"": "", "k": "Ki", "m": "Mi", "g": "Gi", "t": "Ti"}[m[3]]
	q, err := resource.ParseQuantity(m[1] + suffix)
	if err != nil {
		w.add(key, "%v: %v; not carried over", x, err)
		return resource.Quantity{}, false
	}
	return q, true
}

// exempt converts one lifecycle exemption.
func exempt(i int, e exemption, now time.Time, w *warnings) *gpuwardenv1alpha1.ContainerPolicy {
	where := fmt.Sprintf("exemptions[%d]", i)
	if !userName.MatchString(e.Username) {
		w.add(where+".username", "%q is not a user name gpuwarden accepts; not carried over", e.Username)
		return nil
	}
	var lifted []gpuwardenv1alpha1.PolicyLimitName
	for _, f := range e.ExemptFrom {
		switch f {
		case "idle_timeout_h":
			lifted = append(lifted, gpuwardenv1alpha1.PolicyLimitIdleTimeout)
		case "max_runtime_h":
			lifted = append(lifted, gpuwardenv1alpha1.PolicyLimitMaxRuntime)
		default:
			w.add(where+".exempt_from", "%q is not a limit an exemption lifts; left out", f)
		}
	}
	if len(lifted) == 0 {
		w.add(where, "exempts %s from nothing gpuwarden knows (DS01 treated that as not exempt); not carried over", e.Username)
		return nil
	}
	p := &gpuwardenv1alpha1.ContainerPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: gpuwardenv1alpha1.GroupVersion.String(), Kind: "ContainerPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ds01-exempt-%s-%d", dnsName(e.Username), i),
			Labels: map[string]string{"gpuwarden.io/imported-from": "ds01"},
			Annotations: compactMap(map[string]string{"gpuwarden.io/reason": e.Reason, "gpuwarden.io/category": e.Category,
				"gpuwarden.io/approved-by": e.ApprovedBy, "gpuwarden.io/approved-on": str(e.ApprovedOn)})},
		Spec: gpuwardenv1alpha1.ContainerPolicySpec{Selector: gpuwardenv1alpha1.PolicySelector{Users: []string{e.Username}},
			Precedence: precedenceExempt, Unlimited: lifted},
	}
	if e.ExpiresOn != nil {
		t, err := time.Parse(time.RFC3339, strings.Replace(str(e.ExpiresOn), " ", "T", 1))
		if err != nil {
			if t, err = time.Parse("2006-01-02T15:04:05", str(e.ExpiresOn)); err != nil {
				if t, err = time.Parse("2006-01-02", str(e.ExpiresOn)); err != nil {
					w.add(where+".expires_on", "%q is not a time (DS01 treated that as not exempt); not carried over", str(e.ExpiresOn))
					return nil
				}
			}
		}
		if !now.Before(t) {
			w.add(where+".expires_on", "%s's exemption expired at %s; carried over, but no longer in force", e.Username, t.UTC().Format(time.RFC3339))
		}
		p.Spec.Expires = &metav1.Time{Time: t.UTC()}
	}
	return p
}

func str(x any) string {
	if x == nil {
		return ""
	}
	if t, ok := x.(time.Time); ok {
		return t.UTC().Format(time.RFC3339)
	}
	return fmt.Sprint(x)
}

func compactMap(m map[string]string) map[string]string {
	for k, v := range m {
		if v == "" {
			delete(m, k)
		}
	}
	return m
}

// compact drops the nil policies (those that would set nothing).
func compact(objs []client.Object) []client.Object {
	var out []client.Object
	for _, o := range objs {
		switch x := o.(type) {
		case *gpuwardenv1alpha1.ContainerPolicy:
			if x == nil {
				continue
			}
		case *gpuwardenv1alpha1.GPUQuota:
			if x == nil {
				continue
			}
		}
		out = append(out, o)
	}
	return out
}

func dedupe(list []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

package resolve

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
)

// samples decodes config/samples/NAME, the manifests admins start from.
func samples[T any](t *testing.T, name string) []T {
	t.Helper()
	data, err := os.ReadFile("../../config/samples/" + name)
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []T
	for {
		var obj T
		if err := dec.Decode(&obj); err != nil {
			break
		}
		out = append(out, obj)
	}
	if len(out) == 0 {
		t.Fatalf("no objects in %s", name)
	}
	return out
}

func TestEffectiveQuotaFromSamples(t *testing.T) {
	quotas := samples[gpuwardenv1alpha1.GPUQuota](t, "gpuquotas.yaml")
	cases := []struct {
		user   string
		groups []string
		want   Quota
	}{
		{"alice", []string{"student"}, Quota{ // her own quota sets one field; every other comes from her group
			Quota: allocation.Quota{
				GPUEquivalents:      allocation.Limit[float64]{Set: true, Value: 6, From: "GPUQuota alice-thesis"},
				MaxGPUsPerContainer: allocation.Limit[int]{Set: true, Value: 2, From: "GPUQuota students"},
				MaxContainers:       allocation.Limit[int]{Set: true, Value: 3, From: "GPUQuota students"},
				AllowFullGPU:        allocation.Limit[bool]{Set: true, Value: true, From: "GPUQuota students"},
			},
			Priority: allocation.Limit[int32]{Set: true, Value: 10, From: "GPUQuota everyone"},
			Matched:  []string{"everyone", "students", "alice-thesis"},
		}},
		{"root", []string{"admin"}, Quota{
			Quota: allocation.Quota{
				GPUEquivalents:      allocation.Limit[float64]{Set: true, Unlimited: true, From: "GPUQuota admins"},
				MaxGPUsPerContainer: allocation.Limit[int]{Set: true, Unlimited: true, From: "GPUQuota admins"},
				MaxContainers:       allocation.Limit[int]{Set: true, Value: 10, From: "GPUQuota admins"},
				AllowFullGPU:        allocation.Limit[bool]{Set: true, Value: true, From: "GPUQuota admins"},
			},
			Priority: allocation.Limit[int32]{Set: true, Value: 10, From: "GPUQuota everyone"},
			Matched:  []string{"everyone", "admins"},
		}},
		{"guest", nil, Quota{
			Quota: allocation.Quota{
				GPUEquivalents:      allocation.Limit[float64]{Set: true, Value: 2, From: "GPUQuota everyone"},
				MaxGPUsPerContainer: allocation.Limit[int]{Set: true, Value: 2, From: "GPUQuota everyone"},
				MaxContainers:       allocation.Limit[int]{Set: true, Value: 3, From: "GPUQuota everyone"},
				AllowFullGPU:        allocation.Limit[bool]{Set: true, Value: true, From: "GPUQuota everyone"},
			},
			Priority: allocation.Limit[int32]{Set: true, Value: 10, From: "GPUQuota everyone"},
			Matched:  []string{"everyone"},
		}},
	}
	for _, tc := range cases {
		if diff := cmp.Diff(tc.want, EffectiveQuota(quotas, tc.user, tc.groups, nil)); diff != "" {
			t.Errorf("%s (-want,+got):\n%s", tc.user, diff)
		}
	}
}

func quota(name string, precedence int32, subjects []gpuwardenv1alpha1.Subject, mutate func(*gpuwardenv1alpha1.GPUQuotaSpec)) gpuwardenv1alpha1.GPUQuota {
	q := gpuwardenv1alpha1.GPUQuota{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: gpuwardenv1alpha1.GPUQuotaSpec{Subjects: subjects, Precedence: precedence}}
	mutate(&q.Spec)
	return q
}

func TestUnlimitedIsNotUnsetAndLaterObjectsCanLimitAgain(t *testing.T) {
	group := []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectGroup, Name: "lab"}}
	quotas := []gpuwardenv1alpha1.GPUQuota{
		quota("base", 0, group, func(s *gpuwardenv1alpha1.GPUQuotaSpec) { s.Limits.MaxContainers = ptr.To[int32](2) }),
		quota("lift", 10, group, func(s *gpuwardenv1alpha1.GPUQuotaSpec) {
			s.Unlimited = []gpuwardenv1alpha1.QuotaLimitName{gpuwardenv1alpha1.LimitMaxContainers}
		}),
		quota("unrelated", 20, group, func(s *gpuwardenv1alpha1.GPUQuotaSpec) { s.Limits.AllowFullGPU = ptr.To(false) }),
	}
	got := EffectiveQuota(quotas, "u", []string{"lab"}, nil)
	if want := (allocation.Limit[int]{Set: true, Unlimited: true, From: "GPUQuota lift"}); got.MaxContainers != want {
		t.Errorf("maxContainers = %+v, want unlimited from lift (a later object that leaves it unset must not undo it)", got.MaxContainers)
	}
	quotas = append(quotas, quota("cap", 30, group, func(s *gpuwardenv1alpha1.GPUQuotaSpec) { s.Limits.MaxContainers = ptr.To[int32](7) }))
	got = EffectiveQuota(quotas, "u", []string{"lab"}, nil)
	if want := (allocation.Limit[int]{Set: true, Value: 7, From: "GPUQuota cap"}); got.MaxContainers != want {
		t.Errorf("maxContainers = %+v, want 7 from cap", got.MaxContainers)
	}
	if got.GPUEquivalents.Set {
		t.Errorf("gpuEquivalents set by no object must not apply: %+v", got.GPUEquivalents)
	}
}

func TestSharedQuotaPoolsItsSubjects(t *testing.T) {
	pool := quota("lab-pool", 50, []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectGroup, Name: "nlp"}}, func(s *gpuwardenv1alpha1.GPUQuotaSpec) {
		s.Scope = gpuwardenv1alpha1.ScopeShared
		s.Limits.GPUEquivalents = ptr.To(resource.MustParse("4"))
	})
	holders := map[string][]string{"bob": {"nlp"}, "carol": {"nlp", "student"}, "mallory": {"vision"}}
	got := EffectiveQuota([]gpuwardenv1alpha1.GPUQuota{pool}, "alice", []string{"nlp"}, holders)
	if diff := cmp.Diff([]string{"alice", "bob", "carol"}, got.Pool); diff != "" || !got.GPUEquivalents.Shared {
		t.Errorf("pool (-want,+got):\n%s shared=%v", diff, got.GPUEquivalents.Shared)
	}
	live := []allocation.Holding{{User: "bob", Weight: 3, Slots: []string{"a", "b", "c"}}, {User: "mallory", Weight: 4, Slots: []string{"d"}}}
	slots := []allocation.Slot{{GPUIndex: 0, UUID: "GPU-0", Healthy: true}, {GPUIndex: 1, UUID: "GPU-1", Healthy: true}}
	d := allocation.Decide(slots, live, got.Quota, allocation.Request{User: "alice", GPUs: 2})
	if d.Reason != gpuwardenv1alpha1.ReasonQuotaExceeded || d.Message != "the pool of alice shared with bob, carol holds 3/4 gpu-equivalents and asked for 2 more (GPUQuota lab-pool)" {
		t.Errorf("decision = %+v", d)
	}
}

func TestEffectivePolicyFromSamples(t *testing.T) {
	policies := samples[gpuwardenv1alpha1.ContainerPolicy](t, "containerpolicies.yaml")
	now := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	get := func(c Container) Policy {
		t.Helper()
		p, err := EffectivePolicy(policies, c, now)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	check := func(p Policy, path string, value any, from string) {
		t.Helper()
		if got := p.Values[path]; got.Value != value || got.From != "ContainerPolicy "+from {
			t.Errorf("%s = %v from %s, want %v from %s", path, got.Value, got.From, value, from)
		}
	}
	researcher := get(Container{User: "r", Groups: []string{"researcher"}, Type: gpuwardenv1alpha1.ContainerTypeManaged})
	check(researcher, "idle.timeout", "1h0m0s", "researchers")
	check(researcher, "idle.cpuPercent", float64(3), "researchers")
	check(researcher, "idle.gpuUtilizationPercent", float64(5), "defaults") // inherited
	check(researcher, "maxRuntime", "48h0m0s", "researchers")
	check(researcher, "gpuHoldAfterStop", "15m0s", "defaults")
	check(researcher, "resources.memory", "64Gi", "researcher-resources")
	check(researcher, "resources.pidsLimit", float64(4096), "defaults") // inherited within resources
	if q, from, ok := researcher.Quantity("resources.maxCPUs"); !ok || q.Value() != 48 || from != "ContainerPolicy researcher-resources" {
		t.Errorf("resources.maxCPUs = %v from %s (%v), want 48 from researcher-resources", q.String(), from, ok)
	}
	if n, _, ok := researcher.Int("resources.pidsLimit"); !ok || n != 4096 {
		t.Errorf("resources.pidsLimit = %d (%v), want 4096", n, ok)
	}
	dev := get(Container{User: "s", Groups: []string{"student"}, Type: gpuwardenv1alpha1.ContainerTypeDevcontainer})
	check(dev, "idle.timeout", Unlimited, "devcontainers")
	check(dev, "maxRuntime", "168h0m0s", "devcontainers")
	check(dev, "stopGracePeriod", "30s", "devcontainers")
	if diff := cmp.Diff([]string{"defaults", "devcontainers"}, dev.Matched); diff != "" {
		t.Errorf("matched (-want,+got):\n%s", diff)
	}

	// The same type claimed by its owner's label through the gateway lifts nothing
	// beyond docker's limits, except what the admin grants claimed devcontainers.
	claimedLabels := map[string]string{gpuwardenv1alpha1.LabelTypeClaimed: "true", "devcontainer.local_folder": "/home/s/p"}
	claimed := get(Container{User: "s", Groups: []string{"student"}, Type: gpuwardenv1alpha1.ContainerTypeDevcontainer, Claimed: true, Labels: claimedLabels})
	check(claimed, "idle.timeout", "4h0m0s", "devcontainers-claimed")
	check(claimed, "maxRuntime", "72h0m0s", "devcontainers-claimed")
	if diff := cmp.Diff([]string{"defaults", "docker", "devcontainers-claimed"}, claimed.Matched); diff != "" {
		t.Errorf("claimed: matched (-want,+got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"devcontainers-claimed"}, claimed.TrustClaim); diff != "" {
		t.Errorf("claimed: trusted by (-want,+got):\n%s", diff)
	}
	// Without the admin's grant for claimed devcontainers: exactly docker's.
	var noGrant []gpuwardenv1alpha1.ContainerPolicy
	for _, p := range policies {
		if p.Name != "devcontainers-claimed" {
			noGrant = append(noGrant, p)
		}
	}
	asDocker, err := EffectivePolicy(noGrant, Container{User: "s", Groups: []string{"student"}, Type: gpuwardenv1alpha1.ContainerTypeDocker}, now)
	if err != nil {
		t.Fatal(err)
	}
	claimedNoGrant, err := EffectivePolicy(noGrant, Container{User: "s", Groups: []string{"student"}, Type: gpuwardenv1alpha1.ContainerTypeDevcontainer, Claimed: true, Labels: claimedLabels}, now)
	if err != nil {
		t.Fatal(err)
	}
	check(claimedNoGrant, "idle.timeout", "30m0s", "docker")
	if diff := cmp.Diff(asDocker.Values, claimedNoGrant.Values); diff != "" {
		t.Errorf("a claimed devcontainer without a grant differs from docker (-docker,+claimed):\n%s", diff)
	}
	// The grant applies to claimed containers only: an unclaimed devcontainer (made by a
	// member of the docker group, or an admin) is governed as before.
	if slices.Contains(dev.Matched, "devcontainers-claimed") {
		t.Errorf("the claimed-devcontainer grant applies to an unclaimed devcontainer: %v", dev.Matched)
	}
}

func TestClaimedTypeLiftsNothing(t *testing.T) {
	d := func(s string) *gpuwardenv1alpha1.Duration { v := gpuwardenv1alpha1.Duration(s); return &v }
	notify := gpuwardenv1alpha1.ModeNotifyOnly
	policies := []gpuwardenv1alpha1.ContainerPolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "docker"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{
			Selector: gpuwardenv1alpha1.PolicySelector{ContainerTypes: []gpuwardenv1alpha1.ContainerType{"docker"}},
			Idle:     &gpuwardenv1alpha1.IdlePolicy{Timeout: d("30m")}, MaxRuntime: d("24h")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "compose-lenient"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{
			Selector:   gpuwardenv1alpha1.PolicySelector{ContainerTypes: []gpuwardenv1alpha1.ContainerType{"compose", "devcontainer"}},
			Precedence: 10, Mode: notify, Unlimited: []gpuwardenv1alpha1.PolicyLimitName{"idleTimeout", "maxRuntime"}}},
		// A grant names the claim; a forged one (another value) is no grant.
		{ObjectMeta: metav1.ObjectMeta{Name: "forged"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{
			Selector:   gpuwardenv1alpha1.PolicySelector{ContainerTypes: []gpuwardenv1alpha1.ContainerType{"compose"}, Labels: map[string]string{gpuwardenv1alpha1.LabelTypeClaimed: "yes"}},
			Precedence: 20, Unlimited: []gpuwardenv1alpha1.PolicyLimitName{"idleTimeout"}}},
	}
	now := time.Now()
	for _, typ := range []gpuwardenv1alpha1.ContainerType{"compose", "devcontainer"} {
		c := Container{User: "u", Type: typ, Claimed: true, Labels: map[string]string{gpuwardenv1alpha1.LabelTypeClaimed: "true"}}
		p, err := EffectivePolicy(policies, c, now)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := p.Get("idle.timeout"); v != "30m0s" {
			t.Errorf("claimed %s: idle.timeout = %v, want docker's 30m0s", typ, v)
		}
		if v, _ := p.Get("maxRuntime"); v != "24h0m0s" {
			t.Errorf("claimed %s: maxRuntime = %v, want docker's 24h0m0s", typ, v)
		}
		if v, ok := p.Get("mode"); ok {
			t.Errorf("claimed %s: mode = %v, want none (the lenient policy does not apply)", typ, v)
		}
		// The same type not claimed is governed by its type's policy.
		c.Claimed = false
		p, _ = EffectivePolicy(policies, c, now)
		if v, _ := p.Get("idle.timeout"); v != Unlimited {
			t.Errorf("unclaimed %s: idle.timeout = %v, want unlimited", typ, v)
		}
	}
	// A policy without a type in its selector is not about types: it applies either way.
	all := gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "all"}}
	if !PolicyMatches(&all, Container{Type: "devcontainer", Claimed: true}) {
		t.Error("a policy for every container does not select a claimed devcontainer")
	}
}

func TestExpiredPolicyNoLongerApplies(t *testing.T) {
	until := metav1.NewTime(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	policies := []gpuwardenv1alpha1.ContainerPolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "base"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{MaxRuntime: func() *gpuwardenv1alpha1.Duration { d := gpuwardenv1alpha1.Duration("24h"); return &d }()}},
		{ObjectMeta: metav1.ObjectMeta{Name: "deadline-week"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{
			Precedence: 100, Expires: &until, Selector: gpuwardenv1alpha1.PolicySelector{Users: []string{"alice"}},
			Unlimited: []gpuwardenv1alpha1.PolicyLimitName{gpuwardenv1alpha1.PolicyLimitMaxRuntime}}},
	}
	alice := Container{User: "alice", Type: gpuwardenv1alpha1.ContainerTypeDocker}
	before, _ := EffectivePolicy(policies, alice, until.Add(-time.Second))
	after, _ := EffectivePolicy(policies, alice, until.Time)
	if v, _ := before.Get("maxRuntime"); v != Unlimited {
		t.Errorf("before expiry maxRuntime = %v, want unlimited", v)
	}
	if v, _ := after.Get("maxRuntime"); v != "24h0m0s" || len(after.Expired) != 1 {
		t.Errorf("after expiry maxRuntime = %v expired=%v, want 24h0m0s from base", v, after.Expired)
	}
	bob, _ := EffectivePolicy(policies, Container{User: "bob"}, until.Add(-time.Hour))
	if v, _ := bob.Get("maxRuntime"); v != "24h0m0s" {
		t.Errorf("bob's maxRuntime = %v: the exemption is alice's alone", v)
	}
}

func TestLabelSelector(t *testing.T) {
	p := gpuwardenv1alpha1.ContainerPolicy{Spec: gpuwardenv1alpha1.ContainerPolicySpec{Selector: gpuwardenv1alpha1.PolicySelector{
		Labels: map[string]string{"gpuwarden.io/protected": "true"}, ContainerTypes: []gpuwardenv1alpha1.ContainerType{"docker"}}}}
	for _, tc := range []struct {
		c    Container
		want bool
	}{
		{Container{Type: "docker", Labels: map[string]string{"gpuwarden.io/protected": "true", "x": "y"}}, true},
		{Container{Type: "docker", Labels: map[string]string{"gpuwarden.io/protected": "false"}}, false},
		{Container{Type: "compose", Labels: map[string]string{"gpuwarden.io/protected": "true"}}, false},
	} {
		if got := PolicyMatches(&p, tc.c); got != tc.want {
			t.Errorf("PolicyMatches(%+v) = %v", tc.c, got)
		}
	}
}

func TestStaticAndHostGroups(t *testing.T) {
	if g, _ := (StaticGroups{"alice": {"student"}}).GroupsOf("alice"); len(g) != 1 {
		t.Errorf("static groups = %v", g)
	}
	g, err := HostGroups{}.GroupsOf("root")
	if err != nil || len(g) == 0 {
		t.Errorf("root's host groups = %v, %v", g, err)
	}
	if g, err := (HostGroups{}).GroupsOf("no-such-user-gpuwarden"); err != nil || g != nil {
		t.Errorf("an unknown user's groups = %v, %v; want none and no error", g, err)
	}
}

// countingGroups counts look-ups.
type countingGroups struct{ n int }

func (c *countingGroups) GroupsOf(string) ([]string, error) { c.n++; return []string{"student"}, nil }

func TestCachedGroups(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC))
	inner := &countingGroups{}
	c := &CachedGroups{Groups: inner, TTL: time.Minute, Clock: clk}
	for range 3 {
		if g, _ := c.GroupsOf("alice"); len(g) != 1 || g[0] != "student" {
			t.Fatalf("groups = %v", g)
		}
	}
	if inner.n != 1 {
		t.Errorf("%d look-ups within the TTL, want 1", inner.n)
	}
	clk.Step(time.Minute)
	c.GroupsOf("alice")
	if inner.n != 2 {
		t.Errorf("%d look-ups after the TTL, want 2", inner.n)
	}
}

// FuzzParseDuration: a policy duration either parses to a non-negative duration or is an
// error naming it; never a panic.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30m", "1h30m", "-1h", "99999999999h", "1.5h", "", "5", "1e3s", "µs"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(gpuwardenv1alpha1.Duration(s))
		if err == nil && d < 0 {
			t.Errorf("%q parsed to %s", s, d)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) {
			t.Errorf("the error for %q does not name it: %v", s, err)
		}
	})
}

// devcontainerOverridden is the case of the issue: devcontainers exempt from the idle
// timeout, and a per-user policy of higher precedence that sets one.
func devcontainerOverridden() []gpuwardenv1alpha1.ContainerPolicy {
	d := func(s string) *gpuwardenv1alpha1.Duration { v := gpuwardenv1alpha1.Duration(s); return &v }
	return []gpuwardenv1alpha1.ContainerPolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "defaults"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{Idle: &gpuwardenv1alpha1.IdlePolicy{Timeout: d("30m")}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "devcontainers"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{Precedence: 20,
			Selector:  gpuwardenv1alpha1.PolicySelector{ContainerTypes: []gpuwardenv1alpha1.ContainerType{"devcontainer"}},
			Unlimited: []gpuwardenv1alpha1.PolicyLimitName{"idleTimeout", "maxRuntime"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "bob-hours"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{Precedence: 50,
			Selector: gpuwardenv1alpha1.PolicySelector{Users: []string{"bob"}}, Idle: &gpuwardenv1alpha1.IdlePolicy{Timeout: d("2h")}}},
		// Disjoint from devcontainers: says nothing of them.
		{ObjectMeta: metav1.ObjectMeta{Name: "docker-only"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{Precedence: 60,
			Selector: gpuwardenv1alpha1.PolicySelector{ContainerTypes: []gpuwardenv1alpha1.ContainerType{"docker"}}, Idle: &gpuwardenv1alpha1.IdlePolicy{Timeout: d("20m")}}},
		// Below the exemption: overridden by it, not overriding it.
		{ObjectMeta: metav1.ObjectMeta{Name: "students"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{Precedence: 10,
			Selector: gpuwardenv1alpha1.PolicySelector{Groups: []string{"student"}}, Idle: &gpuwardenv1alpha1.IdlePolicy{Timeout: d("1h")}}},
	}
}

// TestAnOverriddenExemptionIsNamed: a policy of higher precedence that sets a limit a lower
// one lifts cancels the exemption; the effective policy names both, and explain's table
// says so. A policy that lifts it again above restores it.
func TestAnOverriddenExemptionIsNamed(t *testing.T) {
	policies := devcontainerOverridden()
	now := time.Now()
	bob, err := EffectivePolicy(policies, Container{User: "bob", Groups: []string{"student"}, Type: "devcontainer"}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []Override{{Limit: "idleTimeout", Path: "idle.timeout", Exempt: "ContainerPolicy devcontainers", By: "ContainerPolicy bob-hours", Value: "2h0m0s"}}
	if diff := cmp.Diff(want, bob.Overridden); diff != "" {
		t.Errorf("overridden (-want,+got):\n%s", diff)
	}
	var table bytes.Buffer
	if err := bob.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "Exemption overridden: ContainerPolicy devcontainers lifts idleTimeout (unlimited), but ContainerPolicy bob-hours, merged after it, sets idle.timeout to 2h0m0s: the exemption does not hold.") {
		t.Errorf("the table does not say the exemption is overridden:\n%s", table.String())
	}
	alice, _ := EffectivePolicy(policies, Container{User: "alice", Type: "devcontainer"}, now)
	if len(alice.Overridden) != 0 {
		t.Errorf("alice's devcontainer keeps its exemption, yet: %+v", alice.Overridden)
	}
	again := append(slices.Clone(policies), gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "thesis"}, Spec: gpuwardenv1alpha1.ContainerPolicySpec{
		Precedence: 100, Selector: gpuwardenv1alpha1.PolicySelector{Users: []string{"bob"}}, Unlimited: []gpuwardenv1alpha1.PolicyLimitName{"idleTimeout"}}})
	if p, _ := EffectivePolicy(again, Container{User: "bob", Type: "devcontainer"}, now); len(p.Overridden) != 0 {
		t.Errorf("lifted again above the override, still said overridden: %+v", p.Overridden)
	}
}

// TestExemptionOverridesFromSelectors: the policies merged after one that set a limit it
// lifts, for containers both may select, from the selectors alone.
func TestExemptionOverridesFromSelectors(t *testing.T) {
	policies := devcontainerOverridden()
	now := time.Now()
	got := ExemptionOverrides(policies, &policies[1], now)
	if len(got) != 1 || got[0].By.Name != "bob-hours" || got[0].Limit != "idleTimeout" || got[0].Value != "2h0m0s" {
		t.Errorf("overrides of devcontainers: %+v; want bob-hours' idle timeout alone", got)
	}
	for _, p := range []int{0, 2, 3, 4} {
		if got := ExemptionOverrides(policies, &policies[p], now); len(got) != 0 {
			t.Errorf("%s lifts nothing, yet overridden: %+v", policies[p].Name, got)
		}
	}
	// Expired: no longer overrides. Same precedence: the later name merges after.
	expired := metav1.NewTime(now.Add(-time.Minute))
	policies[2].Spec.Expires = &expired
	if got := ExemptionOverrides(policies, &policies[1], now); len(got) != 0 {
		t.Errorf("an expired policy still overrides: %+v", got)
	}
	policies[2].Spec.Expires, policies[2].Spec.Precedence = nil, 20
	if got := ExemptionOverrides(policies, &policies[1], now); len(got) != 0 {
		t.Errorf("bob-hours merges before devcontainers at the same precedence (b < d), yet overrides: %+v", got)
	}
	policies[2].Name = "zed-hours"
	if got := ExemptionOverrides(policies, &policies[1], now); len(got) != 1 {
		t.Errorf("zed-hours merges after devcontainers at the same precedence, yet does not override: %+v", got)
	}
	// Users that exclude each other, labels that do: no container is selected by both.
	policies[1].Spec.Selector.Users, policies[2].Spec.Selector.Users = []string{"alice"}, []string{"bob"}
	if got := ExemptionOverrides(policies, &policies[1], now); len(got) != 0 {
		t.Errorf("disjoint users, yet overridden: %+v", got)
	}
	policies[2].Spec.Selector.Users = []string{"alice"}
	policies[1].Spec.Selector.Labels, policies[2].Spec.Selector.Labels = map[string]string{"lab": "a"}, map[string]string{"lab": "b"}
	if got := ExemptionOverrides(policies, &policies[1], now); len(got) != 0 {
		t.Errorf("disjoint labels, yet overridden: %+v", got)
	}
}

// TestBudgetAndBorrowingMergeFieldByField: a higher precedence that sets only
// budget.gpuHours keeps the window set below it; borrowing merges likewise; unlimited
// lifts a budget; a Shared quota's budget is the pool's.
func TestBudgetAndBorrowingMergeFieldByField(t *testing.T) {
	subjects := []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectGroup, Name: "lab"}}
	mine := []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: "alice"}}
	q := func(s string) *resource.Quantity { v := resource.MustParse(s); return &v }
	quotas := []gpuwardenv1alpha1.GPUQuota{
		quota("lab", 10, subjects, func(s *gpuwardenv1alpha1.GPUQuotaSpec) {
			s.Scope = gpuwardenv1alpha1.ScopeShared
			s.Budget = &gpuwardenv1alpha1.QuotaBudget{GPUHours: q("500"), Window: "Month"}
			s.Borrowing = &gpuwardenv1alpha1.QuotaBorrowing{GPUEquivalents: q("4")}
		}),
		quota("alice-more", 20, mine, func(s *gpuwardenv1alpha1.GPUQuotaSpec) {
			s.Budget = &gpuwardenv1alpha1.QuotaBudget{GPUHours: q("800")}
		}),
	}
	got := EffectiveQuota(quotas, "alice", []string{"lab"}, nil)
	if got.Budget != (allocation.Limit[float64]{Set: true, Value: 800, From: "GPUQuota alice-more"}) || !got.BudgetWindow.Month || got.BudgetWindowFrom != "GPUQuota lab" {
		t.Errorf("alice's budget: %+v window %+v from %q", got.Budget, got.BudgetWindow, got.BudgetWindowFrom)
	}
	if got.Borrow != (allocation.Limit[float64]{Set: true, Value: 4, From: "GPUQuota lab", Shared: true}) {
		t.Errorf("alice's borrowing: %+v", got.Borrow)
	}
	bob := EffectiveQuota(quotas, "bob", []string{"lab"}, nil)
	if !bob.Budget.Shared || bob.Budget.Value != 500 || len(bob.SharedQuotas) != 1 {
		t.Errorf("bob's budget is the lab's pool: %+v", bob.Budget)
	}
	quotas = append(quotas, quota("alice-free", 30, mine, func(s *gpuwardenv1alpha1.GPUQuotaSpec) {
		s.Unlimited = []gpuwardenv1alpha1.QuotaLimitName{gpuwardenv1alpha1.LimitBudget}
	}))
	if got := EffectiveQuota(quotas, "alice", []string{"lab"}, nil); !got.Budget.Unlimited {
		t.Errorf("unlimited budget: %+v", got.Budget)
	}
	if got := EffectiveQuota(quotas[:0], "carol", nil, nil); got.Budget.Set || got.BudgetWindow != (allocation.Window{}) {
		t.Errorf("no quota sets a budget: %+v %+v", got.Budget, got.BudgetWindow)
	}
}

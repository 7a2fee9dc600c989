package ds01

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

var now = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

func fixture(t *testing.T) Result {
	t.Helper()
	res, err := Convert(Sources{Limits: "testdata/resource-limits.yaml", Groups: "testdata/groups",
		Overrides: "testdata/user-overrides.yaml", Exemptions: "testdata/lifecycle-exemptions.yaml"}, now)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func split(res Result) ([]gpuwardenv1alpha1.GPUQuota, []gpuwardenv1alpha1.ContainerPolicy) {
	var qs []gpuwardenv1alpha1.GPUQuota
	var ps []gpuwardenv1alpha1.ContainerPolicy
	for _, o := range res.Objects {
		switch x := o.(type) {
		case *gpuwardenv1alpha1.GPUQuota:
			qs = append(qs, *x)
		case *gpuwardenv1alpha1.ContainerPolicy:
			ps = append(ps, *x)
		}
	}
	return qs, ps
}

// limit shows an effective quota limit: its value, or unlimited, or unset.
func limit[T any](set, unlimited bool, v T) string {
	switch {
	case !set:
		return "unset"
	case unlimited:
		return "unlimited"
	}
	return fmt.Sprint(v)
}

// TestEffectiveLimitsMatchDS01: for a member of each group, a user in none, a user in two
// groups (the first wins) and a user with an override (layered over her group), the
// converted manifests give what DS01's files say.
func TestEffectiveLimitsMatchDS01(t *testing.T) {
	qs, ps := split(fixture(t))
	for _, tc := range []struct {
		user                      string
		gpuEq, perContainer, ctrs string
		managedIdle, dockerIdle   string
		maxRuntime, cpuPercent    string
		memory, cpus, hold        string
	}{
		// default_group student: defaults ∪ student.
		{"nobody-listed", "2", "2", "3", "30m0s", "30m0s", "24h0m0s", "2", "32Gi", "32", "15m0s"},
		{"sam", "2", "2", "3", "unlimited", "unlimited", "24h0m0s", "2", "32Gi", "32", "15m0s"}, // + a permanent idle exemption
		{"both", "2", "2", "3", "30m0s", "30m0s", "24h0m0s", "2", "32Gi", "32", "15m0s"},        // student listed first
		{"rita", "4", "3", "5", "1h0m0s", "30m0s", "unlimited", "4", "64Gi", "48", "15m0s"},     // researcher, runtime exemption until 2027
		{"inline-researcher", "4", "3", "5", "1h0m0s", "30m0s", "48h0m0s", "4", "64Gi", "48", "15m0s"},
		// alice's override: 6 GPU-equivalents, no idle timeout on managed containers, cpu 1 %; her
		// researcher values otherwise (DS01 itself would have dropped them).
		{"alice", "6", "3", "5", "unlimited", "30m0s", "48h0m0s", "1", "64Gi", "48", "15m0s"},
		{"ada", "unlimited", "unlimited", "10", "30m0s", "30m0s", "24h0m0s", "2", "32Gi", "32", "1h0m0s"},
	} {
		q := resolve.EffectiveQuota(qs, tc.user, nil, nil)
		got := []string{
			limit(q.GPUEquivalents.Set, q.GPUEquivalents.Unlimited, q.GPUEquivalents.Value),
			limit(q.MaxGPUsPerContainer.Set, q.MaxGPUsPerContainer.Unlimited, q.MaxGPUsPerContainer.Value),
			limit(q.MaxContainers.Set, q.MaxContainers.Unlimited, q.MaxContainers.Value),
		}
		managed, err := resolve.EffectivePolicy(ps, resolve.Container{User: tc.user, Type: gpuwardenv1alpha1.ContainerTypeManaged}, now)
		if err != nil {
			t.Fatal(err)
		}
		docker, _ := resolve.EffectivePolicy(ps, resolve.Container{User: tc.user, Type: gpuwardenv1alpha1.ContainerTypeDocker}, now)
		val := func(p resolve.Policy, path string) string { v, _ := p.Get(path); return resolve.FormatValue(v) }
		got = append(got, val(managed, "idle.timeout"), val(docker, "idle.timeout"), val(managed, "maxRuntime"), val(managed, "idle.cpuPercent"),
			val(managed, "resources.memory"), val(managed, "resources.cpus"), val(docker, "gpuHoldAfterStop"))
		want := []string{tc.gpuEq, tc.perContainer, tc.ctrs, tc.managedIdle, tc.dockerIdle, tc.maxRuntime, tc.cpuPercent, tc.memory, tc.cpus, tc.hold}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: got  %v\n      want %v", tc.user, got, want)
		}
	}
	// Types: a devcontainer is never idle-stopped and lives a week; its grace is its type's.
	dev, _ := resolve.EffectivePolicy(ps, resolve.Container{User: "rita", Type: gpuwardenv1alpha1.ContainerTypeDevcontainer}, now)
	for path, want := range map[string]string{"idle.timeout": "unlimited", "maxRuntime": "unlimited", "stopGracePeriod": "30s", "idle.consecutiveSamples": "4"} {
		if v, _ := dev.Get(path); resolve.FormatValue(v) != want {
			t.Errorf("rita's devcontainer %s = %v, want %s", path, v, want)
		}
	}
	// The expired exemption is carried over, inactive.
	old, _ := resolve.EffectivePolicy(ps, resolve.Container{User: "old", Type: gpuwardenv1alpha1.ContainerTypeManaged}, now)
	if v, _ := old.Get("idle.timeout"); v != "30m0s" || len(old.Expired) != 1 {
		t.Errorf("old's idle timeout %v (expired %v), want 30m0s with the exemption expired", v, old.Expired)
	}
}

func TestEveryKeyNotCarriedOverIsNamed(t *testing.T) {
	warned := strings.Join(fixture(t).Warnings, "\n")
	for _, key := range []string{
		"enforcement:", "monitoring:", "defaults.max_tasks:", "defaults.memory_swap:", "groups.student.aggregate:",
		"groups.admin.turbo_mode: not a key gpuwarden knows", "groups.researcher.policies.cpu_idle_threshold: 3.5 rounded to 4",
		"policies.network_idle_threshold:", "container_types.api:", "user_overrides.alice.aggregate:",
		"exemptions[2].expires_on: old's exemption expired", "exemptions[3].expires_on: \"next tuesday\" is not a time",
		"exemptions[4]: exempts none from nothing",
	} {
		if !strings.Contains(warned, key) {
			t.Errorf("no warning for %s in:\n%s", key, warned)
		}
	}
	for _, w := range fixture(t).Warnings {
		if strings.Count(warned, w) != 1 {
			t.Errorf("said more than once: %s", w)
		}
	}
}

func TestBadSources(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("defaults: [unclosed"), 0o644)
	empty := filepath.Join(dir, "empty.yaml")
	_ = os.WriteFile(empty, nil, 0o644)
	for _, tc := range []struct {
		src  Sources
		want string
	}{
		{Sources{Limits: filepath.Join(dir, "missing.yaml")}, "--limits"},
		{Sources{Limits: bad}, "--limits"},
		{Sources{Limits: empty}, "is empty"},
		{Sources{Limits: "testdata/resource-limits.yaml", Overrides: bad}, "--overrides"},
		{Sources{Limits: "testdata/resource-limits.yaml", Exemptions: bad}, "--exemptions"},
	} {
		if _, err := Convert(tc.src, now); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.src, err, tc.want)
		}
	}
}

// TestPublishedDS01Configuration converts DS01's own resource-limits.yaml, read where the
// brief keeps it (never copied into the repository).
func TestPublishedDS01Configuration(t *testing.T) {
	path := os.Getenv("GPUWARDEN_DS01_LIMITS")
	if path == "" {
		path = "../../../shared/reference/ds01-resource-limits.yaml"
	}
	if _, err := os.Stat(path); err != nil {
		t.Skipf("DS01's published resource-limits.yaml is not at %s (set GPUWARDEN_DS01_LIMITS): %v", path, err)
	}
	res, err := Convert(Sources{Limits: path}, now)
	if err != nil {
		t.Fatal(err)
	}
	qs, ps := split(res)
	for _, tc := range []struct {
		group                     string
		gpuEq, perContainer, idle string
	}{
		{"student", "2", "2", "30m0s"}, {"researcher", "4", "3", "1h0m0s"}, {"faculty", "4", "4", "2h0m0s"}, {"admin", "unlimited", "unlimited", "1h0m0s"},
	} {
		q := resolve.EffectiveQuota(qs, "u", []string{tc.group}, nil)
		p, _ := resolve.EffectivePolicy(ps, resolve.Container{User: "u", Groups: []string{tc.group}, Type: gpuwardenv1alpha1.ContainerTypeManaged}, now)
		idle, _ := p.Get("idle.timeout")
		got := fmt.Sprint(limit(q.GPUEquivalents.Set, q.GPUEquivalents.Unlimited, q.GPUEquivalents.Value), " ",
			limit(q.MaxGPUsPerContainer.Set, q.MaxGPUsPerContainer.Unlimited, q.MaxGPUsPerContainer.Value), " ", idle)
		if want := tc.gpuEq + " " + tc.perContainer + " " + tc.idle; got != want {
			t.Errorf("%s: %s, want %s", tc.group, got, want)
		}
	}
}

// FuzzConvert: whatever resource-limits.yaml holds, the import returns manifests or an error
// naming the file, never a panic.
func FuzzConvert(f *testing.F) {
	seed, _ := os.ReadFile("testdata/resource-limits.yaml")
	f.Add(seed)
	for _, s := range []string{"", "defaults: 5", "groups: {a: {max_gpu_equivalents: [1]}}", "defaults: {memory: 1zb, max_cpus: -3}", "container_types: {docker: {idle_timeout_h: nope}}", "groups:\n  x:\n    members: [\"a b\", 7]\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "rl.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := Convert(Sources{Limits: path}, now)
		if err != nil && !strings.Contains(err.Error(), "--limits") {
			t.Errorf("an error that names no file: %v", err)
		}
		for _, o := range res.Objects {
			if o.GetName() == "" {
				t.Errorf("an object without a name: %#v", o)
			}
		}
	})
}

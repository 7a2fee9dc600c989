package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestImportDS01: gpuwarden import ds01 converts DS01's files, kubectl applies the result
// cleanly to a real server, and gpuwarden explain user gives the limits DS01's files give, with
// the object that set each.
func TestImportDS01(t *testing.T) {
	requireKubectl(t)
	td := filepath.Join("..", "..", "internal", "ds01", "testdata")
	dir := t.TempDir()
	manifests := filepath.Join(dir, "ds01.yaml")
	cmd := exec.Command(binary(t), "import", "ds01", "--limits", filepath.Join(td, "resource-limits.yaml"), "--groups", filepath.Join(td, "groups"),
		"--overrides", filepath.Join(td, "user-overrides.yaml"), "--exemptions", filepath.Join(td, "lifecycle-exemptions.yaml"), "-o", manifests)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "warning: groups.admin.turbo_mode: not a key gpuwarden knows") {
		t.Fatalf("gpuwarden import ds01: %v\n%s", err, out)
	}
	sources := []string{manifests}
	if published := "../../../shared/reference/ds01-resource-limits.yaml"; fileExists(published) {
		// DS01's own published file (without member files: its groups are host groups) applies too.
		p := filepath.Join(dir, "published.yaml")
		if out, err := exec.Command(binary(t), "import", "ds01", "--limits", published, "-o", p).CombinedOutput(); err != nil {
			t.Fatalf("gpuwarden import ds01 of the published file: %v\n%s", err, out)
		}
		sources = append(sources, p)
	} else {
		t.Logf("DS01's published resource-limits.yaml is not at %s: only the hand-written files are applied", published)
	}
	s := startServer(t, filepath.Join(dir, "data"), "e2e-import")
	for _, f := range sources[:1] {
		if out, err := kubectl(t, s.kubeconfig, "", "apply", "-f", f); err != nil {
			t.Fatalf("kubectl apply -f %s: %v\n%s", f, err, out)
		}
	}
	if len(sources) > 1 {
		// Into a second server: the two imports share object names.
		s2 := startServer(t, filepath.Join(dir, "data2"), "e2e-import2")
		if out, err := kubectl(t, s2.kubeconfig, "", "apply", "-f", sources[1]); err != nil {
			t.Errorf("kubectl apply of the published import: %v\n%s", err, out)
		}
		explain := func(user, group string) string {
			out, _ := exec.Command(binary(t), "explain", "user", user, "--kubeconfig", s2.kubeconfig, "--groups", group, "--container-type", "managed").CombinedOutput()
			return string(out)
		}
		for group, lines := range map[string][]string{
			"researcher": {`gpuEquivalents\s+4\s+GPUQuota ds01-group-researcher`, `maxGPUsPerContainer\s+3\s+GPUQuota ds01-group-researcher`, `idle.timeout\s+1h0m0s\s+ContainerPolicy ds01-group-researcher-managed`},
			"faculty":    {`gpuEquivalents\s+4\s+GPUQuota ds01-group-faculty`, `maxGPUsPerContainer\s+4\s+GPUQuota ds01-group-faculty`, `idle.timeout\s+2h0m0s\s+ContainerPolicy ds01-group-faculty-managed`},
			"admin":      {`gpuEquivalents\s+unlimited\s+GPUQuota ds01-group-admin`, `resources.memory\s+128Gi\s+ContainerPolicy ds01-group-admin`},
			"student":    {`gpuEquivalents\s+2\s+GPUQuota ds01-group-student`, `idle.timeout\s+30m0s\s+ContainerPolicy ds01-group-student-managed`},
		} {
			got := explain("u-"+group, group)
			for _, l := range lines {
				if !regexp.MustCompile(l).MatchString(got) {
					t.Errorf("explain user in %s lacks %s:\n%s", group, l, got)
				}
			}
		}
	}
	explain := func(user, ctype string) string {
		out, err := exec.Command(binary(t), "explain", "user", user, "--kubeconfig", s.kubeconfig, "--groups", "", "--container-type", ctype).CombinedOutput()
		if err != nil {
			t.Errorf("gpuwarden explain user %s: %v\n%s", user, err, out)
		}
		return string(out)
	}
	for _, tc := range []struct {
		user, ctype string
		lines       []string
	}{
		// alice's override layered over her group: her own GPU-equivalents and idle timeout, the
		// researchers' per-container cap and runtime.
		{"alice", "managed", []string{`gpuEquivalents\s+6\s+GPUQuota ds01-user-alice`, `maxGPUsPerContainer\s+3\s+GPUQuota ds01-group-researcher`,
			`idle.timeout\s+unlimited\s+ContainerPolicy ds01-user-alice-managed`, `maxRuntime\s+48h0m0s\s+ContainerPolicy ds01-group-researcher-managed`,
			`idle.cpuPercent\s+1\s+ContainerPolicy ds01-user-alice`}},
		{"sam", "docker", []string{`gpuEquivalents\s+2\s+GPUQuota ds01-group-student`, `idle.timeout\s+unlimited\s+ContainerPolicy ds01-exempt-sam-1`,
			`maxRuntime\s+48h0m0s\s+ContainerPolicy ds01-type-docker`}},
		{"someone-new", "devcontainer", []string{`gpuEquivalents\s+2\s+GPUQuota ds01-defaults`, `maxRuntime\s+168h0m0s\s+ContainerPolicy ds01-type-devcontainer`,
			`stopGracePeriod\s+30s\s+ContainerPolicy ds01-type-devcontainer`}},
		{"ada", "managed", []string{`gpuEquivalents\s+unlimited\s+GPUQuota ds01-group-admin`, `maxContainers\s+10\s+GPUQuota ds01-group-admin`,
			`gpuHoldAfterStop\s+1h0m0s\s+ContainerPolicy ds01-group-admin`}},
	} {
		got := explain(tc.user, tc.ctype)
		for _, l := range tc.lines {
			if !regexp.MustCompile(l).MatchString(got) {
				t.Errorf("explain user %s (%s) lacks %s:\n%s", tc.user, tc.ctype, l, got)
			}
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Package arch checks the project's layering rules on the real import graph.
package arch

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/gpuwarden/gpuwarden"

// deps returns what pkg imports, directly or not, within the module.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", module+"/"+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var own []string
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, module+"/") && d != module+"/"+pkg {
			own = append(own, strings.TrimPrefix(d, module+"/"))
		}
	}
	return own
}

// TestLayers: the API types import nothing of gpuwarden; the decision packages import no
// back end (Docker, NVML, /proc, the audit log) and no controller; the manager knows
// nothing of the controllers (the command wires them).
func TestLayers(t *testing.T) {
	backEnds := []string{"controllers", "internal/docker", "internal/gpu", "internal/proc", "internal/audit", "internal/manager", "cmd/"}
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{"api/v1alpha1", []string{""}},
		{"internal/allocation", backEnds},
		{"internal/resolve", backEnds},
		{"internal/lifecycle", backEnds},
		{"internal/labels", backEnds},
		{"internal/manager", []string{"controllers"}},
	}
	for _, r := range rules {
		for _, d := range deps(t, r.pkg) {
			for _, f := range r.forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s imports %s", r.pkg, d)
				}
			}
		}
	}
}

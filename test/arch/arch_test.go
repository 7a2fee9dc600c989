// Package arch checks the project's layering rules on the real import graph.
package arch

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
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

// TestErrorsAreWrapped: an error passed to fmt.Errorf is wrapped with %w, so that callers
// can still tell what it was (errors.Is, apierrors.IsConflict).
func TestErrorsAreWrapped(t *testing.T) {
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	root := strings.TrimSpace(string(top))
	out, err := exec.Command("git", "-C", root, "ls-files", "*.go").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	fset := token.NewFileSet()
	for _, name := range strings.Fields(string(out)) {
		if strings.HasSuffix(name, "_test.go") || strings.HasPrefix(name, "api/") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(root, name), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Errorf" {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "fmt" {
				return true
			}
			format, ok := call.Args[0].(*ast.BasicLit)
			if !ok {
				return true
			}
			for _, a := range call.Args[1:] {
				if id, ok := a.(*ast.Ident); ok && (id.Name == "err" || strings.HasSuffix(id.Name, "Err")) && !strings.Contains(format.Value, "%w") {
					t.Errorf("%s: fmt.Errorf(%s, …%s…) does not wrap the error with %%w", fset.Position(call.Pos()), format.Value, id.Name)
				}
			}
			return true
		})
	}
}

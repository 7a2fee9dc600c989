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
	backEnds := []string{"controllers", "internal/docker", "internal/gpu", "internal/proc", "internal/audit", "internal/manager", "internal/notify", "internal/actions", "cmd/"}
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

// packages lists the module's packages under dir (relative to the module root).
func packages(t *testing.T, dir string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", module+"/"+dir+"/...").Output()
	if err != nil {
		t.Fatalf("go list %s/...: %v", dir, err)
	}
	var pkgs []string
	for _, p := range strings.Fields(string(out)) {
		pkgs = append(pkgs, strings.TrimPrefix(p, module+"/"))
	}
	return pkgs
}

// TestControllersDoNotImportEachOther: each controller is a package of its own under
// controllers/; what several share lives below them in a package named for what it owns,
// and only controllers/ itself (the wiring) imports the controllers.
func TestControllersDoNotImportEachOther(t *testing.T) {
	ctrls := packages(t, "controllers")
	if len(ctrls) < 8 {
		t.Fatalf("controllers/ has %d packages (%v); want one per controller", len(ctrls), ctrls)
	}
	for _, p := range ctrls {
		if p == "controllers" {
			continue
		}
		for _, d := range deps(t, p) {
			if d == "controllers" || strings.HasPrefix(d, "controllers/") {
				t.Errorf("controller package %s imports %s", p, d)
			}
		}
	}
	for _, p := range packages(t, "internal") {
		for _, d := range deps(t, p) {
			if d == "controllers" || strings.HasPrefix(d, "controllers/") {
				t.Errorf("%s imports controller package %s", p, d)
			}
		}
	}
}

// TestNoCatchAllPackages: a package is named for what it owns, never common or util.
func TestNoCatchAllPackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{.Name}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, name, _ := strings.Cut(line, " ")
		for _, bad := range []string{"common", "util", "utils", "helpers", "misc"} {
			if name == bad || strings.HasSuffix(path, "/"+bad) {
				t.Errorf("package %s is named %s: name it for what it owns", path, name)
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

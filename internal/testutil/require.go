// Package testutil holds small helpers shared by tests.
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true), where a missing dependency is a failure.
func InCI() bool {
	v := os.Getenv("CI")
	return v == "true" || v == "1"
}

// Require skips the test when a dependency is missing, or fails it in CI so that a green
// CI run always means the real parts ran.
func Require(tb testing.TB, ok bool, format string, args ...any) {
	tb.Helper()
	if ok {
		return
	}
	if InCI() {
		tb.Fatalf("missing test dependency (CI=true, so this fails instead of skipping): "+format, args...)
	}
	tb.Skipf("missing test dependency: "+format, args...)
}

// Tool returns the path of an executable the test needs, skipping (or, in CI, failing)
// when it is not installed (hack/install-deps.sh installs them).
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	Require(tb, err == nil, "%s is not installed (run hack/install-deps.sh)", name)
	return path
}

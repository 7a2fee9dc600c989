package version

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	gpuversion "github.com/gpuwarden/gpuwarden/internal/version"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestVersionShowsWhatTheBuildStamped(t *testing.T) {
	defer func(v, c, d string) { gpuversion.Version, gpuversion.Commit, gpuversion.Date = v, c, d }(gpuversion.Version, gpuversion.Commit, gpuversion.Date)
	gpuversion.Version, gpuversion.Commit, gpuversion.Date = "v1.2.3", "abc123", "2026-12-01T10:00:00Z"
	out, err := run(t)
	if err != nil || !strings.HasPrefix(out, "gpuwarden v1.2.3 (commit abc123, built 2026-12-01T10:00:00Z;") {
		t.Errorf("version: %v %q", err, out)
	}
	out, err = run(t, "-o", "json")
	var i Info
	if err != nil || json.Unmarshal([]byte(out), &i) != nil || i.Version != "v1.2.3" || i.Commit != "abc123" || i.Date != "2026-12-01T10:00:00Z" || i.Platform == "" {
		t.Errorf("version -o json: %v %q", err, out)
	}
	if _, err := run(t, "-o", "yaml"); err == nil || !strings.Contains(err.Error(), `-o "yaml"`) {
		t.Errorf("version -o yaml: %v", err)
	}
}

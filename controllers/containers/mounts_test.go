package containers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
)

// A user's container that the engine started again on a bind source swapped for a link to /
// since its create is stopped, whatever the policy's mode; one on an unmoved path runs on.
func TestContainerOnAMovedMountIsStopped(t *testing.T) {
	home, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"d", "kept"} {
		if err := os.Mkdir(filepath.Join(home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	lbl := func() map[string]string {
		return map[string]string{gpuwardenv1alpha1.LabelUser: "alice", gpuwardenv1alpha1.LabelManaged: "true"}
	}
	moved := docker.Container{ID: "moved", Name: "moved", State: docker.StateRunning, StartedAt: t0, Labels: lbl(), BindSources: []string{filepath.Join(home, "d")}}
	kept := docker.Container{ID: "kept", Name: "kept", State: docker.StateRunning, StartedAt: t0, Labels: lbl(), BindSources: []string{filepath.Join(home, "kept")}}
	e := newContainerTest(t, nil, moved, kept)
	if err := os.Remove(filepath.Join(home, "d")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(home, "d")); err != nil {
		t.Fatal(err)
	}
	e.reconcile("moved")
	e.reconcile("kept")
	if c, _ := e.engine.Container("moved"); c.State != docker.StateExited {
		t.Errorf("the container on the moved mount is %s; want it stopped", c.State)
	}
	if c, _ := e.engine.Container("kept"); c.State != docker.StateRunning {
		t.Errorf("the container on an unmoved mount is %s", c.State)
	}
	var denied []string
	for _, ev := range e.audit.Events() {
		if ev.Type == audit.TypeAuthDenied {
			denied = append(denied, ev.User+" "+ev.Details["reason"].(string))
		}
	}
	if len(denied) != 1 || !strings.Contains(denied[0], "alice mount_moved") || !strings.Contains(denied[0], "resolves to /") {
		t.Errorf("auth.denied records: %q", denied)
	}
}

package notify

import (
	"context"
	"strings"
	"testing"

	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/docker/dockertest"
)

// TestTheNoticeFileReachesAnyImage: an image without the policy's directory (no /workspace)
// still gets its notice, in /tmp; one with it gets it where the policy says.
func TestTheNoticeFileReachesAnyImage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noDir     bool
		wantPath  string
		wantNotAt string
	}{
		{"the image has /workspace", false, "/workspace/.gpuwarden-notice", "/tmp/.gpuwarden-notice"},
		{"the image has no /workspace", true, "/tmp/.gpuwarden-notice", "/workspace/.gpuwarden-notice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := dockertest.New(docker.Container{ID: "c1", Name: "nb", State: docker.StateExited})
			if tc.noDir {
				eng.NoDir("c1", "/workspace")
			}
			n := &Notifier{Engine: eng}
			n.Tell(context.Background(), Notice{Type: "lifecycle.idle_stop", User: "nobody-here", Container: "nb", ContainerID: "c1",
				Message: "Idle for 30m", File: "/workspace/.gpuwarden-notice", Title: "STOPPED"})
			got, ok := eng.File("c1", tc.wantPath)
			if !ok || !strings.Contains(string(got), "Idle for 30m") {
				t.Errorf("no notice at %s (%q)", tc.wantPath, got)
			}
			if _, ok := eng.File("c1", tc.wantNotAt); ok {
				t.Errorf("a notice at %s too", tc.wantNotAt)
			}
		})
	}
}

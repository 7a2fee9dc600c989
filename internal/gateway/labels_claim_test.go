package gateway

import (
	"testing"

	"github.com/moby/moby/api/types/container"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/labels"
)

// TestClaimedTypeIsMarked: a type that a non-admin's own labels give a container is marked
// claimed (the policies take it at its word only where the admin says so); the caller
// cannot set or clear the mark; docker, and whatever an admin creates, are not claims.
func TestClaimedTypeIsMarked(t *testing.T) {
	s := &Server{}
	alice := Caller{Name: "alice"}
	for _, tc := range []struct {
		name    string
		caller  Caller
		labels  map[string]string
		typ     gpuwardenv1alpha1.ContainerType
		claimed bool
	}{
		{"devcontainer label", alice, map[string]string{labels.DevcontainerDir: "/home/alice/p"}, gpuwardenv1alpha1.ContainerTypeDevcontainer, true},
		{"compose label", alice, map[string]string{labels.ComposeProject: "web"}, gpuwardenv1alpha1.ContainerTypeCompose, true},
		{"a mark the caller clears is set again", alice, map[string]string{labels.DevcontainerDir: "/home/alice/p", gpuwardenv1alpha1.LabelTypeClaimed: "false"}, gpuwardenv1alpha1.ContainerTypeDevcontainer, true},
		{"a type label the caller sets is dropped", alice, map[string]string{gpuwardenv1alpha1.LabelContainerType: "devcontainer"}, gpuwardenv1alpha1.ContainerTypeDocker, false},
		{"plain docker claims nothing", alice, map[string]string{gpuwardenv1alpha1.LabelTypeClaimed: "true"}, gpuwardenv1alpha1.ContainerTypeDocker, false},
		{"an admin's labels are trusted", Caller{Name: "root", Admin: true}, map[string]string{labels.DevcontainerDir: "/home/root/p"}, gpuwardenv1alpha1.ContainerTypeDevcontainer, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &container.Config{Labels: tc.labels}
			if got := s.setLabels(tc.caller, cfg); got != tc.typ {
				t.Errorf("type = %q, want %q", got, tc.typ)
			}
			if got := labels.TypeClaimed(cfg.Labels); got != tc.claimed {
				t.Errorf("claimed = %v, want %v (labels %v)", got, tc.claimed, cfg.Labels)
			}
			if got := labels.ContainerType(cfg.Labels); got != tc.typ {
				t.Errorf("the labels give type %q, want %q", got, tc.typ)
			}
		})
	}
}

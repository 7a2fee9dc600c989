package labels

import (
	"testing"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

func TestOwner(t *testing.T) {
	tests := []struct {
		name       string
		labels     map[string]string
		user, from string
	}{
		{"gpuwarden label first", map[string]string{gpuwardenv1alpha1.LabelUser: "alice", DS01User: "bob"}, "alice", OwnerGPUWarden},
		{"DS01 label", map[string]string{DS01User: "bob", AIMEUser: "carol"}, "bob", OwnerDS01},
		{"AIME label", map[string]string{AIMEUser: "carol"}, "carol", OwnerAIME},
		{"JupyterHub", map[string]string{JupyterUser: "dave"}, "dave", OwnerJupyter},
		{"devcontainer folder", map[string]string{DevcontainerDir: "/home/erin/projects/x"}, "erin", OwnerDevcontainer},
		{"devcontainer folder outside /home", map[string]string{DevcontainerDir: "/srv/x"}, "", OwnerUnknown},
		{"compose working dir", map[string]string{ComposeProject: "web", ComposeWorkingDir: "/home/frank/web"}, "frank", OwnerCompose},
		{"invalid user name skipped", map[string]string{gpuwardenv1alpha1.LabelUser: "../etc", DS01User: "gina"}, "gina", OwnerDS01},
		{"blank label skipped", map[string]string{gpuwardenv1alpha1.LabelUser: " ", AIMEUser: "hank"}, "hank", OwnerAIME},
		{"nothing", map[string]string{"other": "x"}, "", OwnerUnknown},
		{"nil labels", nil, "", OwnerUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			user, from := Owner(tc.labels)
			if user != tc.user || from != tc.from {
				t.Errorf("Owner = %q, %q; want %q, %q", user, from, tc.user, tc.from)
			}
		})
	}
}

func TestContainerType(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   gpuwardenv1alpha1.ContainerType
	}{
		{"gpuwarden label", map[string]string{gpuwardenv1alpha1.LabelContainerType: "notebook", DS01ContainerType: "compose"}, gpuwardenv1alpha1.ContainerTypeNotebook},
		{"DS01 label", map[string]string{DS01ContainerType: "devcontainer"}, gpuwardenv1alpha1.ContainerTypeDevcontainer},
		{"DS01 interface names are managed", map[string]string{DS01ContainerType: "atomic"}, gpuwardenv1alpha1.ContainerTypeManaged},
		{"unknown label value falls through", map[string]string{gpuwardenv1alpha1.LabelContainerType: "weird", ComposeProject: "p"}, gpuwardenv1alpha1.ContainerTypeCompose},
		{"devcontainer metadata", map[string]string{DevcontainerMeta: "[]"}, gpuwardenv1alpha1.ContainerTypeDevcontainer},
		{"compose project", map[string]string{ComposeProject: "web"}, gpuwardenv1alpha1.ContainerTypeCompose},
		{"jupyter", map[string]string{JupyterUser: "x"}, gpuwardenv1alpha1.ContainerTypeNotebook},
		{"DS01 managed", map[string]string{DS01Managed: "true"}, gpuwardenv1alpha1.ContainerTypeManaged},
		{"plain docker", nil, gpuwardenv1alpha1.ContainerTypeDocker},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ContainerType(tc.labels); got != tc.want {
				t.Errorf("ContainerType = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTypeClaimedAndTypeLabel(t *testing.T) {
	if !TypeClaimed(map[string]string{gpuwardenv1alpha1.LabelTypeClaimed: "true"}) || TypeClaimed(map[string]string{DevcontainerDir: "/home/a/p"}) {
		t.Error("TypeClaimed reads gpuwarden.io/type-claimed only")
	}
	for want, l := range map[string]map[string]string{
		DevcontainerDir: {DevcontainerDir: "/home/a/p", gpuwardenv1alpha1.LabelContainerType: "devcontainer"},
		ComposeProject:  {ComposeProject: "web"},
		"":              {gpuwardenv1alpha1.LabelContainerType: "docker"},
	} {
		if got := TypeLabel(l); got != want {
			t.Errorf("TypeLabel(%v) = %q, want %q", l, got, want)
		}
	}
}

func TestIsProtected(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{gpuwardenv1alpha1.LabelProtected: "true"}, true},
		{map[string]string{DS01Protected: "True"}, true},
		{map[string]string{DS01Monitoring: "true"}, true},
		{map[string]string{gpuwardenv1alpha1.LabelProtected: "false"}, false},
		{nil, false},
	} {
		if got := IsProtected(tc.labels); got != tc.want {
			t.Errorf("IsProtected(%v) = %v, want %v", tc.labels, got, tc.want)
		}
	}
}

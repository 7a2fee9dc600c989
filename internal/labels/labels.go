// Package labels reads what a container's labels say about it: its owner, its type,
// its allocation and whether it is protected. gpuwarden's own labels come first, then the
// labels of the DS01 installation it replaces, then well-known ones (devcontainers, compose).
package labels

import (
	"regexp"
	"strings"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// Labels of DS01 and the tools around it.
const (
	DS01User          = "ds01.user"
	DS01ContainerType = "ds01.container_type"
	DS01Managed       = "ds01.managed"
	DS01Protected     = "ds01.protected"
	DS01Monitoring    = "ds01.monitoring"
	AIMEUser          = "aime.mlc.USER"
	DevcontainerDir   = "devcontainer.local_folder"
	DevcontainerMeta  = "devcontainer.metadata"
	ComposeProject    = "com.docker.compose.project"
	ComposeWorkingDir = "com.docker.compose.project.working_dir"
	JupyterUser       = "hub.jupyter.org/username"
)

// Owner methods: which label named the owner.
const (
	OwnerGPUWarden    = "gpuwarden"
	OwnerDS01         = "ds01"
	OwnerAIME         = "aime"
	OwnerDevcontainer = "devcontainer"
	OwnerCompose      = "compose"
	OwnerJupyter      = "jupyter"
	OwnerUnknown      = "unknown"
)

// userName is what gpuwarden accepts as a login name (the GPUAllocation spec.user rule).
var userName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@$-]*$`)

// Owner returns the container's owner and the label that named it; "" and OwnerUnknown
// when no label does. A name that is not a valid login name is ignored.
func Owner(l map[string]string) (user, method string) {
	for _, c := range []struct{ key, method string }{
		{gpuwardenv1alpha1.LabelUser, OwnerGPUWarden}, {DS01User, OwnerDS01}, {AIMEUser, OwnerAIME}, {JupyterUser, OwnerJupyter},
	} {
		if u := strings.TrimSpace(l[c.key]); validUser(u) {
			return u, c.method
		}
	}
	if u := homeUser(l[DevcontainerDir]); u != "" {
		return u, OwnerDevcontainer
	}
	if u := homeUser(l[ComposeWorkingDir]); u != "" {
		return u, OwnerCompose
	}
	return "", OwnerUnknown
}

func validUser(u string) bool { return u != "" && len(u) <= 256 && userName.MatchString(u) }

// homeUser returns <u> from /home/<u>/….
func homeUser(dir string) string {
	rest, ok := strings.CutPrefix(dir, "/home/")
	if !ok {
		return ""
	}
	u, _, _ := strings.Cut(rest, "/")
	if !validUser(u) {
		return ""
	}
	return u
}

// ContainerType returns the container's type: gpuwarden's label, DS01's, then what
// well-known labels show (devcontainer, compose, notebook), else docker.
func ContainerType(l map[string]string) gpuwardenv1alpha1.ContainerType {
	for _, key := range []string{gpuwardenv1alpha1.LabelContainerType, DS01ContainerType} {
		if t, ok := knownType(l[key]); ok {
			return t
		}
	}
	switch {
	case l[DevcontainerDir] != "" || l[DevcontainerMeta] != "":
		return gpuwardenv1alpha1.ContainerTypeDevcontainer
	case l[ComposeProject] != "":
		return gpuwardenv1alpha1.ContainerTypeCompose
	case l[JupyterUser] != "":
		return gpuwardenv1alpha1.ContainerTypeNotebook
	case l[gpuwardenv1alpha1.LabelManaged] == "true" || l[DS01Managed] == "true":
		return gpuwardenv1alpha1.ContainerTypeManaged
	}
	return gpuwardenv1alpha1.ContainerTypeDocker
}

// TypeClaimed reports whether the container's type is one its owner claimed by label on a
// create through the Docker gateway (gpuwarden.io/type-claimed), not one an admin or a
// member of the docker group set: policies take it at its word only where they say so.
func TypeClaimed(l map[string]string) bool {
	return isTrue(l[gpuwardenv1alpha1.LabelTypeClaimed])
}

// TypeLabel returns the label that gives the container its type as the well-known labels
// show it (devcontainer.local_folder, com.docker.compose.project, …), ignoring
// gpuwarden's and DS01's own type labels; "" when none does (a docker container).
func TypeLabel(l map[string]string) string {
	for _, key := range []string{DevcontainerDir, DevcontainerMeta, ComposeProject, JupyterUser} {
		if l[key] != "" {
			return key
		}
	}
	for _, key := range []string{gpuwardenv1alpha1.LabelManaged, DS01Managed} {
		if l[key] == "true" {
			return key
		}
	}
	return ""
}

// knownType maps a label value to a container type; DS01's interface names (atomic,
// orchestration, api) were its managed containers.
func knownType(v string) (gpuwardenv1alpha1.ContainerType, bool) {
	switch t := gpuwardenv1alpha1.ContainerType(strings.ToLower(strings.TrimSpace(v))); t {
	case gpuwardenv1alpha1.ContainerTypeManaged, gpuwardenv1alpha1.ContainerTypeDevcontainer, gpuwardenv1alpha1.ContainerTypeCompose,
		gpuwardenv1alpha1.ContainerTypeDocker, gpuwardenv1alpha1.ContainerTypeNotebook, gpuwardenv1alpha1.ContainerTypeAdopted,
		gpuwardenv1alpha1.ContainerTypeUnknown:
		return t, true
	case "atomic", "orchestration", "api":
		return gpuwardenv1alpha1.ContainerTypeManaged, true
	case "vscode":
		return gpuwardenv1alpha1.ContainerTypeDevcontainer, true
	}
	return "", false
}

// IsProtected reports whether the container must never be stopped or removed by gpuwarden
// (gpuwarden.io/protected, or DS01's protected and monitoring labels).
func IsProtected(l map[string]string) bool {
	return isTrue(l[gpuwardenv1alpha1.LabelProtected]) || isTrue(l[DS01Protected]) || isTrue(l[DS01Monitoring])
}

func isTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "1":
		return true
	}
	return false
}

// OfAllocation are the labels a policy selects an allocation's container by while only the
// allocation is known (no container yet, or one on another node): its type, claimed when
// it is not the plain docker a create without a claim gets.
func OfAllocation(a *gpuwardenv1alpha1.GPUAllocation) map[string]string {
	t := a.Spec.ContainerType
	if t == "" {
		t = gpuwardenv1alpha1.ContainerTypeDocker
	}
	l := map[string]string{gpuwardenv1alpha1.LabelContainerType: string(t)}
	if t != gpuwardenv1alpha1.ContainerTypeDocker {
		l[gpuwardenv1alpha1.LabelTypeClaimed] = "true"
	}
	return l
}

package containerstore

import (
	"sync"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/proc"
)

// Owners is the one rule for who owns a container, used by every record and decision
// about it (audit records, policy choice, adoption, unmanaged use): the labels that name an
// owner (internal/labels), else the user its main process runs as when that is not root.
// The allocation a label names never makes its user the owner: a label is a claim, not
// proof. An owner once known is remembered, so that a container that has stopped (no
// process to ask) keeps it. Safe for concurrent use.
type Owners struct {
	Proc proc.FS

	mu    sync.Mutex
	known map[string]string
}

// Of returns c's owner; "" when nothing tells.
func (o *Owners) Of(c docker.Container) string {
	if u, _ := labels.Owner(c.Labels); u != "" {
		return u
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if u := o.known[c.ID]; u != "" {
		return u
	}
	if c.PID <= 0 {
		return ""
	}
	p, err := o.Proc.Read(c.PID)
	if err != nil || p.UID == "0" || p.UID == "" || p.User == p.UID {
		return ""
	}
	if o.known == nil {
		o.known = map[string]string{}
	}
	o.known[c.ID] = p.User
	return p.User
}

// OrUnknown returns c's owner, or UnknownUser.
func (o *Owners) OrUnknown(c docker.Container) string { return OwnerOrUnknown(o.Of(c)) }

// Forget drops what is remembered of a container that is gone.
func (o *Owners) Forget(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.known, id)
}

func OwnerOrUnknown(u string) string {
	if u == "" {
		return gpuwardenv1alpha1.UnknownUser
	}
	return u
}

// AuditRef is the container as audit records name it.
func AuditRef(c docker.Container) audit.Container {
	return audit.Container{ID: c.ID, Name: c.Name, Image: c.Image, Type: string(labels.ContainerType(c.Labels))}
}

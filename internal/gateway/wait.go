package gateway

import (
	"context"
	"fmt"
	"net/http"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/message"
)

// DefaultMaxWait bounds the wait a create may ask for (label gpuwarden.io/wait) where no
// ContainerPolicy sets queue.maxWait.
const DefaultMaxWait = 24 * time.Hour

// maxWaitLabel bounds the label's length: a duration is short.
const maxWaitLabel = 32

// askedWait is the wait a create's label gpuwarden.io/wait asks for; 0 when it asks none.
// Read before the gateway drops its callers' gpuwarden.io/ labels.
func askedWait(labels map[string]string) (time.Duration, error) {
	v, ok := labels[gpuwardenv1alpha1.LabelWait]
	if !ok {
		return 0, nil
	}
	if len(v) > maxWaitLabel {
		return 0, &refusal{status: http.StatusBadRequest, msg: fmt.Sprintf("label %s is %d characters long; a wait is a duration such as 30m or 8h", gpuwardenv1alpha1.LabelWait, len(v))}
	}
	d, err := time.ParseDuration(v)
	if err == nil && d > 0 && d < time.Second {
		return 0, &refusal{status: http.StatusBadRequest, msg: fmt.Sprintf("label %s=%q is shorter than a second: wait at least 1s", gpuwardenv1alpha1.LabelWait, v)}
	}
	if err != nil || d <= 0 {
		return 0, &refusal{status: http.StatusBadRequest, msg: fmt.Sprintf("label %s=%q is not a wait: give a duration such as 30m, 8h or 1h30m", gpuwardenv1alpha1.LabelWait, v)}
	}
	return d, nil
}

// boundWait checks the wait asked for against the container's policy, queue.maxWait
// (DefaultMaxWait where none sets it), and returns that bound: a wait asked for beyond it
// is refused, naming the bound and who set it.
func (s *Server) boundWait(ctx context.Context, asked time.Duration, owner string, labels map[string]string) (time.Duration, error) {
	bound, from := DefaultMaxWait, "the gateway's default"
	if s.Policies != nil {
		p, err := s.Policies.Effective(ctx, owner, labels)
		if err != nil {
			return 0, fmt.Errorf("reading the container policies: %w", err)
		}
		if l := p.Duration("queue.maxWait"); l.Applies() {
			bound, from = l.Duration, l.From
		}
	}
	if asked > bound {
		return 0, refused("label %s=%s asks to wait longer than the %s allowed (queue.maxWait, %s): ask for %s at most",
			gpuwardenv1alpha1.LabelWait, message.Duration(asked), message.Duration(bound), from, message.Duration(bound))
	}
	return bound, nil
}

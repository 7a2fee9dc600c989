package containers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// announce tells a container's owner, once for each, of the removal and the release of held
// GPUs the policy has scheduled, and when: through the notice file and the policy's webhook,
// like an idle warning, and an Event on the allocation. Only what the mode will really do is
// announced: a removal under Enforce, a release under Enforce or NotifyOnly.
func (r *Reconciler) announce(ctx context.Context, c docker.Container, owner string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, coming []lifecycle.Coming) {
	mode := p.Mode()
	user := containerstore.OwnerOrUnknown(owner)
	var said []string
	typ := ""
	for _, k := range coming {
		var reason, text, kind string
		switch {
		case k.Action == lifecycle.Remove && mode == gpuwardenv1alpha1.ModeEnforce:
			reason, kind = reasons.EventRemovalScheduled, notify.TypeRemoveWarning
			text = fmt.Sprintf("It will be removed at %s (%s, set by %s): its writable layer, whatever it wrote outside volumes and bind mounts, is lost then. Start it again (docker start %s) to keep it.",
				k.At.UTC().Format(time.RFC3339), k.Limit, k.Policy, message.ContainerName(c))
		case k.Action == lifecycle.ReleaseGPUs && mode != gpuwardenv1alpha1.ModeDryRun && a != nil:
			reason, kind = reasons.EventReleaseScheduled, notify.TypeReleaseWarning
			text = fmt.Sprintf("Its GPUs go back at %s (%s, set by %s); start it before then to keep them.",
				k.At.UTC().Format(time.RFC3339), k.Limit, k.Policy)
		default:
			continue
		}
		if !r.Actions.Once(c.ID, "announced/"+string(k.Action)+"/"+k.At.UTC().Format(time.RFC3339)) {
			continue
		}
		if a != nil {
			r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, reason, "Announce", "Container %s of %s: %s", message.ContainerName(c), user, text)
		}
		said = append(said, text)
		if typ == "" || kind == notify.TypeRemoveWarning {
			typ = kind // a removal heads the notice
		}
	}
	if len(said) == 0 {
		return
	}
	allocation := ""
	if a != nil {
		allocation = a.Name
	}
	// One notice for all that is newly scheduled: the notice file holds the last one told.
	n := notify.For(c, user, allocation, p, r.NodeName, r.Clock.Now())
	n.Type, n.Title, n.Message = typ, "NOTICE", strings.Join(said, "\n")
	r.Actions.Tell(ctx, n)
}

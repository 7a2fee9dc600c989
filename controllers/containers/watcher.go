package containers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/logging"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
)

// Watcher keeps the containerstore.Store in step with the Docker engine: it opens the
// events stream, then lists every container (so nothing that happens in between is lost),
// then follows the stream; after any break it does the same again. It records each
// container's create, start, stop, die and remove in the audit log and hands every changed
// container to the container controller. A failed list or a broken stream marks the store
// unsynced: it is never taken as "the containers are gone".
type Watcher struct {
	Engine   docker.Engine
	Store    *containerstore.Store
	Client   client.Client
	NodeName string
	Clock    clock.PassiveClock
	Recorder recorder.EventRecorder
	Audit    audit.Logger
	// Owners says who owns a container (shared with the container controller).
	Owners *containerstore.Owners
	// Changed receives the ID (as the object name) of every container to look at.
	Changed chan<- event.GenericEvent
	// RetryInterval is the first wait before reconnecting; it doubles up to 30 s.
	RetryInterval time.Duration
}

// conditionRecheck is how often the DockerReachable condition is checked on the node's GPUs.
const conditionRecheck = 2 * time.Second

// DefaultDockerRetry is the first wait before reconnecting to Docker.
const DefaultDockerRetry = time.Second

// NeedLeaderElection: only the node's active controller acts on its containers.
func (w *Watcher) NeedLeaderElection() bool { return true }

// Start runs until ctx ends.
func (w *Watcher) Start(ctx context.Context) error {
	if w.Owners == nil {
		w.Owners = &containerstore.Owners{}
	}
	log := ctrl.LoggerFrom(ctx).WithName("container-watcher")
	ctx = ctrl.LoggerInto(ctx, log)
	first, wait, down := true, w.RetryInterval, false
	var since, said time.Time // when the outage began, when it was last logged
	for ctx.Err() == nil {
		err := w.session(ctx, first, func() {
			if down || first {
				w.sayConnected(ctx, since)
			}
			first, wait, down = false, w.RetryInterval, false
			w.connected(ctx)
		})
		if ctx.Err() != nil {
			return nil
		}
		now := w.Clock.Now()
		if !down {
			w.unreachable(ctx, err)
			down, since, said = true, now, now
			logging.Warning(log, "container-watcher", "The Docker engine is unreachable; no container is governed and no GPU is released until it is back. "+
				"Start the Docker engine, or run gpuwarden with --docker-host none to govern no containers", "error", err.Error())
		} else if now.Sub(said) >= outageReminder {
			said = now
			logging.Warning(log, "container-watcher", "The Docker engine is still unreachable", "for", now.Sub(since).Round(time.Second).String(), "error", err.Error())
		}
		log.V(1).Info("Retrying the Docker engine", "in", wait, "error", err.Error())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
	return nil
}

// outageReminder is how often at most an outage that goes on is logged again.
const outageReminder = time.Minute

// sayConnected logs the connection: after an outage, how long it lasted.
func (w *Watcher) sayConnected(ctx context.Context, since time.Time) {
	log := ctrl.LoggerFrom(ctx)
	if since.IsZero() {
		log.Info("Connected to the Docker engine")
		return
	}
	log.Info("Connected to the Docker engine again", "after", w.Clock.Since(since).Round(time.Second).String())
}

// session opens the stream, relists and follows the stream until it breaks.
func (w *Watcher) session(ctx context.Context, first bool, synced func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, errs, err := w.Engine.Events(ctx)
	if err != nil {
		return err
	}
	list, err := w.Engine.List(ctx)
	if err != nil {
		return err
	}
	added, removed, changed := w.Store.Replace(list, w.Clock.Now())
	if !first {
		// Whatever happened while the stream was down, recorded as the engine shows it now.
		for _, c := range added {
			w.record(ctx, audit.ContainerCreate, c, "seen after reconnecting to Docker")
		}
		for _, c := range removed {
			w.record(ctx, audit.ContainerRemove, c, "removed while Docker was unreachable")
		}
		for _, c := range list {
			if prev, ok := changed[c.ID]; ok && prev.State != c.State {
				action := audit.ContainerDie
				if c.State == docker.StateRunning {
					action = audit.ContainerStart
				}
				w.record(ctx, action, c, "seen after reconnecting to Docker")
			}
		}
	}
	synced()
	w.enqueueAll(ctx, list, removed)
	// GPUs that appear later (the inventory creates them) get the condition too.
	recheck := time.NewTicker(conditionRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-recheck.C:
			w.connected(ctx)
		case e, ok := <-events:
			if !ok {
				return <-errs
			}
			if err := w.handle(ctx, e); err != nil {
				return err
			}
		case err := <-errs:
			if err == nil {
				err = errors.New("the Docker events stream ended")
			}
			return err
		}
	}
}

// handle applies one event to the store, records it and passes the container on. A
// container the engine does not describe after an event (its inspect failed) ends the
// session: the store would otherwise keep a state the event says is past, and decisions
// (a release, a removal) be taken on it; the listing that follows brings it up to date and
// records what changed.
func (w *Watcher) handle(ctx context.Context, e docker.Event) error {
	metrics.ContainerEvents.WithLabelValues(e.Action).Inc()
	var (
		c       docker.Container
		existed bool
	)
	switch e.Action {
	case "destroy":
		c, existed = w.Store.Remove(e.ID)
		if !existed && e.Time.Before(w.Store.SyncedAt()) {
			w.enqueue(ctx, e.ID)
			return nil // the listing already showed it gone and it was recorded then
		}
		if c.ID == "" {
			c = docker.Container{ID: e.ID, Name: e.Attributes["name"], Image: e.Attributes["image"], Labels: e.Attributes}
		}
		// Recorded (in memory, at once) before the hand-off, which frees the GPUs and
		// forgets the owner.
		w.record(ctx, audit.ContainerRemove, c, w.Store.TakeNote(e.ID))
		w.enqueue(ctx, e.ID)
		return nil
	case "exec_create", "exec_start", "exec_die", "exec_detach", "attach", "detach", "resize", "top", "copy",
		"archive-path", "extract-to-dir", "export", "commit", "health_status":
		return nil // nothing the controllers act on
	default:
		fresh, err := w.Engine.Inspect(ctx, e.ID)
		switch {
		case errors.Is(err, docker.ErrNotFound):
			// Removed already (docker stop, then rm at once); its destroy event follows. The
			// event still happened: record it with what was last known of the container.
			c, _, _ = w.Store.Get(e.ID)
		case err != nil:
			w.Store.SetSynced(false) // nothing is decided on what the store holds until the listing
			return fmt.Errorf("inspecting container %s after its %s event: %w", docker.ShortID(e.ID), e.Action, err)
		default:
			c = fresh
			w.Store.Put(c)
			w.enqueue(ctx, e.ID)
		}
	}
	if c.ID == "" {
		c = docker.Container{ID: e.ID, Name: e.Attributes["name"], Image: e.Attributes["image"], Labels: e.Attributes}
	}
	if action, ok := map[string]audit.ContainerAction{
		"create": audit.ContainerCreate, "start": audit.ContainerStart, "stop": audit.ContainerStop,
		"die": audit.ContainerDie, "destroy": audit.ContainerRemove,
	}[e.Action]; ok {
		reason := ""
		if e.Action == "stop" || e.Action == "destroy" {
			reason = w.Store.TakeNote(e.ID)
		}
		w.record(ctx, action, c, reason)
	}
	return nil
}

// record writes one container record with its owner (Owners; "unknown" when nothing tells).
// A container made through the gateway names its allocation, whose gpu.allocate came first.
func (w *Watcher) record(_ context.Context, action audit.ContainerAction, c docker.Container, reason string) {
	ref := containerstore.AuditRef(c)
	if gatewayMade(c) {
		ref.Allocation = c.Labels[gpuwardenv1alpha1.LabelAllocation]
	}
	w.Audit.Log(audit.ContainerEvent(action, w.Owners.OrUnknown(c), ref, reason))
}

// enqueue hands a container to the container controller; it gives up when ctx ends, so a
// full queue never keeps the watcher from stopping.
func (w *Watcher) enqueue(ctx context.Context, id string) {
	select {
	case w.Changed <- event.GenericEvent{Object: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: id}}}:
	case <-ctx.Done():
	}
}

// enqueueAll hands on every container, every one seen removed, and every container an
// allocation of this node names: one removed while gpuwarden was not running shows only there.
func (w *Watcher) enqueueAll(ctx context.Context, list, removed []docker.Container) {
	ids := map[string]bool{}
	for _, c := range list {
		ids[c.ID] = true
	}
	for _, c := range removed {
		ids[c.ID] = true
	}
	var allocs gpuwardenv1alpha1.GPUAllocationList
	if err := w.Client.List(ctx, &allocs); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing allocations to check their containers")
	}
	for _, a := range allocs.Items {
		if a.Spec.NodeName == w.NodeName {
			for _, id := range containerIDsOf(&a) {
				ids[id] = true
			}
		}
	}
	for id := range ids {
		w.enqueue(ctx, id)
	}
}

func (w *Watcher) connected(ctx context.Context) {
	metrics.DockerUp.Set(1)
	w.setCondition(ctx, metav1.ConditionTrue, gpuwardenv1alpha1.ReasonDockerConnected, "Containers on this node are observed", corev1.EventTypeNormal, reasons.EventDockerConnected)
}

func (w *Watcher) unreachable(ctx context.Context, err error) {
	w.Store.SetSynced(false)
	metrics.DockerUp.Set(0)
	metrics.DockerOutages.Inc()
	msg := fmt.Sprintf("The Docker engine is unreachable (%v); no GPU is released until it is back", err)
	w.setCondition(ctx, metav1.ConditionFalse, gpuwardenv1alpha1.ReasonDockerUnreachable, msg, corev1.EventTypeWarning, reasons.EventDockerUnreachable)
}

// setCondition shows the Docker connection on each of the node's GPUs, with an Event when
// it changes.
func (w *Watcher) setCondition(ctx context.Context, status metav1.ConditionStatus, reason, msg, eventType, eventReason string) {
	var gpus gpuwardenv1alpha1.GPUList
	if err := w.Client.List(ctx, &gpus, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: w.NodeName}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing GPUs to show the Docker connection")
		return
	}
	for i := range gpus.Items {
		g := &gpus.Items[i]
		changed := false
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := w.Client.Get(ctx, client.ObjectKeyFromObject(g), g); err != nil {
				return err
			}
			changed = meta.SetStatusCondition(&g.Status.Conditions, metav1.Condition{Type: gpuwardenv1alpha1.ConditionDockerReachable,
				Status: status, Reason: reason, Message: msg, ObservedGeneration: g.Generation})
			if !changed {
				return nil
			}
			return w.Client.Status().Update(ctx, g)
		})
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Showing the Docker connection on a GPU", "gpu", g.Name)
			continue
		}
		if changed {
			w.Recorder.Eventf(g, nil, eventType, eventReason, "Observe", "%s", msg)
		}
	}
}

// containerIDsOf returns the container IDs an allocation names.
func containerIDsOf(a *gpuwardenv1alpha1.GPUAllocation) []string {
	var out []string
	for _, id := range []string{a.Status.ContainerID, a.Spec.ContainerID} {
		if id != "" && (len(out) == 0 || out[0] != id) {
			out = append(out, id)
		}
	}
	return out
}

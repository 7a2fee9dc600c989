package containers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	ctrl "sigs.k8s.io/controller-runtime"

	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"k8s.io/client-go/tools/events"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/docker/dockertest"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestWatcherStopsWithTheQueueFull: with nobody taking containers off the hand-off channel
// (the controller has stopped first, at shutdown), the watcher still returns when its
// context ends.
func TestWatcherStopsWithTheQueueFull(t *testing.T) {
	var cs []docker.Container
	for i := range 5 {
		cs = append(cs, docker.Container{ID: fmt.Sprintf("c%02d", i), State: docker.StateRunning})
	}
	var rec recorder.EventRecorder = events.NewFakeRecorder(100)
	w := &Watcher{Engine: dockertest.New(cs...), Store: containerstore.New(),
		Client:   fake.NewClientBuilder().WithScheme(scheme.New()).Build(),
		NodeName: "n", Clock: clocktesting.NewFakeClock(time.Now()), Recorder: rec, Audit: &testutil.AuditRecorder{},
		Changed: make(chan event.GenericEvent), RetryInterval: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Start(ctx) }()
	testutil.Eventually(t, 5*time.Second, "the watcher has listed the containers", func() bool {
		_, ok, synced := w.Store.Get("c00")
		return ok && synced
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Start: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher did not return after its context ended, with the queue full")
	}
}

// TestDockerOutageIsSaidOnceThenEveryMinute: an engine that cannot be reached is one
// warning with what to do, then a reminder at most once a minute, never an error per
// retry; the connection, when it comes, is said too.
func TestDockerOutageIsSaidOnceThenEveryMinute(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 0})
	said := func(what string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, l := range lines {
			if strings.Contains(l, what) {
				n++
			}
		}
		return n
	}
	eng := dockertest.New()
	eng.ListErr = errors.New("Cannot connect to the Docker daemon at unix:///var/run/docker.sock")
	clk := clocktesting.NewFakeClock(time.Now())
	var rec recorder.EventRecorder = events.NewFakeRecorder(100)
	w := &Watcher{Engine: eng, Store: containerstore.New(),
		Client:   fake.NewClientBuilder().WithScheme(scheme.New()).Build(),
		NodeName: "n", Clock: clk, Recorder: rec, Audit: &testutil.AuditRecorder{},
		Changed: make(chan event.GenericEvent, 16), RetryInterval: time.Millisecond}
	ctx, cancel := context.WithCancel(ctrl.LoggerInto(context.Background(), log))
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Start(ctx) }()

	testutil.Eventually(t, 5*time.Second, "the outage is said", func() bool { return said("WARNING: The Docker engine is unreachable") == 1 })
	time.Sleep(50 * time.Millisecond) // dozens of retries
	if n := said("unreachable"); n != 1 {
		t.Errorf("the outage was said %d times in its first minute, want once:\n%s", n, strings.Join(lines, "\n"))
	}
	if said("--docker-host none") != 1 {
		t.Errorf("the warning does not say what to do:\n%s", strings.Join(lines, "\n"))
	}
	clk.Step(61 * time.Second)
	testutil.Eventually(t, 5*time.Second, "a reminder after a minute", func() bool { return said("still unreachable") == 1 })
	eng.SetListErr(nil)
	testutil.Eventually(t, 5*time.Second, "the connection is said", func() bool { return said("Connected to the Docker engine again") == 1 })
	cancel()
	<-done
	if n := said("Retrying"); n != 0 {
		t.Errorf("%d retry lines at the default verbosity, want none", n)
	}
}

// inspectFails is the test engine whose Inspect fails while fail is set.
type inspectFails struct {
	*dockertest.Engine
	fail atomic.Bool
}

func (e *inspectFails) Inspect(ctx context.Context, id string) (docker.Container, error) {
	if e.fail.Load() {
		return docker.Container{}, fmt.Errorf("inspecting container %s: %w", id, errors.New("Error response from daemon: context deadline exceeded"))
	}
	return e.Engine.Inspect(ctx, id)
}

// TestAFailedInspectAfterAnEventIsNeverTakenForTheOldState: a container whose inspect
// fails after its start event is not left as the store last knew it (stopped, its GPU hold
// running out): the store is unsynced, so nothing is decided on it, and the listing that
// follows brings it up to date and records the start.
func TestAFailedInspectAfterAnEventIsNeverTakenForTheOldState(t *testing.T) {
	stopped := docker.Container{ID: "c01", Name: "train", State: docker.StateExited, FinishedAt: time.Now().Add(-time.Hour)}
	eng := &inspectFails{Engine: dockertest.New(stopped)}
	log := &testutil.AuditRecorder{}
	changed := make(chan event.GenericEvent, 64)
	var rec recorder.EventRecorder = events.NewFakeRecorder(100)
	w := &Watcher{Engine: eng, Store: containerstore.New(),
		Client:   fake.NewClientBuilder().WithScheme(scheme.New()).Build(),
		NodeName: "n", Clock: clocktesting.NewFakeClock(time.Now()), Recorder: rec, Audit: log,
		Changed: changed, RetryInterval: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for range changed {
		}
	}()
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Start(ctx) }()
	testutil.Eventually(t, 5*time.Second, "the watcher has listed the containers", func() bool {
		_, ok, synced := w.Store.Get("c01")
		return ok && synced
	})

	eng.fail.Store(true)
	running := stopped
	running.State, running.StartedAt, running.FinishedAt = docker.StateRunning, time.Now(), time.Time{}
	eng.Put(running, "start")
	testutil.Eventually(t, 5*time.Second, "the store is not trusted after the failed inspect", func() bool {
		c, _, synced := w.Store.Get("c01")
		return !synced || c.State == docker.StateRunning
	})
	eng.fail.Store(false)
	testutil.Eventually(t, 5*time.Second, "the listing brings the store up to date", func() (bool, string) {
		c, _, synced := w.Store.Get("c01")
		return synced && c.State == docker.StateRunning, fmt.Sprintf("synced %v, %s", synced, c.State)
	})
	testutil.Eventually(t, 5*time.Second, "the start is recorded", func() bool { return len(log.Of(audit.TypeContainerStart)) == 1 })
	cancel()
	<-done
}

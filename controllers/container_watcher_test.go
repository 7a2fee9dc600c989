package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/docker/dockertest"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
	"k8s.io/client-go/tools/events"
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
	w := &ContainerWatcher{Engine: dockertest.New(cs...), Store: NewContainerStore(),
		Client:   fake.NewClientBuilder().WithScheme(scheme.New()).Build(),
		NodeName: "n", Clock: clocktesting.NewFakeClock(time.Now()), Recorder: rec, Audit: &auditLog{},
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

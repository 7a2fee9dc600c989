package watchdog

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/clock"
)

// TestServe: READY follows the work being up (and ready is called first), STOPPING its end
// after a start; work that fails before it is up says nothing to systemd.
func TestServe(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name string
		// run returns after the work is seen up, or at once with failEarly (while up still
		// waits).
		failEarly bool
		runErr    error
		wantSent  []string
		wantReady int
	}{
		{name: "up, then stopped", wantSent: []string{"READY=1", "STOPPING=1"}, wantReady: 1},
		{name: "up, then failed", runErr: errBoom, wantSent: []string{"READY=1", "STOPPING=1"}, wantReady: 1},
		{name: "failed before up", failEarly: true, runErr: errBoom, wantSent: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", "") // no watchdog to ping: Run returns at once
			var mu sync.Mutex
			var sent []string
			n := &Notifier{Health: &Health{}, Clock: clock.RealClock{}, Log: logr.Discard(), notify: func(s string) error {
				mu.Lock()
				defer mu.Unlock()
				sent = append(sent, s)
				return nil
			}}
			stop := make(chan struct{})
			upDone := make(chan struct{})
			var readyCalls atomic.Int32
			readyc := make(chan struct{}, 1)
			run := func(ctx context.Context) error {
				if !tt.failEarly {
					<-stop
				}
				return tt.runErr
			}
			up := func(ctx context.Context) bool {
				defer close(upDone)
				if tt.failEarly {
					<-ctx.Done() // still waiting when the work fails
					return false
				}
				return true
			}
			errc := make(chan error, 1)
			go func() {
				errc <- n.Serve(context.Background(), run, up, func() {
					if readyCalls.Add(1) == 1 {
						readyc <- struct{}{}
					}
				})
			}()
			if tt.wantReady > 0 {
				<-readyc // up, and seen to be: only now does the work end
			}
			close(stop)
			if err := <-errc; !errors.Is(err, tt.runErr) || (tt.runErr == nil && err != nil) {
				t.Errorf("Serve = %v, want %v", err, tt.runErr)
			}
			<-upDone // up's context ended with Serve
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(tt.wantSent, sent); diff != "" {
				t.Errorf("told systemd (-want,+got):\n%s", diff)
			}
			if got := int(readyCalls.Load()); got != tt.wantReady {
				t.Errorf("ready called %d times, want %d", got, tt.wantReady)
			}
		})
	}
}

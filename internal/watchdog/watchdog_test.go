package watchdog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

func TestHealthNamesWhatIsWedged(t *testing.T) {
	h := &Health{Timeout: 50 * time.Millisecond}
	if err := h.Check(context.Background()); err != nil {
		t.Errorf("no checks: %v", err)
	}
	h.Add("api", func(context.Context) error { return nil })
	h.Add("docker", Responds(func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }))
	h.Add("engine-down", Responds(func(context.Context) error { return errors.New("connection refused") }))
	h.Add("deaf", func(context.Context) error { select {} }) // ignores its context
	err := h.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "docker: no answer in time") || !strings.Contains(err.Error(), "deaf: no answer in time") ||
		strings.Contains(err.Error(), "api") || strings.Contains(err.Error(), "engine-down") {
		t.Errorf("Check = %v; want docker and deaf named, and neither api nor an engine that refuses", err)
	}
}

func TestHeartbeat(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC))
	b := &Heartbeat{Clock: clk, MaxAge: 4 * time.Minute}
	if err := b.Check(context.Background()); err != nil {
		t.Errorf("before the start: %v", err)
	}
	b.Beat()
	clk.Step(4 * time.Minute)
	if err := b.Check(context.Background()); err != nil {
		t.Errorf("at MaxAge: %v", err)
	}
	clk.Step(time.Second)
	if err := b.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "no round finished for 4m1s") {
		t.Errorf("past MaxAge: %v", err)
	}
	b.Beat()
	if err := b.Check(context.Background()); err != nil {
		t.Errorf("after a beat: %v", err)
	}
}

// TestNotifierPingsOnlyWhileHealthy: READY once, WATCHDOG each interval while every check
// passes, none while one fails, again once it recovers.
func TestNotifierPingsOnlyWhileHealthy(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	var sent []string
	var wedged bool
	h := &Health{}
	h.Add("sampler", func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if wedged {
			return errors.New("stuck")
		}
		return nil
	})
	n := &Notifier{Health: h, Clock: clk, Log: logr.Discard(), notify: func(s string) error {
		mu.Lock()
		sent = append(sent, s)
		mu.Unlock()
		return nil
	}}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		c := 0
		for _, s := range sent {
			if s == "WATCHDOG=1" {
				c++
			}
		}
		return c
	}
	n.Ready()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.run(ctx, time.Second); close(done) }()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, what, func() (bool, string) {
			done := ok()
			mu.Lock()
			defer mu.Unlock()
			return done, fmt.Sprintf("sent %v", sent)
		})
	}
	for i := 1; i <= 3; i++ {
		waitFor("a ping per interval", func() bool { return count() == i && clk.HasWaiters() })
		if i < 3 {
			clk.Step(time.Second)
		}
	}
	mu.Lock()
	wedged = true
	mu.Unlock()
	for range 5 {
		clk.Step(time.Second)
		waitFor("a wedged round", clk.HasWaiters)
	}
	if c := count(); c != 3 {
		t.Errorf("%d pings, want none after the wedge", c)
	}
	mu.Lock()
	wedged = false
	mu.Unlock()
	clk.Step(time.Second)
	waitFor("pings again after recovery", func() bool { return count() == 4 })
	cancel()
	<-done
	n.Stopping()
	if sent[0] != "READY=1" || sent[len(sent)-1] != "STOPPING=1" {
		t.Errorf("sent %v; want READY=1 first and STOPPING=1 last", sent)
	}
}

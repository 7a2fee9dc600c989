// Package watchdog tells systemd when gpuwarden is ready and, while its parts still do their
// work, that it is alive (sd_notify READY and WATCHDOG), so that a wedged process is
// restarted rather than left holding users' GPUs.
package watchdog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

var errNoAnswer = errors.New("no answer in time")

// CheckTimeout bounds one check: a part that does not answer within it is wedged.
const CheckTimeout = 10 * time.Second

// Check says whether a part of the process still works; it must return within its context.
type Check func(ctx context.Context) error

// Health is the checks of the parts whose wedging should restart the process.
type Health struct {
	// Timeout bounds each check; CheckTimeout when zero.
	Timeout time.Duration

	mu     sync.Mutex
	checks map[string]Check
}

// Add registers a check under name.
func (h *Health) Add(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.checks == nil {
		h.checks = map[string]Check{}
	}
	h.checks[name] = c
}

// Names are the registered checks, sorted.
func (h *Health) Names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for n := range h.checks {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Check runs every check at once, each bounded by the timeout; the error names each part
// that failed.
func (h *Health) Check(ctx context.Context) error {
	timeout := h.Timeout
	if timeout == 0 {
		timeout = CheckTimeout
	}
	h.mu.Lock()
	checks := make(map[string]Check, len(h.checks))
	for n, c := range h.checks {
		checks[n] = c
	}
	h.mu.Unlock()
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for name, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c(cctx) }()
			var err error
			select {
			case err = <-done:
			case <-cctx.Done(): // a check that ignores its context is wedged too
				err = errNoAnswer
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// Heartbeat is a part that beats each time it finishes a round of its work; it is wedged
// when it has been started and not beaten for MaxAge.
type Heartbeat struct {
	Clock  clock.PassiveClock
	MaxAge time.Duration

	mu   sync.Mutex
	last time.Time
}

// Beat records a finished round (or the start).
func (b *Heartbeat) Beat() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = b.Clock.Now()
}

// Check is the heartbeat as a Check: healthy before the part starts (a standby replica's
// sampler never does), and while its last beat is younger than MaxAge.
func (b *Heartbeat) Check(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		return nil
	}
	if age := b.Clock.Since(b.last); age > b.MaxAge {
		return fmt.Errorf("no round finished for %s (at most %s)", age.Round(time.Second), b.MaxAge)
	}
	return nil
}

// Responds is a Check that a call answers within the timeout, whatever it answers: an engine
// that refuses connections is an outage the process rides out, one that never answers is a
// wedge.
func Responds(call func(ctx context.Context) error) Check {
	return func(ctx context.Context) error {
		err := call(ctx)
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return errNoAnswer
		}
		return nil
	}
}

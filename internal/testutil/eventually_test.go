package testutil

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// failures is a testing.TB that records a Fatalf and stops the goroutine, as testing does.
type failures struct {
	testing.TB
	msg string
}

func (f *failures) Helper() {}

func (f *failures) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// failure runs check as a test would and returns how it failed ("" when it passed).
func failure(check func(tb testing.TB)) string {
	f := &failures{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(f)
	}()
	<-done
	return f.msg
}

func TestEventuallyAcceptsBothShapes(t *testing.T) {
	n := 0
	Eventually(t, time.Second, "plain", func() bool { n++; return n > 2 })
	Eventually(t, time.Second, "explained", func() (bool, string) { n++; return n > 4, "n is small" })
	Consistently(t, 3*PollInterval, "steady", func() bool { return true })
}

func TestEventuallyFailsWhenNeverTrue(t *testing.T) {
	msg := failure(func(tb testing.TB) {
		Eventually(tb, 3*PollInterval, "the answer", func() (bool, string) { return false, "still 41" })
	})
	if !strings.Contains(msg, "the answer: not true after") || !strings.Contains(msg, "still 41") {
		t.Errorf("failure %q, want what was awaited and what was last seen", msg)
	}
}

func TestConsistentlyFailsWhenItTurnsFalse(t *testing.T) {
	n := 0
	msg := failure(func(tb testing.TB) {
		Consistently(tb, 2*time.Second, "still bound", func() (bool, string) { n++; return n < 3, fmt.Sprintf("check %d", n) })
	})
	if !strings.Contains(msg, "still bound: turned false") || !strings.Contains(msg, "check 3") {
		t.Errorf("failure %q, want what should have held and what was seen", msg)
	}
	if msg := failure(func(tb testing.TB) {
		Consistently(tb, 3*PollInterval, "steady", func() bool { return true })
	}); msg != "" {
		t.Errorf("a condition that held failed: %s", msg)
	}
}

package testutil

import (
	"testing"
	"time"
)

// PollInterval is how often Eventually and Consistently check their condition.
const PollInterval = 50 * time.Millisecond

// Condition is what Eventually and Consistently check: a plain yes or no, or a yes or no
// with what was seen, which a failure then reports.
type Condition interface {
	~func() bool | ~func() (bool, string)
}

func check[C Condition](cond C) (bool, string) {
	switch f := any(cond).(type) {
	case func() bool:
		return f(), ""
	case func() (bool, string):
		return f()
	}
	panic("unreachable")
}

// Eventually fails the test when cond is not true within timeout.
func Eventually[C Condition](tb testing.TB, timeout time.Duration, what string, cond C) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := check(cond)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if last != "" {
				tb.Fatalf("%s: not true after %s; last: %s", what, timeout, last)
			}
			tb.Fatalf("%s: not true after %s", what, timeout)
		}
		time.Sleep(PollInterval)
	}
}

// Consistently fails the test when cond turns false within d.
func Consistently[C Condition](tb testing.TB, d time.Duration, what string, cond C) {
	tb.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(PollInterval) {
		if ok, last := check(cond); !ok {
			tb.Fatalf("%s: turned false within %s: %s", what, d, last)
		}
	}
}

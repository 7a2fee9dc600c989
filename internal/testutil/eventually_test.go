package testutil

import (
	"testing"
	"time"
)

func TestEventuallyAcceptsBothShapes(t *testing.T) {
	n := 0
	Eventually(t, time.Second, "plain", func() bool { n++; return n > 2 })
	Eventually(t, time.Second, "explained", func() (bool, string) { n++; return n > 4, "n is small" })
	Consistently(t, 3*PollInterval, "steady", func() bool { return true })
}

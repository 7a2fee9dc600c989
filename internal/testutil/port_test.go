package testutil

import (
	"fmt"
	"net"
	"testing"
)

func TestFreePortIsBelowTheEphemeralRangeAndNeverGivenTwice(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		p := FreePort(t)
		if p >= low || p < 1024 {
			t.Fatalf("port %d outside [1024, %d)", p, low)
		}
		if seen[p] {
			t.Fatalf("port %d given twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
}

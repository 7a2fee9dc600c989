package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
)

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on, for a process the
// test starts with an explicit address. It is taken below the kernel's ephemeral range
// (ip_local_port_range), so that a listener the test or the process opens on port 0, or
// an outgoing connection, cannot be handed the same port between this check and the
// process binding it; and no port is given twice within one test binary.
func FreePort(t testing.TB) int {
	t.Helper()
	low := ephemeralLow()
	lo, hi := low-12000, low
	if lo < 1024 {
		lo = 1024
	}
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		p := lo + rand.IntN(hi-lo)
		if given[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		given[p] = true
		return p
	}
	t.Fatalf("no free port in [%d, %d)", lo, hi)
	return 0
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 when unknown).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var low, high int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &low, &high); err != nil || low <= 2024 {
		return 32768
	}
	return low
}

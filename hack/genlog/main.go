// Command genlog writes a synthetic audit log through the real writer, for benchmarks:
// N events from 20 users over the last 30 days, a realistic mix of types.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/audit"
)

func main() {
	path := flag.String("file", "events.jsonl", "the log to write (its directory is created)")
	n := flag.Int("n", 1_000_000, "number of events")
	flag.Parse()
	w, err := audit.Open(audit.Options{Path: *path, Node: "gpu01", Source: "genlog", MaxSize: 1 << 40, MaxAge: 1 << 62})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	start := now.Add(-30 * 24 * time.Hour)
	step := (30 * 24 * time.Hour) / time.Duration(*n)
	for i := range *n {
		user := fmt.Sprintf("user%02d", rng.IntN(20))
		c := audit.Container{Name: fmt.Sprintf("%s-job-%d", user, rng.IntN(50)), ID: fmt.Sprintf("%016x", rng.Uint64()), Type: "docker"}
		a := audit.Allocation{Name: fmt.Sprintf("%s-%d", user, i), Devices: []string{fmt.Sprintf("GPU-%08x", rng.Uint32())}, GPUEquivalents: "1", Container: c}
		var e audit.Event
		switch r := rng.IntN(10); {
		case r < 3:
			e = audit.ContainerEvent(audit.ContainerStart, user, c, "")
		case r < 5:
			e = audit.GPUAllocate(user, a)
		case r < 6:
			e = audit.GPUReject(user, a, "QuotaExceeded", user+" holds 2/2 gpu-equivalents (GPUQuota students)")
		case r < 7:
			e = audit.GPURelease(user, a, "container removed")
		case r < 9:
			e = audit.ContainerEvent(audit.ContainerStop, user, c, "")
		default:
			e = audit.Lifecycle(audit.IdleWarning, user, c, "students", "Enforce", "idle for 24m of 30m")
		}
		e.Time = start.Add(time.Duration(i) * step)
		w.Log(e)
		if i%100_000 == 0 {
			_ = w.Flush()
		}
	}
	if err := w.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func benchEvent(i int) Event {
	return GPUAllocate(fmt.Sprintf("user%02d", i%20), Allocation{Name: fmt.Sprintf("a-%d", i), Devices: []string{"GPU-5d2f6a1c"},
		GPUEquivalents: "1", Container: Container{Name: "train", ID: "4f2c0a1b2c3d4e5f", Type: "docker"}})
}

// BenchmarkWriterGroupCommit logs from many goroutines; the writer batches and fsyncs every
// FlushInterval. Reported: events/s including the final fsync.
func BenchmarkWriterGroupCommit(b *testing.B) {
	w, err := Open(Options{Path: filepath.Join(b.TempDir(), "events.jsonl"), Node: "gpu01"})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			w.Log(benchEvent(i))
			i++
		}
	})
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	if st := w.Stats(); st.Written != uint64(b.N) || st.Dropped != 0 {
		b.Fatalf("stats %+v after %d events", st, b.N)
	}
}

// BenchmarkWriterSyncPerEvent is the reference: the same events, each written and fsynced
// on its own, as a writer without group commit must do to be durable.
func BenchmarkWriterSyncPerEvent(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "events.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		e := benchEvent(i)
		e.Time, e.ID, e.Node = time.Now(), NewID(), "gpu01"
		line, _ := e.AppendJSON(nil)
		if _, err := f.Write(line); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkQuery runs the combined filter of `gpuwarden events --user U --type gpu
// --since 7d` over the log named by AUDIT_BENCH_LOG (hack/bench.sh makes one of 1,000,000
// events with hack/genlog).
func BenchmarkQuery(b *testing.B) {
	path := os.Getenv("AUDIT_BENCH_LOG")
	if path == "" {
		b.Skip("AUDIT_BENCH_LOG is not set; run make bench")
	}
	f := Filter{User: "user07", Type: "gpu", Since: time.Now().Add(-7 * 24 * time.Hour)}
	for b.Loop() {
		n := 0
		if _, err := Read(context.Background(), []string{path}, f, func(*Event) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			b.Fatal("no events matched")
		}
	}
}

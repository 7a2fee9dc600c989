package audit

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

func openTest(t *testing.T, o Options) *Writer {
	t.Helper()
	if o.Path == "" {
		o.Path = filepath.Join(t.TempDir(), "log", "events.jsonl")
	}
	if o.Node == "" {
		o.Node = "gpu01"
	}
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// readAll reads every event of the log at path, failing on malformed lines.
func readAll(t *testing.T, path string) []Event {
	t.Helper()
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Event
	st, err := Read(context.Background(), files, Filter{}, func(e *Event) error { out = append(out, *e); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if st.Malformed != 0 {
		t.Errorf("%d malformed lines in the log", st.Malformed)
	}
	return out
}

func TestEnvelope(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0.Add(123456 * time.Microsecond))
	w := openTest(t, Options{Clock: clk, Source: "allocation-controller"})
	e := GPUAllocate("alice", Allocation{Name: "alice-train-1", Devices: []string{"GPU-1"}, GPUEquivalents: "1",
		Container: Container{Name: "train", Type: "docker"}})
	e.ID = "fixed"
	w.Log(e)
	w.Log(Event{Type: "system.note", ID: "two"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(w.o.Path)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"timestamp":"2026-11-20T09:00:00.123456Z","event_type":"gpu.allocate","source":"allocation-controller","schema_version":"1","user":"alice","details":{"allocation":"alice-train-1","container":"train","container_type":"docker","devices":["GPU-1"],"gpu_equivalents":"1"},"event_id":"fixed","node":"gpu01"}
{"timestamp":"2026-11-20T09:00:00.123456Z","event_type":"system.note","source":"allocation-controller","schema_version":"1","event_id":"two","node":"gpu01"}
`
	if string(data) != want {
		t.Errorf("log:\n%s\nwant:\n%s", data, want)
	}
	fi, _ := os.Stat(w.o.Path)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("file mode %v, want 0640", fi.Mode().Perm())
	}
}

func TestConcurrentWritersLoseNothingAndTearNothing(t *testing.T) {
	w := openTest(t, Options{FlushInterval: time.Millisecond})
	const writers, each = 16, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				w.Log(Event{Type: "test.write", User: fmt.Sprintf("u%d", g), Details: map[string]any{"seq": i, "pad": strings.Repeat("x", i%300)}})
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	events := readAll(t, w.o.Path)
	if len(events) != writers*each {
		t.Fatalf("%d events in the log, want %d", len(events), writers*each)
	}
	ids := map[string]bool{}
	next := map[string]int{}
	for _, e := range events {
		if ids[e.ID] {
			t.Fatalf("duplicate event ID %s", e.ID)
		}
		ids[e.ID] = true
		seq := int(e.Details["seq"].(float64))
		if seq != next[e.User] {
			t.Fatalf("writer %s: event %d after %d; a writer's events must stay in order", e.User, seq, next[e.User]-1)
		}
		next[e.User]++
	}
	if st := w.Stats(); st.Written != writers*each || st.Dropped != 0 || st.Failures != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRotationUnderLoadLosesNoLine(t *testing.T) {
	w := openTest(t, Options{MaxSize: 32 << 10, MaxBackups: 1000, FlushInterval: time.Millisecond})
	const writers, each = 8, 3000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				w.Log(Event{Type: "test.rotate", User: fmt.Sprintf("u%d", g), Details: map[string]any{"seq": i}})
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Stats().Rotations < 10 {
		t.Fatalf("only %d rotations; the test needs many", w.Stats().Rotations)
	}
	files, _ := Files(w.o.Path)
	for _, f := range files[:len(files)-1] {
		if !strings.HasSuffix(f, ".jsonl.gz") {
			t.Errorf("rotated file %s was not compressed", f)
		}
		if n := gunzippedSize(t, f); n > 32<<10 || n == 0 {
			t.Errorf("%s holds %d bytes; want some, and no more than MaxSize", f, n)
		}
	}
	events := readAll(t, w.o.Path)
	if len(events) != writers*each {
		t.Fatalf("%d events across %d files, want %d", len(events), len(files), writers*each)
	}
	next := map[string]int{}
	for _, e := range events {
		if seq := int(e.Details["seq"].(float64)); seq != next[e.User] {
			t.Fatalf("writer %s: event %d read after %d; files must be read in order", e.User, seq, next[e.User]-1)
		}
		next[e.User]++
	}
}

func TestRetentionKeepsMaxBackups(t *testing.T) {
	w := openTest(t, Options{MaxSize: 512, MaxBackups: 3})
	for i := range 200 {
		w.Log(Event{Type: "test.retention", Details: map[string]any{"seq": i}})
		if i%10 == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rotated, _ := rotatedFiles(w.o.Path)
	if len(rotated) != 3 {
		t.Errorf("%d rotated files kept, want 3: %v", len(rotated), rotated)
	}
}

func TestRotationByAge(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	w := openTest(t, Options{Clock: clk, MaxAge: time.Hour})
	w.Log(Event{Type: "test.age"})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	clk.Step(59 * time.Minute)
	w.Log(Event{Type: "test.age"})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if r := w.Stats().Rotations; r != 0 {
		t.Fatalf("rotated after 59m with MaxAge 1h")
	}
	clk.Step(time.Minute)
	w.Log(Event{Type: "test.age"})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if r := w.Stats().Rotations; r != 1 {
		t.Fatalf("rotations = %d after 1h, want 1", r)
	}
	w.Close()
	if want := rotatedName(w.o.Path, t0.Add(time.Hour)) + ".gz"; !exists(want) {
		t.Errorf("rotated file %s missing", want)
	}
	if n := len(readAll(t, w.o.Path)); n != 3 {
		t.Errorf("%d events, want 3", n)
	}
}

// flakyFile fails writes while failing is set, like a full disk.
type flakyFile struct {
	*os.File
	failing *atomic.Bool
}

func (f flakyFile) Write(b []byte) (int, error) {
	if f.failing.Load() {
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Write(b)
}

func TestWriteFailureNeverBlocksAndCatchesUp(t *testing.T) {
	failing := &atomic.Bool{}
	failing.Store(true)
	var reported []error
	var mu sync.Mutex
	w := openTest(t, Options{
		OnError: func(err error) { mu.Lock(); reported = append(reported, err); mu.Unlock() },
		openFile: func(name string, flag int, perm os.FileMode) (logFile, error) {
			f, err := os.OpenFile(name, flag, perm)
			return flakyFile{File: f, failing: failing}, err
		},
	})
	for i := range 1000 {
		w.Log(Event{Type: "test.full", Details: map[string]any{"seq": i}})
	}
	err := w.Flush()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush on a full disk = %v, want ENOSPC", err)
	}
	st := w.Stats()
	if st.Failures == 0 || st.PendingBytes == 0 || !errors.Is(st.LastError, syscall.ENOSPC) {
		t.Errorf("stats while failing = %+v", st)
	}
	failing.Store(false)
	if err := w.Flush(); err != nil {
		t.Fatalf("Flush after space came back: %v", err)
	}
	if st := w.Stats(); st.LastError != nil || st.PendingBytes != 0 || st.Written != 1000 {
		t.Errorf("stats after catching up = %+v", st)
	}
	mu.Lock()
	if len(reported) != 2 || !errors.Is(reported[0], syscall.ENOSPC) || reported[1] != nil {
		t.Errorf("OnError calls = %v, want [ENOSPC, nil]", reported)
	}
	mu.Unlock()
	events := readAll(t, w.o.Path)
	for i, e := range events {
		if int(e.Details["seq"].(float64)) != i {
			t.Fatalf("event %d has seq %v: caught-up events must keep their order", i, e.Details["seq"])
		}
	}
	if len(events) != 1000 {
		t.Errorf("%d events after catching up, want 1000", len(events))
	}
}

// TestRealFullDisk writes to /dev/full (every write fails with ENOSPC), then lets the log
// move to a real file, as when an admin frees space and the path is recreated.
func TestRealFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	// While the disk is "full", opening the log gets /dev/full (a link there would be refused).
	var full atomic.Bool
	full.Store(true)
	w := openTest(t, Options{Path: path, openFile: func(name string, flag int, perm os.FileMode) (logFile, error) {
		if full.Load() {
			return os.OpenFile("/dev/full", os.O_WRONLY, 0)
		}
		return os.OpenFile(name, flag, perm)
	}})
	w.Log(Event{Type: "test.devfull", User: "alice"})
	if err := w.Flush(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush to /dev/full = %v, want ENOSPC", err)
	}
	full.Store(false)
	w.Log(Event{Type: "test.devfull", User: "bob"})
	if err := w.Flush(); err != nil {
		t.Fatalf("Flush after the path became a real file: %v", err)
	}
	w.Close()
	events := readAll(t, path)
	if len(events) != 2 || events[0].User != "alice" || events[1].User != "bob" {
		t.Errorf("events = %+v, want alice's then bob's", events)
	}
}

func TestMemoryBoundRecordsWhatWasDropped(t *testing.T) {
	failing := &atomic.Bool{}
	failing.Store(true)
	line, _ := (&Event{Time: t0, Type: "test.bound", ID: NewID(), Node: "gpu01"}).AppendJSON(nil)
	w := openTest(t, Options{
		MaxPending: 10 * len(line),
		openFile: func(name string, flag int, perm os.FileMode) (logFile, error) {
			f, err := os.OpenFile(name, flag, perm)
			return flakyFile{File: f, failing: failing}, err
		},
	})
	for range 25 {
		w.Log(Event{Type: "test.bound"})
	}
	_ = w.Flush()
	failing.Store(false)
	if err := w.Flush(); err != nil { // the 10 kept events, then the record of the 15 lost
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	events := readAll(t, w.o.Path)
	if len(events) != 11 {
		t.Fatalf("%d events, want 10 kept and 1 audit.dropped", len(events))
	}
	last := events[10]
	if last.Type != TypeAuditDropped || last.Details["dropped"] != float64(15) {
		t.Errorf("last event = %+v, want audit.dropped with dropped=15", last)
	}
	if st := w.Stats(); st.Dropped != 15 {
		t.Errorf("Stats().Dropped = %d, want 15", st.Dropped)
	}
}

func TestTornLastLineIsEndedOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte(`{"timestamp":"2026-11-20T09:00:00.000000Z","event_type":"a.b","schema_version":"1","event_id":"1"}`+"\n"+`{"timestamp":"2026-11-20T09:00:01`), 0o640); err != nil {
		t.Fatal(err)
	}
	w := openTest(t, Options{Path: path})
	w.Log(Event{Type: "test.after_crash"})
	w.Close()
	files, _ := Files(path)
	var types []string
	st, _ := Read(context.Background(), files, Filter{}, func(e *Event) error { types = append(types, e.Type); return nil })
	if st.Malformed != 1 || len(types) != 2 || types[1] != "test.after_crash" {
		t.Errorf("after a crash mid-line: types=%v malformed=%d; want the torn line skipped and the new event intact", types, st.Malformed)
	}
}

func TestLogAfterCloseIsCountedNotWritten(t *testing.T) {
	w := openTest(t, Options{})
	w.Close()
	w.Log(Event{Type: "test.late"})
	if w.Stats().Dropped != 1 {
		t.Errorf("an event logged after Close was not counted as dropped")
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []Options{{Path: "/tmp/x/events", MaxSize: 1}, {Path: "/tmp/x/e.jsonl", MaxBackups: -1}} {
		if _, err := Open(o); err == nil {
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
}

func gunzippedSize(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, zr)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLinksAndOpenDirectoriesAreRefused: a symlink where the log goes is not written
// through, and a log directory another user can write to is refused, with the reason.
func TestLinksAndOpenDirectoriesAreRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	path := filepath.Join(dir, "events.jsonl")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Path: path, Node: "gpu01"}); err == nil || !errors.Is(err, syscall.ELOOP) {
		t.Errorf("Open through a symlink: %v, want ELOOP", err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("the link's target was created: %v", err)
	}
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Path: filepath.Join(open, "events.jsonl"), Node: "gpu01"}); err == nil || !strings.Contains(err.Error(), "writable by others (mode 0777)") {
		t.Errorf("Open in a world-writable directory: %v", err)
	}
}

// TestDecisionsRecordedAgainAreReadOnce: a decision recorded again after a crash (same
// DecisionID) is passed once by Read; other events with equal IDs are not touched.
func TestDecisionsRecordedAgainAreReadOnce(t *testing.T) {
	bound := time.Date(2026, 12, 2, 9, 0, 0, 123, time.UTC)
	id := DecisionID("allocate", "alice-1", bound)
	if id != DecisionID("allocate", "alice-1", bound.Add(500*time.Millisecond)) || id == DecisionID("release", "alice-1", bound) ||
		id == DecisionID("allocate", "alice-2", bound) || id == DecisionID("allocate", "alice-1", bound.Add(time.Second)) {
		t.Errorf("DecisionID is not one per decision (kind, allocation, bound second)")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	var b []byte
	for _, e := range []Event{
		{Time: bound, Type: TypeGPUAllocate, User: "alice", ID: id, Details: map[string]any{"allocation": "alice-1"}},
		{Time: bound, Type: TypeContainerStart, User: "alice", ID: "same"},
		{Time: bound, Type: TypeContainerStart, User: "alice", ID: "same"},
		{Time: bound, Type: TypeGPUAllocate, User: "alice", ID: id, Details: map[string]any{"allocation": "alice-1", "recovered": true}},
	} {
		b, _ = e.AppendJSON(b)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	st, err := Read(context.Background(), []string{path}, Filter{}, func(e *Event) error { got = append(got, e.Type); return nil })
	if err != nil || len(got) != 3 || st.Duplicates != 1 {
		t.Errorf("read %v (%+v, %v), want the allocation once and both container events", got, st, err)
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"alice":            "alice",
		"héllo wörld":      "héllo wörld",
		"\x1b]0;pwned\x07": `\x1b]0;pwned\a`,
		"alice\u202egnp":   `alice\u202egnp`,
		"a\tb":             `a\tb`,
		"line\nbreak":      `line\nbreak`,
		"bad\xffutf8":      `bad\xffutf8`,
		"cr\rnul\x00":      `cr\rnul\x00`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

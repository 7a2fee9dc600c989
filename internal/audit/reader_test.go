package audit

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func readString(t *testing.T, content string, f Filter) ([]Event, ReadStats) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	var out []Event
	st, err := Read(context.Background(), []string{path}, f, func(e *Event) error { out = append(out, *e); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out, st
}

func TestReaderToleratesMalformedInput(t *testing.T) {
	content := strings.Join([]string{
		`{"timestamp":"2026-11-20T09:00:00.000000Z","event_type":"gpu.allocate","schema_version":"1","user":"alice","event_id":"1"}`,
		``,
		`   `,
		`not json at all`,
		`{"timestamp":"2026-11-20T09:00:01Z","schema_version":"1"}`,
		`{"timestamp":"yesterday","event_type":"gpu.allocate"}`,
		`["an","array"]`,
		`{"timestamp":"2026-11-20T09:00:02.000000Z","event_type":"gpu.release","schema_version":"1","user":"alice","event_id":"2"}`,
		`{"timestamp":"2026-11-20T09:00:03.000000Z","event_type":"gpu.rel`, // truncated last line
	}, "\n")
	events, st := readString(t, content, Filter{})
	if len(events) != 2 || events[0].ID != "1" || events[1].ID != "2" {
		t.Errorf("events = %+v, want the two good ones", events)
	}
	if st.Malformed != 5 || st.Lines != 7 {
		t.Errorf("stats = %+v, want 7 lines of which 5 malformed", st)
	}
}

func TestReaderUnderstandsDS01Envelopes(t *testing.T) {
	content := `{"timestamp": "2026-01-30T14:30:00.123456Z", "event_type": "gpu.allocate", "schema_version": "1", "user": "h_baker", "source": "gpu_allocator", "details": {"container": "thesis", "gpu_uuid": "1.2"}}
{"ts": "2026-01-30T14:31:00+00:00", "event": "gpu.released", "user": "h_baker", "container": "thesis", "gpu": "1", "reason": "RELEASED (container removed/stopped)"}
`
	events, st := readString(t, content, Filter{})
	if st.Malformed != 0 || len(events) != 2 {
		t.Fatalf("events=%+v stats=%+v", events, st)
	}
	want := []Event{
		{Time: time.Date(2026, 1, 30, 14, 30, 0, 123456000, time.UTC), Type: "gpu.allocate", Source: "gpu_allocator", User: "h_baker",
			Details: map[string]any{"container": "thesis", "gpu_uuid": "1.2"}},
		{Time: time.Date(2026, 1, 30, 14, 31, 0, 0, time.UTC), Type: "gpu.released", User: "h_baker",
			Details: map[string]any{"container": "thesis", "gpu": "1", "reason": "RELEASED (container removed/stopped)"}},
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("(-want,+got):\n%s", diff)
	}
	for _, e := range events {
		if e.Container() != "thesis" {
			t.Errorf("Container() = %q for %s", e.Container(), e.Type)
		}
	}
	// Old lines are found by the same filters.
	got, _ := readString(t, content, Filter{User: "h_baker", Type: "gpu", Container: "thesis", Since: time.Date(2026, 1, 30, 14, 30, 30, 0, time.UTC)})
	if len(got) != 1 || got[0].Type != "gpu.released" {
		t.Errorf("filtered old envelope = %+v", got)
	}
}

// fixture writes a log through the real writer so the quick path sees the real format.
func fixture(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	w, err := Open(Options{Path: path, Node: "gpu01"})
	if err != nil {
		t.Fatal(err)
	}
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	train := Container{Name: "train", ID: "4f2c0a1b2c3d4e5f", Type: "docker"}
	nb := Container{Name: "nb", ID: "99aa0a1b2c3d4e5f", Type: "notebook"}
	for _, e := range []Event{
		withTime(ContainerEvent(ContainerCreate, "alice", train, ""), at(0)),
		withTime(GPUAllocate("alice", Allocation{Name: "a1", Devices: []string{"GPU-0"}, Container: train}), at(1)),
		withTime(GPUReject("bob", Allocation{Name: "b1", Container: nb}, "QuotaExceeded", "bob holds 2/2"), at(2)),
		withTime(Event{Type: "gpus.legacy", User: "alice"}, at(3)),
		withTime(GPURelease("alice", Allocation{Name: "a1", Container: train}, "container removed"), at(4)),
		withTime(Lifecycle(IdleStop, "bob", nb, "students", "Enforce", "idle 30m"), at(5)),
		withTime(AuthDenied("mallory", "stop", train, "container belongs to alice"), at(6)),
		withTime(AdminChange(QuotaUpdate, "students", 2, "kubectl-client-side-apply"), at(7)),
	} {
		w.Log(e)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func withTime(e Event, t time.Time) Event { e.Time = t; return e }

func TestFilters(t *testing.T) {
	path := fixture(t)
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	cases := []struct {
		name string
		f    Filter
		want []string
	}{
		{"no filter", Filter{}, []string{"container.create", "gpu.allocate", "gpu.reject", "gpus.legacy", "gpu.release", "lifecycle.idle_stop", "auth.denied", "quota.update"}},
		{"user", Filter{User: "alice"}, []string{"container.create", "gpu.allocate", "gpus.legacy", "gpu.release"}},
		{"type segment gpu is not gpus", Filter{Type: "gpu"}, []string{"gpu.allocate", "gpu.reject", "gpu.release"}},
		{"exact type", Filter{Type: "gpu.release"}, []string{"gpu.release"}},
		{"partial segment matches nothing", Filter{Type: "gpu.rel"}, nil},
		{"container by name", Filter{Container: "nb"}, []string{"gpu.reject", "lifecycle.idle_stop"}},
		{"container by ID prefix", Filter{Container: "4f2c0a1b2c3d"}, []string{"container.create", "gpu.allocate", "gpu.release", "auth.denied"}},
		{"short ID prefix does not match", Filter{Container: "4f2c"}, nil},
		{"since is inclusive", Filter{Since: at(6)}, []string{"auth.denied", "quota.update"}},
		{"until is exclusive", Filter{Until: at(1)}, []string{"container.create"}},
		{"user and type", Filter{User: "alice", Type: "gpu"}, []string{"gpu.allocate", "gpu.release"}},
		{"user, type and since", Filter{User: "alice", Type: "gpu", Since: at(2)}, []string{"gpu.release"}},
		{"type and container", Filter{Type: "lifecycle", Container: "nb"}, []string{"lifecycle.idle_stop"}},
		{"all five", Filter{User: "bob", Type: "gpu", Container: "nb", Since: at(1), Until: at(3)}, []string{"gpu.reject"}},
		{"user with no events", Filter{User: "carol"}, nil},
		{"type alone finds admin changes", Filter{Type: "quota"}, []string{"quota.update"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			if _, err := Read(context.Background(), []string{path}, tc.f, func(e *Event) error { got = append(got, e.Type); return nil }); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want,+got):\n%s", diff)
			}
		})
	}
}

// FuzzReader feeds arbitrary bytes to the reader: it must never panic, and the quick
// pre-filter must never drop a line that the full filter accepts.
func FuzzReader(f *testing.F) {
	f.Add([]byte(`{"timestamp":"2026-11-20T09:00:00.000000Z","event_type":"gpu.allocate","schema_version":"1","user":"alice","event_id":"1"}`), "alice", "gpu", int64(0))
	f.Add([]byte(`{"ts":"2026-01-30T14:31:00","event":"gpu.released","user":"bob","container":"c"}`), "bob", "gpu.released", int64(3600))
	f.Add([]byte("\n\n{\"timestamp\":\"2026-11-20T09:00:00.000000Z\",\"event_type\":\"a\\\"b\"}\n{"), "", "a", int64(-60))
	f.Fuzz(func(t *testing.T, data []byte, user, typ string, sinceOffset int64) {
		filter := Filter{User: user, Type: typ}
		if sinceOffset != 0 {
			filter.Since = t0.Add(time.Duration(sinceOffset) * time.Second)
		}
		m := filter.matcher()
		all := Filter{}.matcher()
		var st ReadStats
		_ = scan(context.Background(), strings.NewReader(string(data)), all, &st, func(e *Event) error {
			line, err := e.AppendJSON(nil)
			if err != nil {
				return nil
			}
			line = line[:len(line)-1]
			if m.match(e) && m.cannotMatch(line) {
				t.Errorf("quick filter dropped a matching event: %s", line)
			}
			return nil
		})
		for _, line := range strings.Split(string(data), "\n") {
			if e, ok := parseLine([]byte(line)); ok && m.match(&e) && m.cannotMatch([]byte(line)) {
				t.Errorf("quick filter dropped a matching raw line: %s", line)
			}
		}
	})
}

func TestFilesOrderAndDuplicates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	for _, name := range []string{
		"events-20261121T000000.000Z.jsonl.gz",
		"events-20261120T000000.000Z.jsonl.gz",
		"events-20261122T000000.000Z.jsonl",    // being compressed:
		"events-20261122T000000.000Z.jsonl.gz", // both exist briefly
		"events-20261122T000000.000Z.jsonl.gz.tmp",
		"events.jsonl",
		"other.jsonl",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	want := []string{"events-20261120T000000.000Z.jsonl.gz", "events-20261121T000000.000Z.jsonl.gz", "events-20261122T000000.000Z.jsonl", "events.jsonl"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("(-want,+got):\n%s", diff)
	}
}

func TestFollowerAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	w, err := Open(Options{Path: path, MaxSize: 4 << 10, MaxBackups: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fo := NewFollower(path, Filter{Type: "test"})
	defer fo.Close()
	var seen []int
	poll := func() {
		if err := fo.Poll(func(e *Event) error { seen = append(seen, int(e.Details["seq"].(float64))); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 500 {
		w.Log(Event{Type: "test.follow", Details: map[string]any{"seq": i}})
		w.Log(Event{Type: "other.noise"})
		if i%7 == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			poll()
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	poll()
	if w.Stats().Rotations < 5 {
		t.Fatalf("only %d rotations", w.Stats().Rotations)
	}
	for i, s := range seen {
		if s != i {
			t.Fatalf("follower saw seq %d at position %d: a line was missed or repeated (%v)", s, i, fmt.Sprint(seen[max(0, i-3):min(len(seen), i+3)]))
		}
	}
	if len(seen) != 500 {
		t.Errorf("follower saw %d events, want 500", len(seen))
	}
}

// TestParallelScanMatchesSequential reads one file sequentially and in parallel chunks and
// expects the same events in the same order and the same counts.
func TestParallelScanMatchesSequential(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	w, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		w.Log(Event{Type: []string{"gpu.allocate", "container.start", "gpus.legacy"}[i%3], User: fmt.Sprintf("u%d", i%7), Details: map[string]any{"seq": i}})
		if i%500 == 0 {
			_ = w.Flush()
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString("garbage line\n\n")
			f.Close()
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	read := func(f Filter, limit int) ([]int, ReadStats) {
		var seqs []int
		st, err := Read(context.Background(), []string{path}, f, func(e *Event) error {
			seqs = append(seqs, int(e.Details["seq"].(float64)))
			if len(seqs) == limit {
				return errStop
			}
			return nil
		})
		if err != nil && err != errStop {
			t.Fatal(err)
		}
		return seqs, st
	}
	for _, f := range []Filter{{}, {User: "u3", Type: "gpu"}} {
		seqWant, stWant := read(f, -1)
		old := parallelMin
		parallelMin = 1
		seqGot, stGot := read(f, -1)
		firstTen, _ := read(f, 10)
		parallelMin = old
		if diff := cmp.Diff(seqWant, seqGot); diff != "" || stWant != stGot {
			t.Errorf("filter %+v: parallel differs (-seq,+par):\n%s\nstats %+v vs %+v", f, diff, stWant, stGot)
		}
		if diff := cmp.Diff(seqWant[:10], firstTen); diff != "" {
			t.Errorf("stopping a parallel read early: (-want,+got):\n%s", diff)
		}
		if stWant.Malformed != 6 {
			t.Errorf("malformed = %d, want 6", stWant.Malformed)
		}
	}
}

var errStop = fmt.Errorf("stop")

// TestFollowerCatchesUpOnSeveralRotations renames and creates files by hand, as the writer
// does, several times between polls and with the live file missing for a while.
func TestFollowerCatchesUpOnSeveralRotations(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	n := 0
	write := func(name string, count int) {
		t.Helper()
		f, err := os.OpenFile(name, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		for range count {
			n++
			e := Event{Time: t0, Type: "test.f", ID: fmt.Sprintf("id-%d", n), Details: map[string]any{"seq": n}}
			line, _ := e.AppendJSON(nil)
			f.Write(line)
		}
		f.Close()
	}
	rotations := 0
	rotate := func() {
		t.Helper()
		rotations++
		if err := os.Rename(path, rotatedName(path, t0.Add(time.Duration(rotations)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	fo := NewFollower(path, Filter{})
	defer fo.Close()
	var got []int
	poll := func() {
		t.Helper()
		if err := fo.Poll(func(e *Event) error { got = append(got, int(e.Details["seq"].(float64))); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	write(path, 2)
	poll()
	write(path, 1)
	rotate()
	write(path, 2)
	rotate()
	if err := compress(rotatedName(path, t0.Add(2*time.Second)), 0o640); err != nil { // compressed before the poll
		t.Fatal(err)
	}
	write(path, 2)
	poll()
	rotate() // the live file is missing at the next poll
	poll()
	write(path, 1)
	rotate()
	write(path, 3)
	poll()
	want := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want,+got):\n%s", diff)
	}
}

func TestDecisionsRemembersTheLastLimit(t *testing.T) {
	d := NewDecisions(2)
	ev := func(id string) *Event { return &Event{Type: TypeGPUAllocate, ID: id} }
	for _, c := range []struct {
		id    string
		again bool
	}{{"a", false}, {"a", true}, {"b", false}, {"c", false}, {"a", false}, {"c", true}} {
		if got := d.Again(ev(c.id)); got != c.again {
			t.Fatalf("Again(%s) = %v, want %v", c.id, got, c.again)
		}
	}
	other := &Event{Type: "container.start", ID: "x"}
	if first, second := d.Again(other), d.Again(other); first || second {
		t.Fatal("an event that is not a decision was taken for a repeat")
	}
}

// TestDamagedGzipNamesTheFile: a compressed file cut short is reported with its name and
// what is wrong with it, after the events before the damage.
func TestDamagedGzipNamesTheFile(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for i := range 200 {
		fmt.Fprintf(zw, `{"timestamp":"2026-12-01T00:00:%02d.000000Z","event_type":"gpu.allocate","user":"u%d"}`+"\n", i%60, i)
	}
	_ = zw.Close()
	path := filepath.Join(t.TempDir(), "events-1.jsonl.gz")
	if err := os.WriteFile(path, buf.Bytes()[:buf.Len()-20], 0o644); err != nil {
		t.Fatal(err)
	}
	n := 0
	_, err := Read(context.Background(), []string{path}, Filter{}, func(*Event) error { n++; return nil })
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "truncated or damaged") {
		t.Fatalf("err = %v, want one naming %s as truncated or damaged", err, path)
	}
	if n == 0 {
		t.Fatal("no event before the damage was read")
	}
}

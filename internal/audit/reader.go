package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Files returns the files of the log at path in time order: rotated files (plain or
// gzip), oldest first, then the live file if it exists.
func Files(path string) ([]string, error) {
	// The live file first: a directory the caller may not search hides every file in it,
	// and must not read as a log that does not exist yet.
	_, err := os.Lstat(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("reading audit log: %w", err)
	}
	live := err == nil
	files, err := rotatedFiles(path)
	if err != nil {
		return nil, fmt.Errorf("listing audit logs beside %s: %w", path, err)
	}
	if live {
		files = append(files, path)
	}
	return files, nil
}

// Decode calls fn with the events of r, a stream of JSON lines as AppendJSON writes them
// (the gateway's answers), in order, in batches: what had come in when the stream paused, so
// that a followed stream is shown as it comes. Blank lines are skipped; malformed and
// over-long lines are counted in the stats and skipped, as Read does.
func Decode(ctx context.Context, r io.Reader, fn func([]Event) error) (ReadStats, error) {
	var st ReadStats
	br := bufio.NewReaderSize(r, MaxLineSize)
	var batch []Event
	for {
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		line, tooLong, err := readLine(br)
		switch {
		case tooLong:
			st.Lines++
			st.TooLong++
		case len(bytes.TrimSpace(line)) == 0:
		default:
			st.Lines++
			if e, ok := parseLine(line); ok {
				batch = append(batch, e)
			} else {
				st.Malformed++
			}
		}
		if len(batch) > 0 && (err != nil || br.Buffered() == 0) {
			if ferr := fn(batch); ferr != nil {
				return st, ferr
			}
			batch = nil
		}
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, err
		}
	}
}

// ReadStats says what a read skipped.
type ReadStats struct {
	// Lines is the number of non-blank lines read.
	Lines int
	// Malformed is the number of lines that were not events (including a truncated last line).
	Malformed int
	// TooLong is the number of lines over MaxLineSize, skipped unread.
	TooLong int
	// Duplicates is the number of decisions recorded again (after a crash) and passed once.
	Duplicates int
}

// MaxLineSize is the longest line the readers decode; a longer one is counted as TooLong.
const MaxLineSize = 1 << 20

// Read calls fn for every event in files, in order, that f matches. Blank lines are
// skipped; malformed lines are counted in the stats and skipped; an allocation decision
// recorded again after a crash (the same event ID) is passed once.
func Read(ctx context.Context, files []string, f Filter, fn func(*Event) error) (ReadStats, error) {
	var st ReadStats
	m := f.matcher()
	seen := NewDecisions(0)
	inner := fn
	fn = func(e *Event) error {
		if seen.Again(e) {
			st.Duplicates++
			return nil
		}
		return inner(e)
	}
	for _, name := range files {
		if err := readFile(ctx, name, m, &st, fn); err != nil {
			return st, err
		}
	}
	return st, nil
}

func readFile(ctx context.Context, name string, m *matcher, st *ReadStats, fn func(*Event) error) error {
	// Before opening: opening a FIFO waits for a writer.
	if fi, err := os.Stat(name); err == nil && !fi.Mode().IsRegular() {
		return notRegular(name, fi.Mode())
	}
	f, err := os.Open(name)
	if os.IsNotExist(err) && !strings.HasSuffix(name, ".gz") {
		// Compressed since it was listed: the .gz is complete before the plain file goes.
		name += ".gz"
		f, err = os.Open(name)
	}
	if os.IsNotExist(err) {
		return nil // removed by retention since it was listed
	}
	if err != nil {
		return fmt.Errorf("reading audit log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("reading audit log: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return notRegular(name, fi.Mode())
	}
	if fi.Size() >= parallelMin && !strings.HasSuffix(name, ".gz") {
		return readParallel(ctx, f, fi.Size(), m, st, fn)
	}
	var r io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			st.Malformed++
			return nil
		}
		defer zr.Close()
		r = zr
	}
	err = scan(ctx, r, m, st, fn)
	var rerr readError
	if errors.As(err, &rerr) {
		if strings.HasSuffix(name, ".gz") {
			return fmt.Errorf("reading audit log %s: %w (the compressed file is truncated or damaged; the events before the damage were read)", name, rerr.err)
		}
		return fmt.Errorf("reading audit log %s: %w", name, rerr.err)
	}
	return err
}

// readError is a failure to read the file itself (not one of fn's errors).
type readError struct{ err error }

func (e readError) Error() string { return "reading audit log: " + e.err.Error() }
func (e readError) Unwrap() error { return e.err }

func scan(ctx context.Context, r io.Reader, m *matcher, st *ReadStats, fn func(*Event) error) error {
	br := bufio.NewReaderSize(r, MaxLineSize)
	for n := 0; ; n++ {
		if n&0xfff == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		line, tooLong, err := readLine(br)
		switch {
		case tooLong:
			st.Lines++
			st.TooLong++
		case len(bytes.TrimSpace(line)) == 0:
		default:
			st.Lines++
			if m.cannotMatch(line) {
				break
			}
			e, ok := parseLine(line)
			if !ok {
				st.Malformed++
				break
			}
			if m.match(&e) {
				if err := fn(&e); err != nil {
					return err
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return readError{err}
		}
	}
}

// readLine returns the next line without its newline. A line longer than the buffer is
// skipped whole and reported as tooLong. A last line without a newline comes with io.EOF.
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	line, err = br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		for err == bufio.ErrBufferFull {
			_, err = br.ReadSlice('\n')
		}
		return nil, true, err
	}
	return bytes.TrimSuffix(line, []byte{'\n'}), false, err
}

// notRegular refuses a FIFO or a device (/dev/zero): it never ends; only --follow reads those.
func notRegular(name string, m os.FileMode) error {
	return fmt.Errorf("%s is not a regular file (%s): an audit log is a file; use --follow to read a stream", name, fileKind(m))
}

// fileKind names what a file that is not regular is.
func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	default:
		return m.Type().String()
	}
}

// envelope accepts both the v1 envelope and DS01's older ts/event form.
type envelope struct {
	Timestamp     string          `json:"timestamp"`
	TS            string          `json:"ts"`
	EventType     string          `json:"event_type"`
	Event         string          `json:"event"`
	Source        string          `json:"source"`
	SchemaVersion json.RawMessage `json:"schema_version"`
	User          string          `json:"user"`
	Details       map[string]any  `json:"details"`
	EventID       string          `json:"event_id"`
	Node          string          `json:"node"`
}

// parseLine decodes one line of either envelope.
func parseLine(line []byte) (Event, bool) {
	var env envelope
	if err := json.Unmarshal(line, &env); err != nil {
		return Event{}, false
	}
	e := Event{Type: env.EventType, Source: env.Source, User: env.User, Details: env.Details, ID: env.EventID, Node: env.Node}
	ts := env.Timestamp
	if e.Type == "" && env.Event != "" {
		// DS01's older envelope: ts/event with the fields at the top level.
		e.Type, ts = env.Event, env.TS
		var all map[string]any
		if json.Unmarshal(line, &all) == nil {
			for _, k := range []string{"ts", "event", "user", "source", "schema_version", "event_id", "node"} {
				delete(all, k)
			}
			if len(all) > 0 {
				e.Details = all
			}
		}
	}
	if e.Type == "" || ts == "" {
		return Event{}, false
	}
	t, err := parseTime(ts)
	if err != nil {
		return Event{}, false
	}
	e.Time = t
	return e, true
}

// parseTime accepts RFC 3339 with or without a zone (DS01 wrote naive local times in old lines).
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.Local)
	return t.UTC(), err
}

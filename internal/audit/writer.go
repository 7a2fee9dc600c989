package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/utils/clock"
)

// Defaults of Options.
const (
	DefaultPath          = "/var/log/gpuwarden/events.jsonl"
	DefaultFileMode      = 0o640
	DefaultMaxSize       = 100 << 20
	DefaultMaxAge        = 24 * time.Hour
	DefaultMaxBackups    = 30
	DefaultFlushInterval = 200 * time.Millisecond
	DefaultMaxPending    = 64 << 20
)

// Options configure a Writer. Zero values take the defaults above.
type Options struct {
	// Path is the live file; rotated files sit beside it.
	Path string
	// Node is written into events that name none.
	Node string
	// Source is written into events that name none.
	Source string
	// FileMode of the log files (default 0640); the directory is created 0750.
	FileMode os.FileMode
	// MaxSize rotates the live file before it grows past this many bytes.
	MaxSize int64
	// MaxAge rotates the live file once it is this old.
	MaxAge time.Duration
	// MaxBackups is how many rotated (compressed) files are kept.
	MaxBackups int
	// FlushInterval is the group-commit period: pending events are written and fsynced this often.
	FlushInterval time.Duration
	// MaxPending bounds the bytes held in memory while the log cannot be written; events
	// beyond it are counted and the count is recorded in the log once writing resumes.
	MaxPending int
	// Clock stamps events and ages files.
	Clock clock.WithTicker
	// OnError is told when writing starts failing (and again every minute while it fails)
	// and with nil when it recovers. It must not block.
	OnError func(error)

	// openFile opens the live file; tests replace it to inject failures.
	openFile func(name string, flag int, perm os.FileMode) (logFile, error)
}

// logFile is what the writer needs of an open file.
type logFile interface {
	Write([]byte) (int, error)
	Sync() error
	Close() error
	Stat() (os.FileInfo, error)
}

// Stats are the writer's counters since it opened.
type Stats struct {
	// Written is the number of events written and synced.
	Written uint64
	// Failures is the number of failed write, sync or open attempts.
	Failures uint64
	// Dropped is the number of events lost because MaxPending was reached.
	Dropped uint64
	// PendingBytes is what waits in memory to be written.
	PendingBytes int
	// Rotations is the number of rotations.
	Rotations uint64
	// LastError is the most recent failure, nil once writing works again.
	LastError error
}

// Writer appends events to the audit log. Log never blocks on I/O: events are encoded by
// the caller, queued, and written and fsynced together by one goroutine every
// FlushInterval (group commit). One Writer per process and file.
type Writer struct {
	o Options

	mu           sync.Mutex
	pending      []byte
	pendingCount int
	dropped      uint64 // not yet recorded in the log
	closed       bool

	flushReq chan chan error
	stop     chan struct{}
	done     chan struct{}
	bg       sync.WaitGroup // compression and retention

	written, failures, droppedTotal, rotations atomic.Uint64
	lastErr                                    atomic.Pointer[error]

	// Owned by the flush goroutine.
	f           logFile
	size        int64
	openedAt    time.Time
	midLine     bool // the last write ended inside a line
	failingFrom time.Time
	lastReport  time.Time
}

// Open starts a writer. It fails only on bad options: a file that cannot be opened yet is
// retried like any other write failure.
func Open(o Options) (*Writer, error) {
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.FileMode == 0 {
		o.FileMode = DefaultFileMode
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxBackups == 0 {
		o.MaxBackups = DefaultMaxBackups
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.MaxPending == 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.openFile == nil {
		o.openFile = func(name string, flag int, perm os.FileMode) (logFile, error) {
			return os.OpenFile(name, flag, perm)
		}
	}
	switch {
	case o.MaxSize < 0 || o.MaxAge < 0 || o.MaxBackups < 0 || o.FlushInterval < 0 || o.MaxPending < 0:
		return nil, errors.New("audit log: sizes, ages, counts and intervals must not be negative")
	case filepath.Ext(o.Path) == "":
		return nil, fmt.Errorf("audit log %q: the file name needs an extension such as .jsonl", o.Path)
	}
	// What no retry can fix is refused at once: a directory others can write to, a link.
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o750); err != nil {
		return nil, fmt.Errorf("creating the audit log directory: %w", err)
	}
	if err := safeDir(filepath.Dir(o.Path)); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(o.Path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("the audit log %s is a symbolic link: %w; it must be a file of its own", o.Path, syscall.ELOOP)
	}
	w := &Writer{o: o, flushReq: make(chan chan error), stop: make(chan struct{}), done: make(chan struct{})}
	if err := w.openLive(); err != nil {
		w.fail(err)
	}
	go w.run()
	return w, nil
}

// Log queues e. It stamps Time, ID, Node and Source when they are empty. It never blocks
// on I/O and never fails: a problem is counted and surfaced through OnError and Stats.
func (w *Writer) Log(e Event) {
	if e.Time.IsZero() {
		e.Time = w.o.Clock.Now()
	}
	if e.ID == "" {
		e.ID = NewID()
	}
	if e.Node == "" {
		e.Node = w.o.Node
	}
	if e.Source == "" {
		e.Source = w.o.Source
	}
	line, err := e.AppendJSON(nil)
	if err != nil {
		// Details that cannot be encoded: keep the event, say what was lost.
		e.Details = map[string]any{"encoding_error": err.Error()}
		line, _ = e.AppendJSON(nil)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || len(w.pending)+len(line) > w.o.MaxPending {
		w.dropped++
		w.droppedTotal.Add(1)
		return
	}
	w.pending = append(w.pending, line...)
	w.pendingCount++
}

// Flush writes and fsyncs everything queued so far and returns the write error, if any.
func (w *Writer) Flush() error {
	req := make(chan error, 1)
	select {
	case w.flushReq <- req:
		return <-req
	case <-w.done:
		return errors.New("audit log: writer is closed")
	}
}

// Close writes what is queued, fsyncs, waits for compression of rotated files and closes
// the file. Events logged after Close are counted as dropped.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	w.bg.Wait()
	err := w.lastError()
	if w.f != nil {
		if cerr := w.f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("audit log %s: %d bytes could not be written: %w", w.o.Path, w.Stats().PendingBytes, err)
	}
	return nil
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	pending := len(w.pending)
	w.mu.Unlock()
	return Stats{
		Written: w.written.Load(), Failures: w.failures.Load(), Dropped: w.droppedTotal.Load(),
		PendingBytes: pending, Rotations: w.rotations.Load(), LastError: w.lastError(),
	}
}

func (w *Writer) lastError() error {
	if p := w.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (w *Writer) run() {
	defer close(w.done)
	t := w.o.Clock.NewTicker(w.o.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C():
			w.flush()
		case req := <-w.flushReq:
			req <- w.flush()
		case <-w.stop:
			w.flush()
			return
		}
	}
}

// flush writes the pending lines in one write and fsyncs. On failure the unwritten bytes
// go back to the front of the queue, to be retried on the next tick.
func (w *Writer) flush() error {
	w.mu.Lock()
	batch, count := w.pending, w.pendingCount
	w.pending, w.pendingCount = nil, 0
	w.mu.Unlock()
	if len(batch) == 0 {
		return w.lastError()
	}
	n, err := w.write(batch)
	if err != nil {
		w.requeue(batch[n:], count-countLines(batch[:n]))
		w.fail(err)
		return err
	}
	w.written.Add(uint64(count))
	w.recovered()
	w.mu.Lock()
	dropped := w.dropped
	w.dropped = 0
	w.mu.Unlock()
	if dropped > 0 {
		w.Log(droppedEvent(dropped))
	}
	return nil
}

func (w *Writer) requeue(rest []byte, count int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = append(rest[:len(rest):len(rest)], w.pending...)
	w.pendingCount += count
}

// write appends batch to the live file, rotating whenever the next whole lines would take
// the file past MaxSize or it is older than MaxAge, and fsyncs. It returns how many bytes
// reached the file.
func (w *Writer) write(batch []byte) (int, error) {
	done := 0
	for done < len(batch) {
		if err := w.ensureOpen(); err != nil {
			return done, err
		}
		chunk := batch[done:]
		if !w.midLine {
			if w.size > 0 && (w.size+int64(firstLineLen(chunk)) > w.o.MaxSize || w.o.Clock.Since(w.openedAt) >= w.o.MaxAge) {
				if err := w.rotate(); err != nil {
					return done, err
				}
			}
			chunk = wholeLinesWithin(chunk, w.o.MaxSize-w.size)
		}
		n, err := w.f.Write(chunk)
		w.size += int64(n)
		done += n
		if n > 0 {
			w.midLine = chunk[n-1] != '\n'
		}
		if err != nil {
			return done, fmt.Errorf("writing %s: %w", w.o.Path, err)
		}
	}
	if w.f != nil {
		if err := w.f.Sync(); err != nil {
			return done, fmt.Errorf("syncing %s: %w", w.o.Path, err)
		}
	}
	return done, nil
}

func firstLineLen(b []byte) int {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return i + 1
	}
	return len(b)
}

// wholeLinesWithin returns the longest prefix of b made of whole lines that fits in room
// bytes, or the first line alone when even that does not fit.
func wholeLinesWithin(b []byte, room int64) []byte {
	if int64(len(b)) <= room {
		return b
	}
	if room > 0 {
		if i := bytes.LastIndexByte(b[:room], '\n'); i >= 0 {
			return b[:i+1]
		}
	}
	return b[:firstLineLen(b)]
}

// ensureOpen opens the live file if it is not open, or reopens it when it was moved or
// deleted behind the writer's back.
func (w *Writer) ensureOpen() error {
	if w.f != nil && !w.midLine {
		if moved(w.f, w.o.Path) {
			w.f.Close()
			w.f = nil
		}
	}
	if w.f == nil {
		return w.openLive()
	}
	return nil
}

// safeDir refuses a log directory that another user could write to: whoever can write
// there can replace the log, or plant a link where the next rotated file goes.
func safeDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("the audit log directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	switch euid := uint32(os.Geteuid()); {
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("the audit log directory %s is writable by others (mode %04o): make it writable by its owner only (chmod go-w)", dir, fi.Mode().Perm())
	case st.Uid != euid && st.Uid != 0:
		return fmt.Errorf("the audit log directory %s belongs to uid %d, not to gpuwarden (uid %d) or root: its owner could replace the log", dir, st.Uid, euid)
	}
	return nil
}

func moved(f logFile, path string) bool {
	open, err := f.Stat()
	if err != nil {
		return true
	}
	onDisk, err := os.Stat(path)
	return err != nil || !os.SameFile(open, onDisk)
}

func (w *Writer) openLive() error {
	if err := os.MkdirAll(filepath.Dir(w.o.Path), 0o750); err != nil {
		return fmt.Errorf("creating the audit log directory: %w", err)
	}
	if err := safeDir(filepath.Dir(w.o.Path)); err != nil {
		return err
	}
	// O_NOFOLLOW: a symlink put where the log goes is refused, not written through.
	f, err := w.o.openFile(w.o.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, w.o.FileMode)
	if err != nil {
		return fmt.Errorf("opening %s: %w", w.o.Path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("reading %s: %w", w.o.Path, err)
	}
	w.f, w.size, w.midLine = f, fi.Size(), false
	w.openedAt = w.o.Clock.Now()
	if fi.Size() > 0 {
		// An existing file is as old as its first event, or at least its modification time.
		w.openedAt = firstEventTime(w.o.Path, fi.ModTime())
		if endsMidLine(w.o.Path, fi.Size()) {
			// A crash left half a line: end it so the next event starts on its own line.
			n, _ := f.Write([]byte("\n"))
			w.size += int64(n)
		}
	}
	return nil
}

func (w *Writer) fail(err error) {
	w.failures.Add(1)
	w.lastErr.Store(&err)
	now := w.o.Clock.Now()
	if w.failingFrom.IsZero() {
		w.failingFrom = now
	}
	if w.o.OnError != nil && now.Sub(w.lastReport) >= time.Minute {
		w.lastReport = now
		w.o.OnError(err)
	}
}

// report surfaces a failure of background work (compression, retention): no event is
// lost by it, so it does not change the writer's failing state.
func (w *Writer) report(err error) {
	w.failures.Add(1)
	if w.o.OnError != nil {
		w.o.OnError(err)
	}
}

func (w *Writer) recovered() {
	if w.failingFrom.IsZero() {
		return
	}
	w.failingFrom, w.lastReport = time.Time{}, time.Time{}
	w.lastErr.Store(nil)
	if w.o.OnError != nil {
		w.o.OnError(nil)
	}
}

func countLines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}

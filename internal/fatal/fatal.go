// Package fatal runs what must happen before the process dies of an error it cannot
// recover from — a library's fatal log, such as etcd's when its disk is full: above all,
// flushing the audit log, so that nothing already accepted is lost.
package fatal

import (
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap/zapcore"
)

// flushTimeout bounds each flush: a process that is dying must not hang on a dead disk.
const flushTimeout = 5 * time.Second

var (
	mu    sync.Mutex
	next  int
	funcs = map[int]func(){}
)

// OnExit registers fn to run before a fatal exit; remove unregisters it.
func OnExit(fn func()) (remove func()) {
	mu.Lock()
	defer mu.Unlock()
	id := next
	next++
	funcs[id] = fn
	return func() {
		mu.Lock()
		defer mu.Unlock()
		delete(funcs, id)
	}
}

// Flush runs every registered function, each bounded by flushTimeout.
func Flush() {
	mu.Lock()
	fns := make([]func(), 0, len(funcs))
	for _, fn := range funcs {
		fns = append(fns, fn)
	}
	mu.Unlock()
	for _, fn := range fns {
		done := make(chan struct{})
		go func() { defer close(done); fn() }()
		select {
		case <-done:
		case <-time.After(flushTimeout):
		}
	}
}

// ExitHook is a zap hook for Fatal logs: it flushes, then exits with code 1.
type ExitHook struct{}

// OnWrite implements zapcore.CheckWriteHook.
func (ExitHook) OnWrite(ce *zapcore.CheckedEntry, _ []zapcore.Field) {
	Flush()
	fmt.Fprintf(os.Stderr, "gpuwarden: fatal error in %s: %s; exiting\n", ce.LoggerName, ce.Message)
	os.Exit(1)
}

// PanicHook is a zap hook for Panic logs: it flushes, then panics as zap would.
type PanicHook struct{}

// OnWrite implements zapcore.CheckWriteHook.
func (PanicHook) OnWrite(ce *zapcore.CheckedEntry, _ []zapcore.Field) {
	Flush()
	panic(ce.Message)
}

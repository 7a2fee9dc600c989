// Package logging sets up gpuwarden's own log and lets components write warnings, a level
// logr does not have: an outage a person should see, without an error's alarm.
package logging

import (
	"fmt"
	"sync/atomic"

	"github.com/go-logr/logr"
	"go.uber.org/zap"
)

var warner atomic.Pointer[zap.Logger]

// SetWarner sets the zap logger warnings go to (the one behind the process's logr logger).
func SetWarner(l *zap.Logger) { warner.Store(l) }

// Warning logs msg at warning level with key-value pairs; through log at Info when no zap
// logger is set (tests).
func Warning(log logr.Logger, name, msg string, kv ...any) {
	l := warner.Load()
	if l == nil {
		log.Info("WARNING: "+msg, kv...)
		return
	}
	fields := make([]zap.Field, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		fields = append(fields, zap.Any(fmt.Sprint(kv[i]), kv[i+1]))
	}
	l.Named(name).Warn(msg, fields...)
}

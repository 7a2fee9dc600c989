package logging

import (
	"github.com/go-logr/zapr"
	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Setup sends gpuwarden's own logs to stderr, through controller-runtime's logger (ctrl.Log,
// what ctrl.LoggerFrom gives for a context that carries none) and Warning; verbosity raises
// the detail.
// Stack traces are for programming errors (DPanic and up), or for every error from -v 2: an
// outage or a refusal is said in one line.
func Setup(verbosity int) {
	level := zapcore.Level(-verbosity)
	stacks := zapcore.DPanicLevel
	if verbosity >= 2 {
		stacks = zapcore.ErrorLevel
	}
	raw := zap.NewRaw(zap.Level(level), zap.StacktraceLevel(stacks), zap.ConsoleEncoder(func(c *zapcore.EncoderConfig) {
		c.EncodeTime = zapcore.RFC3339TimeEncoder
	}))
	ctrl.SetLogger(zapr.NewLogger(raw))
	SetWarner(raw)
}

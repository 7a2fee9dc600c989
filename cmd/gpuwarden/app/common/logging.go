// Package common holds what the server and controller commands share: logging and the
// controller manager's flags and run loop.
package common

import (
	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// SetupLogging sends gpuwarden's own logs to stderr; verbosity raises the detail.
func SetupLogging(verbosity int) {
	level := zapcore.Level(-verbosity)
	ctrl.SetLogger(zap.New(zap.Level(level), zap.ConsoleEncoder(func(c *zapcore.EncoderConfig) {
		c.EncodeTime = zapcore.RFC3339TimeEncoder
	})))
}

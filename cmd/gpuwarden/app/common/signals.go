package common

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	ctrl "sigs.k8s.io/controller-runtime"
)

// StopSignals end gpuwarden cleanly. SIGHUP is among them: a closed terminal or a service
// manager's reload must never kill the process abruptly, with the audit log unflushed.
var StopSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP}

// SignalContext is cancelled by the first of StopSignals; a second one exits at once with
// code 1, for a stop that hangs.
func SignalContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	c := make(chan os.Signal, 2)
	signal.Notify(c, StopSignals...)
	go func() {
		s := <-c
		ctrl.Log.WithName("signal").Info("Stopping", "signal", s.String())
		cancel()
		s = <-c
		ctrl.Log.WithName("signal").Info("Second signal: exiting at once", "signal", s.String())
		os.Exit(1)
	}()
	return ctx
}

package watchdog

import (
	"context"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// Notifier speaks systemd's notify protocol on $NOTIFY_SOCKET; without one (not under
// systemd, or Type=simple) it says nothing.
type Notifier struct {
	Health *Health
	Clock  clock.Clock
	Log    logr.Logger
	// notify sends a state; daemon.SdNotify when nil.
	notify func(state string) error
}

func (n *Notifier) send(state string) {
	send := n.notify
	if send == nil {
		send = func(state string) error { _, err := daemon.SdNotify(false, state); return err }
	}
	if err := send(state); err != nil {
		n.Log.Error(err, "Telling systemd", "state", state)
	}
}

// Ready says the process is up.
func (n *Notifier) Ready() { n.send(daemon.SdNotifyReady) }

// Stopping says the process is shutting down.
func (n *Notifier) Stopping() { n.send(daemon.SdNotifyStopping) }

// Run pings the watchdog at half its interval ($WATCHDOG_USEC) while every check passes,
// until ctx ends; without a watchdog it returns at once.
func (n *Notifier) Run(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.Log.Error(err, "Reading the systemd watchdog's interval; not pinging it")
		return
	}
	if interval == 0 {
		return
	}
	n.run(ctx, interval/2)
}

func (n *Notifier) run(ctx context.Context, every time.Duration) {
	wedged := ""
	for {
		if err := n.Health.Check(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			if err.Error() != wedged {
				n.Log.Error(err, "A part of gpuwarden is wedged; not pinging the systemd watchdog, which will restart gpuwarden")
				wedged = err.Error()
			}
		} else {
			if wedged != "" {
				n.Log.Info("Every part of gpuwarden answers again; pinging the systemd watchdog")
				wedged = ""
			}
			n.send(daemon.SdNotifyWatchdog)
		}
		t := n.Clock.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// notifyEnv are the variables systemd gives a Type=notify service.
var notifyEnv = []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}

// Withhold hides systemd's notify variables from the process until the returned function
// puts them back. The embedded kube-apiserver says READY=1 (and unsets them) as soon as it
// serves, long before gpuwarden is ready: withheld while it starts, they stay gpuwarden's.
func Withhold() (restore func()) {
	saved := map[string]string{}
	for _, k := range notifyEnv {
		if v, ok := os.LookupEnv(k); ok {
			saved[k] = v
			_ = os.Unsetenv(k)
		}
	}
	return func() {
		for k, v := range saved {
			_ = os.Setenv(k, v)
		}
	}
}

// Serve runs run (the process's work, such as a controller manager's Start) and speaks for
// it to systemd: when up reports true it calls ready, says READY and pings the watchdog
// while every check of n.Health passes; once up has reported, run's return is said as
// STOPPING. A run that returns before up reports ends Serve at once, with nothing said. up
// and run get a context that ends when Serve returns; Serve returns run's error.
func (n *Notifier) Serve(ctx context.Context, run func(context.Context) error, up func(context.Context) bool, ready func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- run(ctx) }()
	upc := make(chan bool, 1)
	go func() { upc <- up(ctx) }()
	select {
	case ok := <-upc:
		if ok {
			ready()
			n.Ready()
			go n.Run(ctx)
		}
	case err := <-errc:
		return err
	}
	err := <-errc
	n.Stopping()
	return err
}

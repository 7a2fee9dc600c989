package gpu

import (
	"context"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
)

// Config chooses the node's GPU back end.
type Config struct {
	// Fake is the fakegpu profile to simulate (one of fakegpu.Profiles); empty reads NVML.
	Fake string
	// Node is the node whose simulated GPUs these are (their UUIDs are stable per node).
	Node string
	// Control is a file the simulated GPUs re-read while they run (README.md, "Simulated GPUs driven from outside"); empty:
	// none. It is read once before Open returns, so the first inventory never sees the
	// profile's defaults first.
	Control string
}

// ControlError is an Open failure of Config.Control; any other failure is of Config.Fake.
type ControlError struct{ Err error }

func (e *ControlError) Error() string { return e.Err.Error() }
func (e *ControlError) Unwrap() error { return e.Err }

// Open returns the back end c chooses: simulated GPUs with c.Fake, else NVML (a host without
// a driver has no GPUs). With a control file it also returns the ControlWatcher that keeps
// applying it, to run beside the controllers; otherwise the watcher is nil. A control file
// that cannot be used stops the start with what is wrong in it, as a *ControlError.
func Open(c Config) (Backend, *ControlWatcher, error) {
	if c.Fake == "" {
		return NewNVML(nvml.New()), nil, nil
	}
	s, err := fakegpu.NewForNode(c.Fake, c.Node)
	if err != nil {
		return nil, nil, err
	}
	if c.Control == "" {
		return NewNVML(s), nil, nil
	}
	if err := s.ApplyFile(c.Control); err != nil {
		return nil, nil, &ControlError{Err: err}
	}
	return NewNVML(s), &ControlWatcher{fake: s, path: c.Control, interval: ControlPoll}, nil
}

// ControlPoll is how often a ControlWatcher looks at the control file.
const ControlPoll = 200 * time.Millisecond

// ControlWatcher re-reads the simulated GPUs' control file until its context ends, on every
// replica: it is the simulated hardware, not a decision (a controller-runtime Runnable that
// needs no leader election). What it applies, and a file it cannot use, are logged through
// the context's logger (the process's, ctrl.Log, when the context carries none).
type ControlWatcher struct {
	fake     *fakegpu.Server
	path     string
	interval time.Duration
}

// NeedLeaderElection is false: every replica's simulated GPUs follow the file.
func (w *ControlWatcher) NeedLeaderElection() bool { return false }

// Start watches the file until ctx ends.
func (w *ControlWatcher) Start(ctx context.Context) error {
	log := ctrllog.FromContext(ctx).WithName("fake-gpus")
	w.fake.WatchControl(ctx, w.path, w.interval, func(err error) {
		if err != nil {
			log.Error(err, "The fake GPU control file cannot be used; the GPUs keep what they reported")
			return
		}
		log.Info("The fake GPU control file is applied again", "path", w.path)
	})
	return nil
}

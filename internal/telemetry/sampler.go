package telemetry

import (
	"context"
	"sync"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/gpuwarden/gpuwarden/internal/gpu"
)

// DefaultInterval is how often the GPUs are read for the metrics: as often as Prometheus
// usually scrapes.
const DefaultInterval = 15 * time.Second

// Snapshot is one reading of every GPU and MIG instance.
type Snapshot struct {
	// At is when the reading finished; zero before the first.
	At      time.Time
	Samples []gpu.Sample
	// Err is what the back end said, if it failed (ErrNoDriver on a host without GPUs).
	Err error
}

// Sampler reads the GPUs every Interval and keeps the latest reading. It runs on every
// replica: the metrics describe the hardware, not a decision.
type Sampler struct {
	GPUs     gpu.Backend
	Interval time.Duration
	Clock    clock.Clock

	mu      sync.Mutex
	last    Snapshot
	started time.Time // when the sampler started, for the age before a first reading
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (s *Sampler) NeedLeaderElection() bool { return false }

// Start reads the GPUs at once and then on a fixed grid until ctx ends. A call that hangs
// holds up only this loop.
func (s *Sampler) Start(ctx context.Context) error {
	s.mu.Lock()
	s.started = s.Clock.Now()
	s.mu.Unlock()
	next := s.Clock.Now()
	for {
		s.Round(ctx)
		for next = next.Add(s.Interval); !next.After(s.Clock.Now()); next = next.Add(s.Interval) {
		}
		t := s.Clock.NewTimer(next.Sub(s.Clock.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// Round takes one reading.
func (s *Sampler) Round(ctx context.Context) {
	samples, err := s.GPUs.Samples(ctx)
	if err != nil && ctx.Err() == nil {
		ctrl.Log.WithName("telemetry").V(1).Info("Reading the GPUs for the metrics", "error", err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = Snapshot{At: s.Clock.Now(), Samples: samples, Err: err}
}

// Latest is the last reading and its age (since the sampler started, before a first one).
func (s *Sampler) Latest() (Snapshot, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := s.last.At
	if from.IsZero() {
		from = s.started
	}
	if from.IsZero() {
		return s.last, 0
	}
	return s.last, s.Clock.Since(from)
}

package reclaim

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/proc"
	"github.com/gpuwarden/gpuwarden/internal/watchdog"
)

// DefaultSampleInterval is how often running GPU containers are sampled.
const DefaultSampleInterval = 60 * time.Second

// statsWorkers bounds the engine stats calls of one round in flight at once.
const statsWorkers = 16

// Sampler samples, every Interval, each running container that holds GPUs through a Bound
// allocation: its GPU utilisation (or, where NVML gives none, its GPU memory), and its CPU
// and network use as rates over the window since the last sample, from one-shot engine
// stats. It hands each sample to the Reclaimer. It samples nothing while the container
// store is not synced (Docker unreachable), so an outage never stops anything.
type Sampler struct {
	Client   client.Client
	Engine   docker.Engine
	GPUs     gpu.Backend // nil: the GPU signal is unknown
	Proc     proc.FS
	Store    *containerstore.Store
	NodeName string
	Clock    clock.Clock
	Interval time.Duration
	Reclaim  *Reclaimer
	// Audit receives the gpu.usage records; nil records nothing.
	Audit audit.Logger
	// Heartbeat beats at the start and after each round; optional.
	Heartbeat *watchdog.Heartbeat

	usage usageBook

	mu   sync.Mutex
	prev map[string]counters // by container ID
}

// counters are the cumulative numbers a rate is taken over.
type counters struct {
	at             time.Time
	cpuNanos, netB uint64
	gpuMemory      uint64
	hasGPUMemory   bool
	startedAt      time.Time
	cpuOK          bool
}

// NeedLeaderElection: only the active controller of a node acts on its containers.
func (s *Sampler) NeedLeaderElection() bool { return true }

// Start samples until ctx ends.
func (s *Sampler) Start(ctx context.Context) error {
	next := s.Clock.Now().Add(s.Interval)
	s.beat()
	for {
		t := s.Clock.NewTimer(max(0, next.Sub(s.Clock.Now())))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
		// On a fixed grid: a slow round does not push the later ones back.
		for next = next.Add(s.Interval); !next.After(s.Clock.Now()); next = next.Add(s.Interval) {
		}
		if err := s.Round(ctx); err != nil && ctx.Err() == nil {
			ctrl.LoggerFrom(ctx).WithName("sampler").Error(err, "Sampling containers")
		}
		s.beat() // a round that failed still finished: the sampler is not stuck
	}
}

func (s *Sampler) beat() {
	if s.Heartbeat != nil {
		s.Heartbeat.Beat()
	}
}

// held is a running container and the Bound allocation that gives it GPUs.
type held struct {
	c docker.Container
	a *gpuwardenv1alpha1.GPUAllocation
}

// Round samples every running container that holds GPUs once.
func (s *Sampler) Round(ctx context.Context) error {
	start := time.Now()
	defer func() { metrics.SampleRoundSeconds.Observe(time.Since(start).Seconds()) }()
	if !s.Store.Synced() {
		return nil
	}
	var allocs gpuwardenv1alpha1.GPUAllocationList
	if err := s.Client.List(ctx, &allocs); err != nil {
		return err
	}
	var list []held
	allocated := 0.0
	for i := range allocs.Items {
		a := &allocs.Items[i]
		if a.Status.Phase != gpuwardenv1alpha1.PhaseBound || a.Spec.NodeName != s.NodeName {
			continue
		}
		if a.Status.GPUEquivalents != nil {
			allocated += a.Status.GPUEquivalents.AsApproximateFloat64()
		}
		if a.Status.ContainerID == "" || a.Annotations[gpuwardenv1alpha1.AnnotationRelease] != "" {
			continue
		}
		if c, ok, _ := s.Store.Get(a.Status.ContainerID); ok && c.State == docker.StateRunning {
			list = append(list, held{c: c, a: a})
		}
	}
	demand := s.allocatedFraction(ctx, allocated)
	gpus := s.gpuSamples(ctx)
	now := s.Clock.Now()
	samples := make([]lifecycle.Sample, len(list))
	var g errgroup.Group
	g.SetLimit(statsWorkers)
	for i := range list {
		g.Go(func() error {
			samples[i] = s.sample(ctx, list[i], gpus, now)
			return nil
		})
	}
	_ = g.Wait()
	keep := map[string]bool{}
	for _, h := range list {
		keep[h.c.ID] = true
	}
	s.forgetExcept(keep)
	s.Reclaim.Forget(keep)
	lg := s.Audit
	if lg == nil {
		lg = audit.Discard
	}
	s.usage.forget(keep, lg)
	var policies gpuwardenv1alpha1.ContainerPolicyList
	if err := s.Client.List(ctx, &policies); err != nil {
		return err
	}
	var quotas gpuwardenv1alpha1.GPUQuotaList
	if err := s.Client.List(ctx, &quotas); err != nil {
		return err
	}
	s.Reclaim.SetExhausted(Exhausted(quotas.Items))
	states := map[lifecycle.Verdict]int{}
	for i, h := range list {
		v := s.Reclaim.Observe(ctx, h.c, h.a, samples[i], demand, policies.Items)
		states[v]++
		s.usage.add(h, samples[i], gpus, v, s.Interval, lg)
	}
	for _, v := range []lifecycle.Verdict{lifecycle.Active, lifecycle.Idle, lifecycle.NoVerdict, lifecycle.InGrace, lifecycle.Exempt} {
		metrics.ContainersByIdleState.WithLabelValues(string(v)).Set(float64(states[v]))
	}
	return nil
}

// allocatedFraction is the node's allocated share of its GPU capacity (whole GPUs).
func (s *Sampler) allocatedFraction(ctx context.Context, allocated float64) float64 {
	var list gpuwardenv1alpha1.GPUList
	if err := s.Client.List(ctx, &list, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: s.NodeName}); err != nil || len(list.Items) == 0 {
		return 0
	}
	return allocated / float64(len(list.Items))
}

func (s *Sampler) gpuSamples(ctx context.Context) map[string]gpu.Sample {
	out := map[string]gpu.Sample{}
	if s.GPUs == nil {
		return out
	}
	list, err := s.GPUs.Samples(ctx)
	if err != nil {
		ctrl.LoggerFrom(ctx).WithName("sampler").V(1).Info("Reading GPU samples; the GPU signal is unknown this round", "error", err.Error())
	}
	for _, x := range list {
		out[x.UUID] = x
	}
	return out
}

// sample is one container's sample: rates over the window since its previous one.
func (s *Sampler) sample(ctx context.Context, h held, gpus map[string]gpu.Sample, now time.Time) lifecycle.Sample {
	out := lifecycle.Sample{Time: now}
	var readable bool
	out.GPUKnown, readable, out.GPUPercent, out.GPUMemoryBytes = s.gpuSignal(h, gpus)
	// A device NVML could not read this round (lost, failing, NVML down) has no memory to
	// compare: the GPU signal is then neither idle nor active, never "unchanged".
	cur := counters{at: now, startedAt: h.c.StartedAt, gpuMemory: out.GPUMemoryBytes, hasGPUMemory: !out.GPUKnown && readable}
	st, err := s.Engine.Stats(ctx, h.c.ID)
	if err == nil {
		cur.cpuNanos, cur.netB, cur.cpuOK = st.CPUNanos, st.NetworkRxBytes+st.NetworkTxBytes, true
		if !st.Read.IsZero() {
			cur.at = st.Read
		}
	}
	s.mu.Lock()
	prev, ok := s.prev[h.c.ID]
	if s.prev == nil {
		s.prev = map[string]counters{}
	}
	s.prev[h.c.ID] = cur
	s.mu.Unlock()
	if !ok || !prev.startedAt.Equal(cur.startedAt) {
		return out // the first sample of this run: no window yet
	}
	if prev.hasGPUMemory && cur.hasGPUMemory {
		out.PrevGPUMemoryBytes, out.HasPrevGPUMemory = prev.gpuMemory, true
	}
	window := cur.at.Sub(prev.at).Seconds()
	if !cur.cpuOK || !prev.cpuOK || window <= 0 || cur.cpuNanos < prev.cpuNanos || cur.netB < prev.netB {
		return out // counters reset or unreadable: no rate this time
	}
	out.HasRates = true
	out.CPUPercent = float64(cur.cpuNanos-prev.cpuNanos) / 1e9 / window * 100
	out.NetworkBytesPerSecond = float64(cur.netB-prev.netB) / window
	return out
}

// gpuSignal is the container's GPU utilisation over the devices it holds (the busiest
// one), or unknown with their memory use where NVML gives no utilisation (MIG instances).
// On a GPU that processes of others use too, the container's own per-process utilisation
// counts, where NVML has it. readable is false when some device has no sample this round.
func (s *Sampler) gpuSignal(h held, gpus map[string]gpu.Sample) (known, readable bool, percent float64, memory uint64) {
	known, readable = len(h.a.Status.Devices) > 0, true
	for _, d := range h.a.Status.Devices {
		x, ok := gpus[d.UUID]
		readable = readable && ok
		memory += x.MemoryUsedBytes
		if !ok || !x.UtilizationKnown {
			known = false
			continue
		}
		util := float64(x.UtilizationPercent)
		if own, shared := s.ownShare(h.c.ID, x.Processes); shared {
			util = own
		}
		percent = max(percent, util)
	}
	return known, readable, percent, memory
}

// ownShare sums the per-process utilisation of the container's processes; shared is true
// when processes of others have samples on the GPU too. A process whose container cannot
// be read (gone since NVML sampled it, /proc unreadable) counts as the container's: a
// failed read may make the container look busier, never idler.
func (s *Sampler) ownShare(id string, procs []gpu.ProcessUtilization) (own float64, shared bool) {
	for _, p := range procs {
		info, err := s.Proc.Read(p.PID)
		if err != nil || info.ContainerID == id {
			own += float64(p.SMPercent)
			continue
		}
		shared = true
	}
	return own, shared
}

// forgetExcept drops the counters of containers no longer sampled.
func (s *Sampler) forgetExcept(keep map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.prev {
		if !keep[id] {
			delete(s.prev, id)
		}
	}
}

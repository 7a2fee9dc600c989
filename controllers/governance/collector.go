// Package governance renders, at scrape time, gpuwarden's view of who holds what on the
// node as Prometheus metrics; it reads only caches and memory, never NVML or Docker.
package governance

import (
	"context"
	"math"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/telemetry"
	"github.com/gpuwarden/gpuwarden/internal/version"
)

// scrapeListTimeout bounds a scrape's wait for the manager's caches, which only block
// before they first sync.
const scrapeListTimeout = time.Second

var (
	slotDesc = prometheus.NewDesc("gpuwarden_gpu_allocated",
		"1 for each GPU or MIG slot bound to an allocation, with who holds it.",
		[]string{"gpu", "UUID", "GPU_I_PROFILE", "GPU_I_ID", "user", "container", "allocation"}, nil)
	phaseDesc = prometheus.NewDesc("gpuwarden_allocations",
		"GPUAllocations of this node by phase (Pending, Bound, Released, Rejected).", []string{"phase"}, nil)
	userUsedDesc = prometheus.NewDesc("gpuwarden_user_gpu_equivalents",
		"GPU-equivalents a user's Bound allocations hold on this node.", []string{"user"}, nil)
	userQuotaDesc = prometheus.NewDesc("gpuwarden_user_gpu_equivalents_quota",
		"A user's effective gpu-equivalent quota (+Inf when unlimited), for users who hold or wait for GPUs.", []string{"user"}, nil)
	queueLengthDesc = prometheus.NewDesc("gpuwarden_allocation_queue_length",
		"GPUAllocations of this node waiting (Pending).", nil, nil)
	queueOldestDesc = prometheus.NewDesc("gpuwarden_allocation_queue_oldest_wait_seconds",
		"How long the oldest Pending GPUAllocation of this node has waited; 0 when none waits.", nil, nil)
	capacityDesc = prometheus.NewDesc("gpuwarden_gpu_equivalents_capacity",
		"GPU-equivalents of this node's healthy GPUs (one per GPU).", nil, nil)
	allocatedDesc = prometheus.NewDesc("gpuwarden_gpu_equivalents_allocated",
		"GPU-equivalents bound on this node.", nil, nil)
	healthDesc = prometheus.NewDesc("gpuwarden_gpu_health",
		"1 for each GPU of this node, labelled with its health (Healthy, Unhealthy, Lost, Unknown) and why.",
		[]string{"gpu", "UUID", "health", "message"}, nil)
	containerUtilDesc = prometheus.NewDesc("gpuwarden_container_gpu_utilization_percent",
		"GPU utilisation of a running GPU container at its last sample, where NVML gives one (not on MIG).",
		[]string{"user", "container", "allocation"}, nil)
	containerIdleDesc = prometheus.NewDesc("gpuwarden_container_idle_seconds",
		"How long a running GPU container has been idle by its policy's rules at its last sample (0 while active).",
		[]string{"user", "container", "allocation", "state"}, nil)
	buildInfoDesc = prometheus.NewDesc("gpuwarden_build_info",
		"1, labelled with the running gpuwarden's version and Go version.", []string{"version", "goversion"}, nil)
)

// Samples tell a running container's last sample, its idle state by its policy's rules
// (lifecycle.Exempt when no idle rule can stop it) and how long it has been idle.
type Samples interface {
	Latest(containerID string) (last lifecycle.Sample, state lifecycle.Verdict, idleFor time.Duration, ok bool)
}

// Collector renders, at scrape time and from the manager's caches only, who holds what on
// the node: bound slots, allocations by phase, use against quota, the queue, GPU health and
// each running GPU container's utilisation and idle state.
type Collector struct {
	Client   client.Reader
	NodeName string
	Clock    clock.PassiveClock
	Quotas   *allocation.QuotaBook
	// Store and Reclaim are nil without Docker.
	Store *containerstore.Store
	// Samples are the running containers' last samples; none are shown when nil.
	Samples Samples
}

// Describe implements prometheus.Collector.
func (g *Collector) Describe(chan<- *prometheus.Desc) {}

// allocations are the node's allocations from the cache, not copied: read only.
func (g *Collector) allocations() []gpuwardenv1alpha1.GPUAllocation {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeListTimeout)
	defer cancel()
	var list gpuwardenv1alpha1.GPUAllocationList
	if err := g.Client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	out := list.Items[:0]
	for _, a := range list.Items {
		if a.Spec.NodeName == g.NodeName {
			out = append(out, a)
		}
	}
	return out
}

// containerName is what a container is called in the metrics.
func (g *Collector) containerName(a *gpuwardenv1alpha1.GPUAllocation) string {
	id := a.Status.ContainerID
	if id == "" {
		id = a.Spec.ContainerID
	}
	if g.Store != nil && id != "" {
		if c, ok, _ := g.Store.Get(id); ok && c.Name != "" {
			return c.Name
		}
	}
	if a.Spec.ContainerName != "" {
		return a.Spec.ContainerName
	}
	return docker.ShortID(id)
}

// Holders gives the holder of every bound device, by UUID (telemetry's attribution).
func (g *Collector) Holders() map[string]telemetry.Holder {
	out := map[string]telemetry.Holder{}
	for _, a := range g.allocations() {
		if a.Status.Phase != gpuwardenv1alpha1.PhaseBound {
			continue
		}
		h := telemetry.Holder{User: a.Spec.User, Container: g.containerName(&a), Allocation: a.Name}
		for _, d := range a.Status.Devices {
			out[d.UUID] = h
		}
	}
	return out
}

// Collect implements prometheus.Collector.
func (g *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(buildInfoDesc, prometheus.GaugeValue, 1, version.Version, runtime.Version())
	allocs := g.allocations()
	gpus := g.gpus()
	now := g.Clock.Now()
	phases := map[gpuwardenv1alpha1.AllocationPhase]int{
		gpuwardenv1alpha1.PhasePending: 0, gpuwardenv1alpha1.PhaseBound: 0, gpuwardenv1alpha1.PhaseReleased: 0, gpuwardenv1alpha1.PhaseRejected: 0,
	}
	used := map[string]float64{}
	waiting, oldest, allocated := 0, time.Duration(0), 0.0
	for i := range allocs {
		a := &allocs[i]
		phase := a.Status.Phase
		if phase == "" {
			phase = gpuwardenv1alpha1.PhasePending
		}
		phases[phase]++
		switch phase {
		case gpuwardenv1alpha1.PhasePending:
			waiting++
			oldest = max(oldest, now.Sub(a.CreationTimestamp.Time))
		case gpuwardenv1alpha1.PhaseBound:
			eq := 0.0
			if a.Status.GPUEquivalents != nil {
				eq = a.Status.GPUEquivalents.AsApproximateFloat64()
			}
			used[a.Spec.User] += eq
			allocated += eq
			g.collectSlots(ch, a, gpus)
		}
	}
	for phase, n := range phases {
		ch <- prometheus.MustNewConstMetric(phaseDesc, prometheus.GaugeValue, float64(n), string(phase))
	}
	for user, eq := range used {
		ch <- prometheus.MustNewConstMetric(userUsedDesc, prometheus.GaugeValue, eq, user)
	}
	if g.Quotas != nil {
		for user, l := range g.Quotas.Get() {
			v := l.Value
			if l.Unlimited {
				v = math.Inf(1)
			}
			ch <- prometheus.MustNewConstMetric(userQuotaDesc, prometheus.GaugeValue, v, user)
		}
	}
	ch <- prometheus.MustNewConstMetric(queueLengthDesc, prometheus.GaugeValue, float64(waiting))
	ch <- prometheus.MustNewConstMetric(queueOldestDesc, prometheus.GaugeValue, oldest.Seconds())
	capacity := 0
	for _, gp := range gpus {
		if gp.Status.Health == gpuwardenv1alpha1.HealthHealthy {
			capacity++
		}
		ch <- prometheus.MustNewConstMetric(healthDesc, prometheus.GaugeValue, 1,
			strconv.Itoa(int(gp.Spec.Index)), gp.Status.UUID, string(gp.Status.Health), gp.Status.HealthMessage)
	}
	ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, float64(capacity))
	ch <- prometheus.MustNewConstMetric(allocatedDesc, prometheus.GaugeValue, allocated)
	g.collectContainers(ch, allocs)
}

// gpus are the node's GPU objects by UUID.
func (g *Collector) gpus() map[string]*gpuwardenv1alpha1.GPU {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeListTimeout)
	defer cancel()
	var list gpuwardenv1alpha1.GPUList
	if err := g.Client.List(ctx, &list, client.UnsafeDisableDeepCopy, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: g.NodeName}); err != nil {
		return nil
	}
	out := make(map[string]*gpuwardenv1alpha1.GPU, len(list.Items))
	for i := range list.Items {
		out[list.Items[i].Status.UUID] = &list.Items[i]
	}
	return out
}

// collectSlots sends one series per device a Bound allocation holds.
func (g *Collector) collectSlots(ch chan<- prometheus.Metric, a *gpuwardenv1alpha1.GPUAllocation, gpus map[string]*gpuwardenv1alpha1.GPU) {
	container := g.containerName(a)
	for _, d := range a.Status.Devices {
		gi := ""
		if d.MIGProfile != "" {
			for _, gp := range gpus {
				for _, m := range gp.Status.MIGInstances {
					if m.UUID == d.UUID {
						gi = strconv.Itoa(int(m.GPUInstanceID))
					}
				}
			}
		}
		ch <- prometheus.MustNewConstMetric(slotDesc, prometheus.GaugeValue, 1,
			strconv.Itoa(int(d.Index)), d.UUID, d.MIGProfile, gi, a.Spec.User, container, a.Name)
	}
}

// collectContainers sends each running GPU container's last sample.
func (g *Collector) collectContainers(ch chan<- prometheus.Metric, allocs []gpuwardenv1alpha1.GPUAllocation) {
	if g.Samples == nil {
		return
	}
	for i := range allocs {
		a := &allocs[i]
		if a.Status.Phase != gpuwardenv1alpha1.PhaseBound || a.Status.ContainerID == "" {
			continue
		}
		last, state, idleFor, ok := g.Samples.Latest(a.Status.ContainerID)
		if !ok {
			continue
		}
		labels := []string{a.Spec.User, g.containerName(a), a.Name}
		if last.GPUKnown {
			ch <- prometheus.MustNewConstMetric(containerUtilDesc, prometheus.GaugeValue, last.GPUPercent, labels...)
		}
		ch <- prometheus.MustNewConstMetric(containerIdleDesc, prometheus.GaugeValue, idleFor.Seconds(), append(labels, string(state))...)
	}
}

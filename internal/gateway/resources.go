package gateway

import (
	"context"
	"fmt"
	"runtime"
	"strings"

	"github.com/moby/moby/api/types/container"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

func owner(lbl map[string]string) string {
	o, _ := labels.Owner(lbl)
	return o
}

// Policies tell the effective ContainerPolicy of a container, by its owner and labels.
type Policies interface {
	Effective(ctx context.Context, owner string, labels map[string]string) (resolve.Policy, error)
}

// The gateway's own defaults, where no policy sets spec.resources: a /dev/shm large enough
// for data loaders (Docker's 64 MiB breaks PyTorch's workers) and a bound on processes (a
// fork bomb stays in its container).
const (
	DefaultShmSize   = 1 << 30
	DefaultPidsLimit = 8192
)

// limits are a container's resource defaults and maxima, with the policies that set them.
type limits struct {
	cpus, memory, shm, pids setting
	maxCPUs, maxMemory      setting
}

// setting is one resource value (CPUs in nano-CPUs, bytes, or a count) and where it came from.
type setting struct {
	value int64
	from  string
	set   bool
}

// limitsOf reads spec.resources of the effective policy; with no Policies, only the
// gateway's defaults.
func (s *Server) limitsOf(ctx context.Context, owner string, labels map[string]string) (limits, error) {
	l := limits{
		shm:  setting{value: DefaultShmSize, from: "the gateway's default", set: true},
		pids: setting{value: DefaultPidsLimit, from: "the gateway's default", set: true},
	}
	if s.Policies == nil {
		return l, nil
	}
	p, err := s.Policies.Effective(ctx, owner, labels)
	if err != nil {
		return l, fmt.Errorf("reading the container policies: %w", err)
	}
	quantity := func(path string, scale func(resource.Quantity) int64, into *setting) {
		if q, from, ok := p.Quantity(path); ok {
			*into = setting{value: scale(q), from: from, set: true}
		}
	}
	nano := func(q resource.Quantity) int64 { return q.MilliValue() * 1e6 }
	bytes := func(q resource.Quantity) int64 { return q.Value() }
	quantity("resources.cpus", nano, &l.cpus)
	quantity("resources.maxCPUs", nano, &l.maxCPUs)
	quantity("resources.memory", bytes, &l.memory)
	quantity("resources.maxMemory", bytes, &l.maxMemory)
	quantity("resources.shmSize", bytes, &l.shm)
	if n, from, ok := p.Int("resources.pidsLimit"); ok {
		l.pids = setting{value: n, from: from, set: true}
	}
	return l, nil
}

// applyResources refuses a create asking for more CPUs or memory than its policy allows
// (admins excepted), and fills in the limits it sets none of.
func (s *Server) applyResources(ctx context.Context, c Caller, lbl map[string]string, hc *container.HostConfig) error {
	l, err := s.limitsOf(ctx, owner(lbl), lbl)
	if err != nil {
		return err
	}
	if !c.Admin {
		if err := l.check(hc.Resources); err != nil {
			return err
		}
	}
	if requestedCPUs(hc.Resources) == 0 && hc.CpusetCpus == "" {
		if v, ok := first(l.cpus, l.maxCPUs); ok {
			// A default written for a bigger machine is this machine's whole.
			hc.NanoCPUs = min(v.value, int64(runtime.NumCPU())*1e9)
		}
	}
	if hc.Memory == 0 {
		if v, ok := first(l.memory, l.maxMemory); ok {
			hc.Memory = v.value
		}
	}
	if hc.ShmSize == 0 && hc.IpcMode != "shareable" && !strings.HasPrefix(string(hc.IpcMode), "container:") {
		hc.ShmSize = l.shm.value
	}
	if hc.PidsLimit == nil || *hc.PidsLimit <= 0 { // 0 and -1 mean unlimited to the engine
		n := l.pids.value
		hc.PidsLimit = &n
	}
	return nil
}

// check refuses resources over the policy's maxima.
func (l limits) check(r container.Resources) error {
	if cpus := requestedCPUs(r); l.maxCPUs.set && cpus > l.maxCPUs.value {
		return refused("%s CPUs are over the most a container may have, %s, set by %s (spec.resources.maxCPUs)",
			formatCPUs(cpus), formatCPUs(l.maxCPUs.value), l.maxCPUs.from)
	}
	if l.maxMemory.set && r.Memory > l.maxMemory.value {
		return refused("memory %s is over the most a container may have, %s, set by %s (spec.resources.maxMemory)",
			formatBytes(r.Memory), formatBytes(l.maxMemory.value), l.maxMemory.from)
	}
	if r.PidsLimit != nil && *r.PidsLimit > l.pids.value {
		return refused("a limit of %d processes is over the most a container may have, %d, set by %s (spec.resources.pidsLimit)",
			*r.PidsLimit, l.pids.value, l.pids.from)
	}
	return nil
}

// checkUpdate refuses an update that would take a container over its policy's maxima.
func (s *Server) checkUpdate(ctx context.Context, lbl map[string]string, r container.Resources) error {
	l, err := s.limitsOf(ctx, owner(lbl), lbl)
	if err != nil {
		return err
	}
	return l.check(r)
}

// requestedCPUs is what a create or update asks for, in nano-CPUs: --cpus, or
// --cpu-quota over --cpu-period; 0 when neither.
func requestedCPUs(r container.Resources) int64 {
	if r.NanoCPUs > 0 {
		return r.NanoCPUs
	}
	if r.CPUQuota > 0 {
		period := r.CPUPeriod
		if period <= 0 {
			period = 100000 // the kernel's and the engine's default, in µs
		}
		return r.CPUQuota * 1e9 / period
	}
	return 0
}

func first(settings ...setting) (setting, bool) {
	for _, s := range settings {
		if s.set {
			return s, true
		}
	}
	return setting{}, false
}

func formatCPUs(nano int64) string {
	return resource.NewMilliQuantity(nano/1e6, resource.DecimalSI).String()
}

func formatBytes(b int64) string {
	return resource.NewQuantity(b, resource.BinarySI).String()
}

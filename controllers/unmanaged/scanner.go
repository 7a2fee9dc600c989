package unmanaged

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/detect"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/manager"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/proc"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
)

// DefaultScanInterval is how often GPU processes are checked.
const DefaultScanInterval = 30 * time.Second

// Scanner finds GPU processes (from NVML) that belong to no allocation: not in a
// container whose Bound allocation holds the device, nor a host process of the user of a
// Bound allocation without a container that holds it. Each is mapped through
// /proc/PID/cgroup to a container or to a host user; seen in two scans in a row it becomes
// a detection.unmanaged_container or detection.unmanaged_process record, an Event on the GPU
// and a metric, and a *_exited record when it ends. Driver daemons are ignored, and a
// process seen once (a short probe like nvidia-smi) is never reported.
type Scanner struct {
	Client client.Client
	GPUs   gpu.Backend
	Proc   proc.FS
	// Owners says who owns a container (shared with the container controllers).
	Owners   *containerstore.Owners
	Store    *containerstore.Store
	NodeName string
	Recorder recorder.EventRecorder
	Audit    audit.Logger
	Interval time.Duration

	sightings detect.Tracker[useKey, finding]
}

type useKey struct {
	pid    int
	device string
}

type finding struct {
	kind audit.DetectionKind
	user string
	u    audit.Unmanaged
}

// NeedLeaderElection: only the node's active controller reports.
func (s *Scanner) NeedLeaderElection() bool { return true }

// Start scans every Interval until ctx ends.
func (s *Scanner) Start(ctx context.Context) error {
	if s.Owners == nil {
		s.Owners = &containerstore.Owners{Proc: s.Proc}
	}
	if s.Interval <= 0 {
		s.Interval = DefaultScanInterval
	}
	return manager.Every(ctx, s.Interval, s.Scan, "Scanning GPU processes")
}

// Scan checks the GPU processes once: it indexes what the Bound allocations hold,
// classifies each GPU process against it, reports what started and ended since the last
// scan, and sets the metrics.
func (s *Scanner) Scan(ctx context.Context) error {
	procs, err := s.GPUs.Processes(ctx)
	if errors.Is(err, gpu.ErrNoDriver) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing GPU processes: %w", err)
	}
	var held holdings
	if len(procs) > 0 { // an idle node needs no look at the allocations
		if held, err = s.holdings(ctx); err != nil {
			return err
		}
	}
	started, ended := s.sightings.Observe(s.classify(procs, held))
	s.report(ctx, started, ended)
	s.setMetrics()
	return nil
}

// holdings are the devices the node's Bound allocations hold: by container ID for those
// attached to a container, by user for those without one.
type holdings struct {
	byContainer, byUser map[string]map[string]bool
}

func (s *Scanner) holdings(ctx context.Context) (holdings, error) {
	var allocs gpuwardenv1alpha1.GPUAllocationList
	if err := s.Client.List(ctx, &allocs); err != nil {
		return holdings{}, fmt.Errorf("listing allocations: %w", err)
	}
	h := holdings{byContainer: map[string]map[string]bool{}, byUser: map[string]map[string]bool{}}
	for _, a := range allocs.Items {
		if a.Spec.NodeName != s.NodeName || a.Status.Phase != gpuwardenv1alpha1.PhaseBound {
			continue
		}
		holder, key := h.byContainer, a.Status.ContainerID
		if key == "" {
			holder, key = h.byUser, a.Spec.User
		}
		if holder[key] == nil {
			holder[key] = map[string]bool{}
		}
		for _, d := range a.Status.Devices {
			holder[key][d.UUID] = true
		}
	}
	return h, nil
}

// classify returns the GPU processes that belong to no allocation, by process and device.
func (s *Scanner) classify(procs []gpu.Process, held holdings) map[useKey]finding {
	seen := map[useKey]finding{}
	for _, gp := range procs {
		p, err := s.Proc.Read(gp.PID)
		if err != nil || proc.IsDriverDaemon(p.Command) {
			continue // ended since NVML listed it, or the driver's own
		}
		f := finding{u: audit.Unmanaged{PID: p.PID, Command: p.CmdLine, GPU: gp.DeviceUUID, MemoryMiB: int64(gp.UsedMemoryBytes >> 20)}}
		if p.ContainerID != "" {
			if held.byContainer[p.ContainerID][gp.DeviceUUID] {
				continue
			}
			f.kind = audit.UnmanagedContainer
			f.u.Container = audit.Container{ID: p.ContainerID}
			if c, ok, _ := s.Store.Get(p.ContainerID); ok {
				f.u.Container = containerstore.AuditRef(c)
				f.user = s.Owners.Of(c)
			}
			f.user = containerstore.OwnerOrUnknown(f.user)
		} else {
			if held.byUser[p.User][gp.DeviceUUID] {
				continue
			}
			f.kind, f.user = audit.UnmanagedProcess, p.User
		}
		seen[useKey{pid: gp.PID, device: gp.DeviceUUID}] = f
	}
	return seen
}

// report records each use that started (seen in two scans in a row) or ended, with an
// Event on the GPU.
func (s *Scanner) report(ctx context.Context, started, ended map[useKey]finding) {
	// The GPU objects are read only when there is something to say on one.
	var gpus map[string]*gpuwardenv1alpha1.GPU
	gpuOf := func(device string) *gpuwardenv1alpha1.GPU {
		if gpus == nil {
			gpus = s.gpuObjects(ctx)
		}
		return gpus[device]
	}
	for k, f := range started {
		metrics.UnmanagedDetections.WithLabelValues(kindLabel(f.kind)).Inc()
		s.Audit.Log(audit.Detection(f.kind, f.user, f.u))
		s.event(gpuOf(k.device), corev1.EventTypeWarning, reasons.EventUnmanagedGPUUse, "%s", describe(f, "uses"))
	}
	for k, f := range ended {
		kind := audit.UnmanagedProcessExited
		if f.kind == audit.UnmanagedContainer {
			kind = audit.UnmanagedContainerExited
		}
		s.Audit.Log(audit.Detection(kind, f.user, f.u))
		s.event(gpuOf(k.device), corev1.EventTypeNormal, reasons.EventUnmanagedGPUUseEnded, "%s", describe(f, "no longer uses"))
	}
}

// setMetrics sets the gauges of the uses confirmed now.
func (s *Scanner) setMetrics() {
	counts := map[string]float64{"container": 0, "host": 0}
	metrics.UnmanagedByHolder.Reset()
	for _, f := range s.sightings.Confirmed() {
		counts[kindLabel(f.kind)]++
		metrics.UnmanagedByHolder.WithLabelValues(kindLabel(f.kind), f.user, f.u.Container.Name, f.u.GPU).Inc()
	}
	for k, n := range counts {
		metrics.UnmanagedProcesses.WithLabelValues(k).Set(n)
	}
}

func kindLabel(k audit.DetectionKind) string {
	if k == audit.UnmanagedContainer || k == audit.UnmanagedContainerExited {
		return "container"
	}
	return "host"
}

func describe(f finding, verb string) string {
	who := fmt.Sprintf("host process %d (%s) of %s", f.u.PID, f.u.Command, f.user)
	if f.kind == audit.UnmanagedContainer {
		name := f.u.Container.Name
		if name == "" {
			name = docker.ShortID(f.u.Container.ID)
		}
		who = fmt.Sprintf("process %d (%s) in container %s of %s", f.u.PID, f.u.Command, name, f.user)
	}
	return fmt.Sprintf("%s %s GPU %s without an allocation", who, verb, f.u.GPU)
}

// gpuObjects returns the node's GPUs by the UUIDs of the GPU and of its MIG instances.
func (s *Scanner) gpuObjects(ctx context.Context) map[string]*gpuwardenv1alpha1.GPU {
	var list gpuwardenv1alpha1.GPUList
	out := map[string]*gpuwardenv1alpha1.GPU{}
	if err := s.Client.List(ctx, &list, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: s.NodeName}); err != nil {
		return out // the records still go out; only the Events lack a GPU to stand on
	}
	for i := range list.Items {
		g := &list.Items[i]
		out[g.Status.UUID] = g
		for _, in := range g.Status.MIGInstances {
			out[in.UUID] = g
		}
	}
	return out
}

func (s *Scanner) event(g *gpuwardenv1alpha1.GPU, eventType, reason, format string, args ...any) {
	if g != nil {
		s.Recorder.Eventf(g, nil, eventType, reason, "Detect", format, args...)
	}
}

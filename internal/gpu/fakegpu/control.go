package fakegpu

// The control file of --fake-gpus-control (README.md, "Simulated GPUs driven from outside"): what the simulated GPUs
// report, driven from outside the process.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"sigs.k8s.io/yaml"
)

// Control is the content of a control file. Every key is optional; what it does not name
// keeps the profile's defaults (utilisation 0, 35 °C, 70 W, nothing lost, no processes).
type Control struct {
	// Devices are keyed by GPU index ("3"), MIG instance ("4:0": GPU 4, its first instance)
	// or UUID (of a GPU or a MIG instance).
	Devices map[string]DeviceControl `json:"devices,omitempty"`
	// Processes are what NVML lists as running on each device.
	Processes []ProcessControl `json:"processes,omitempty"`
}

// DeviceControl is what one GPU or MIG instance reports. MIG instances take only
// memoryUsedMiB: NVML reports no utilisation, temperature or power for them.
type DeviceControl struct {
	Utilization       *uint32 `json:"utilization,omitempty"`
	MemoryUtilization *uint32 `json:"memoryUtilization,omitempty"`
	MemoryUsedMiB     *uint64 `json:"memoryUsedMiB,omitempty"`
	Temperature       *uint32 `json:"temperature,omitempty"`
	Power             *uint32 `json:"power,omitempty"` // watts
	Lost              bool    `json:"lost,omitempty"`
	// XID is reported once each time its value changes to a non-zero one.
	XID uint64 `json:"xid,omitempty"`
}

// ProcessControl is one process on a device.
type ProcessControl struct {
	Device        string `json:"device"`
	PID           int    `json:"pid"`
	UsedMemoryMiB uint64 `json:"usedMemoryMiB,omitempty"`
	// Utilization is the process's own SM utilisation (NVML's per-process samples);
	// unset, NVML has no sample for it.
	Utilization *uint32 `json:"utilization,omitempty"`
}

// ParseControl reads a control file's content (YAML or JSON). Unknown keys, out-of-range
// values and malformed device names are errors that name the key.
func ParseControl(data []byte) (Control, error) {
	var c Control
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return Control{}, err
	}
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(c.Devices)) {
		d := c.Devices[key]
		if key == "" {
			errs = append(errs, errors.New(`devices: an empty device name; use an index ("3"), a MIG instance ("4:0") or a UUID`))
		}
		percent := func(field string, v *uint32) {
			if v != nil && *v > 100 {
				errs = append(errs, fmt.Errorf("devices[%q].%s: %d is not a percentage (0–100)", key, field, *v))
			}
		}
		percent("utilization", d.Utilization)
		percent("memoryUtilization", d.MemoryUtilization)
		if d.Temperature != nil && *d.Temperature > 200 {
			errs = append(errs, fmt.Errorf("devices[%q].temperature: %d °C is beyond any GPU's sensor (0–200)", key, *d.Temperature))
		}
		if d.Power != nil && *d.Power > 5000 {
			errs = append(errs, fmt.Errorf("devices[%q].power: %d W is beyond any GPU (0–5000)", key, *d.Power))
		}
	}
	for i, p := range c.Processes {
		if p.Device == "" {
			errs = append(errs, fmt.Errorf("processes[%d].device: required", i))
		}
		if p.PID <= 0 {
			errs = append(errs, fmt.Errorf("processes[%d].pid: %d is not a process ID", i, p.PID))
		}
		if p.Utilization != nil && *p.Utilization > 100 {
			errs = append(errs, fmt.Errorf("processes[%d].utilization: %d is not a percentage (0–100)", i, *p.Utilization))
		}
	}
	return c, errors.Join(errs...)
}

// target is what a device name in a control file points at.
type target struct {
	gpu *gpu
	mig *migDevice // nil for a whole GPU
}

func (t target) uuid() string {
	if t.mig != nil {
		return t.mig.uuid
	}
	return t.gpu.UUID
}

// lookup resolves a device name; s.mu is held.
func (s *Server) lookup(name string) (target, error) {
	for _, g := range s.gpus {
		if g.UUID == name {
			return target{gpu: g}, nil
		}
		for _, m := range g.migs {
			if m.uuid == name {
				return target{gpu: g, mig: m}, nil
			}
		}
	}
	gi, mi, isMIG := strings.Cut(name, ":")
	i, err := strconv.Atoi(gi)
	if err != nil || i < 0 {
		return target{}, fmt.Errorf("device %q: not a GPU index, MIG instance (4:0) or UUID of this machine", name)
	}
	if i >= len(s.gpus) {
		return target{}, fmt.Errorf("device %q: there is no GPU %d (the machine has %d)", name, i, len(s.gpus))
	}
	g := s.gpus[i]
	if !isMIG {
		return target{gpu: g}, nil
	}
	j, err := strconv.Atoi(mi)
	if err != nil || j < 0 {
		return target{}, fmt.Errorf("device %q: %q is not a MIG instance number", name, mi)
	}
	if j >= len(g.migs) {
		return target{}, fmt.Errorf("device %q: GPU %d has %d MIG instances", name, i, len(g.migs))
	}
	return target{gpu: g, mig: g.migs[j]}, nil
}

// Apply makes the simulated GPUs report c, and every device c does not name the profile's
// defaults. A control that names what does not exist is refused whole, and nothing changes.
func (s *Server) Apply(c Control) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	devices := map[*gpu]DeviceControl{}
	migs := map[*migDevice]DeviceControl{}
	for _, name := range slices.Sorted(maps.Keys(c.Devices)) {
		d := c.Devices[name]
		t, err := s.lookup(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("devices: %w", err))
			continue
		}
		if t.mig != nil {
			if d.Utilization != nil || d.MemoryUtilization != nil || d.Temperature != nil || d.Power != nil || d.Lost || d.XID != 0 {
				errs = append(errs, fmt.Errorf("devices[%q]: a MIG instance takes only memoryUsedMiB (NVML reports its memory, nothing else); set the rest on GPU %d", name, t.gpu.Index))
			}
			migs[t.mig] = d
			continue
		}
		if len(t.gpu.migs) > 0 && (d.Utilization != nil || d.MemoryUtilization != nil) {
			errs = append(errs, fmt.Errorf("devices[%q]: GPU %d is partitioned into MIG instances, for which NVML reports no utilisation; set memoryUsedMiB on its instances (%q)", name, t.gpu.Index, fmt.Sprintf("%d:0", t.gpu.Index)))
		}
		devices[t.gpu] = d
	}
	procs := map[string][]Process{}
	for i, p := range c.Processes {
		t, err := s.lookup(p.Device)
		if err != nil {
			errs = append(errs, fmt.Errorf("processes[%d]: %w", i, err))
			continue
		}
		pr := Process{PID: p.PID, UsedMemoryBytes: p.UsedMemoryMiB << 20}
		if p.Utilization != nil {
			pr.Utilization, pr.HasUtilization = *p.Utilization, true
		}
		procs[t.uuid()] = append(procs[t.uuid()], pr)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, g := range s.gpus {
		d := devices[g]
		g.util = nvml.Utilization{Gpu: deref(d.Utilization, 0), Memory: deref(d.MemoryUtilization, 0)}
		g.tempC = deref(d.Temperature, 35)
		s.drawEnergy(g) // what was drawn so far, at the power reported until now
		g.powerMW = deref(d.Power, 70) * 1000
		g.memUsed = deref(d.MemoryUsedMiB, 0) << 20
		g.lost = d.Lost
		if d.XID != 0 && d.XID != g.lastXID {
			s.xids = append(s.xids, nvml.EventData{Device: g, EventType: nvml.EventTypeXidCriticalError, EventData: d.XID})
		}
		g.lastXID = d.XID
		for _, m := range g.migs {
			m.memUsed = deref(migs[m].MemoryUsedMiB, 0) << 20
		}
	}
	s.procs = procs
	return nil
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// ApplyFile reads path and applies it. A missing file is an empty one (every default).
func (s *Server) ApplyFile(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		data, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("reading the fake GPU control file: %w", err)
	}
	c, err := ParseControl(data)
	if err == nil {
		err = s.Apply(c)
	}
	if err != nil {
		return fmt.Errorf("fake GPU control file %s: %w", path, err)
	}
	return nil
}

// WatchControl re-applies path whenever its content changes, looking every interval until
// ctx ends. A file that cannot be used is reported to onError (nil once a good one is
// applied again) and the GPUs keep what they reported before.
func (s *Server) WatchControl(ctx context.Context, path string, interval time.Duration, onError func(error)) {
	var (
		last    []byte
		seen    bool
		lastErr string
	)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			data, err = []byte{}, nil
		}
		switch {
		case err != nil:
			seen = false // applied again once it can be read
			err = fmt.Errorf("reading the fake GPU control file: %w", err)
		case seen && bytes.Equal(data, last):
			err = nil
			if lastErr != "" {
				err = errors.New(lastErr) // unchanged: still the same problem
			}
		default:
			last, seen = data, true
			var c Control
			if c, err = ParseControl(data); err == nil {
				err = s.Apply(c)
			}
			if err != nil {
				err = fmt.Errorf("fake GPU control file %s: %w", path, err)
			}
		}
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != lastErr {
			lastErr = msg
			onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

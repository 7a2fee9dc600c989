package overview

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

var now = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC) // a Monday

func gpu(node string, index int32, uuid string, mig ...gpuwardenv1alpha1.MIGInstance) gpuwardenv1alpha1.GPU {
	g := gpuwardenv1alpha1.GPU{ObjectMeta: metav1.ObjectMeta{Name: node + "-gpu" + string(rune('0'+index))},
		Spec:   gpuwardenv1alpha1.GPUSpec{NodeName: node, Index: index},
		Status: gpuwardenv1alpha1.GPUStatus{UUID: uuid, Model: "NVIDIA H100 80GB HBM3", Memory: resource.NewQuantity(80<<30, resource.BinarySI), Health: "Healthy"}}
	if len(mig) > 0 {
		g.Status.MIGMode = gpuwardenv1alpha1.MIGEnabled
		g.Status.MIGInstances = mig
	}
	return g
}

func micro(t time.Time) *metav1.MicroTime { m := metav1.NewMicroTime(t); return &m }
func at(t time.Time) *metav1.Time         { m := metav1.NewTime(t); return &m }

func bound(name, user, node string, eq string, devices ...string) gpuwardenv1alpha1.GPUAllocation {
	a := gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: gpuwardenv1alpha1.GPUAllocationSpec{User: user, NodeName: node, ContainerType: gpuwardenv1alpha1.ContainerTypeNotebook}}
	q := resource.MustParse(eq)
	a.Status = gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhaseBound, ContainerName: name + "-c", GPUEquivalents: &q,
		BoundTime: at(now.Add(-2 * time.Hour))}
	for _, d := range devices {
		a.Status.Devices = append(a.Status.Devices, gpuwardenv1alpha1.BoundDevice{UUID: d})
	}
	return a
}

func input() Input {
	idle := bound("a-idle", "alice", "n1", "1", "GPU-0")
	idle.Status.Idle = &gpuwardenv1alpha1.IdleStatus{Since: micro(now.Add(-30 * time.Minute)), Samples: 3}
	idle.Status.Runtime = &gpuwardenv1alpha1.RuntimeStatus{Since: at(now.Add(-2 * time.Hour))}
	borrowed := bound("b-borrow", "bob", "n1", "1", "GPU-1")
	borrowed.Status.Borrowed = true
	slice := bound("b-slice", "bob", "n1", "0.142857", "MIG-a")
	other := bound("c-other", "carol", "n2", "1", "GPU-9")
	pending := func(name, user string, pos int32) gpuwardenv1alpha1.GPUAllocation {
		two := int32(2)
		return gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(now.Add(-time.Duration(pos) * time.Minute))},
			Spec: gpuwardenv1alpha1.GPUAllocationSpec{User: user, NodeName: "n1", Request: gpuwardenv1alpha1.AllocationRequest{GPUs: &two}},
			Status: gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhasePending,
				Queue: &gpuwardenv1alpha1.QueueStatus{Position: pos, EstimatedStart: at(now.Add(time.Hour)), BlockedBy: "a-idle"}}}
	}
	unplaced := gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: "z-unplaced"}, Spec: gpuwardenv1alpha1.GPUAllocationSpec{User: "dave"},
		Status: gpuwardenv1alpha1.GPUAllocationStatus{Phase: gpuwardenv1alpha1.PhasePending}}

	timeout, maxRuntime := gpuwardenv1alpha1.Duration("1h"), gpuwardenv1alpha1.Duration("8h")
	policy := gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "notebooks"},
		Spec: gpuwardenv1alpha1.ContainerPolicySpec{Selector: gpuwardenv1alpha1.PolicySelector{ContainerTypes: []gpuwardenv1alpha1.ContainerType{gpuwardenv1alpha1.ContainerTypeNotebook}},
			Idle: &gpuwardenv1alpha1.IdlePolicy{Timeout: &timeout, WarnAtFractions: []gpuwardenv1alpha1.Fraction{"0.5", "0.9"}}, MaxRuntime: &maxRuntime}}

	four := resource.MustParse("4")
	quota := gpuwardenv1alpha1.GPUQuota{ObjectMeta: metav1.ObjectMeta{Name: "students"},
		Spec: gpuwardenv1alpha1.GPUQuotaSpec{Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectGroup, Name: "students"}},
			Limits: gpuwardenv1alpha1.QuotaLimits{GPUEquivalents: &four}},
		Status: gpuwardenv1alpha1.GPUQuotaStatus{Usage: []gpuwardenv1alpha1.UserUsage{
			{User: "alice", Budget: &gpuwardenv1alpha1.BudgetUsage{UsedGPUHours: "12.5", GPUHours: "100", Window: "30d"}},
			{User: "bob"}}}}

	rsv := func(name string, start time.Time, repeat gpuwardenv1alpha1.ReservationRepeat, phase gpuwardenv1alpha1.ReservationPhase, devices ...string) gpuwardenv1alpha1.GPUReservation {
		var bd []gpuwardenv1alpha1.BoundDevice
		for _, d := range devices {
			bd = append(bd, gpuwardenv1alpha1.BoundDevice{UUID: d})
		}
		return gpuwardenv1alpha1.GPUReservation{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: gpuwardenv1alpha1.GPUReservationSpec{Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: "alice"}},
				NodeName: "n1", Request: gpuwardenv1alpha1.AllocationRequest{Devices: devices},
				Start: metav1.NewTime(start), End: metav1.NewTime(start.Add(2 * time.Hour)), Repeat: repeat},
			Status: gpuwardenv1alpha1.GPUReservationStatus{Phase: phase, NodeName: "n1", Devices: bd, DevicesSummary: strings.Join(devices, ",")}}
	}
	return Input{
		GPUs: []gpuwardenv1alpha1.GPU{gpu("n1", 1, "GPU-1"), gpu("n1", 0, "GPU-0"), gpu("n2", 0, "GPU-9"),
			gpu("n1", 2, "GPU-2", gpuwardenv1alpha1.MIGInstance{UUID: "MIG-a", Profile: "1g.10gb", GPUInstanceID: 9}, gpuwardenv1alpha1.MIGInstance{UUID: "MIG-b", Profile: "1g.10gb", GPUInstanceID: 10})},
		Allocations: []gpuwardenv1alpha1.GPUAllocation{pending("q-second", "dave", 2), idle, borrowed, slice, other, pending("q-first", "alice", 1), unplaced},
		Policies:    []gpuwardenv1alpha1.ContainerPolicy{policy},
		Quotas:      []gpuwardenv1alpha1.GPUQuota{quota},
		Reservations: []gpuwardenv1alpha1.GPUReservation{
			rsv("r-now", now.Add(-time.Hour), gpuwardenv1alpha1.RepeatNone, gpuwardenv1alpha1.ReservationActive, "GPU-1"),
			rsv("r-weekly", now.Add(-6*24*time.Hour), gpuwardenv1alpha1.RepeatWeekly, gpuwardenv1alpha1.ReservationAccepted, "GPU-0"),
			rsv("r-late", now.Add(8*24*time.Hour), gpuwardenv1alpha1.RepeatNone, gpuwardenv1alpha1.ReservationAccepted, "GPU-0"),
			rsv("r-rejected", now.Add(time.Hour), gpuwardenv1alpha1.RepeatNone, gpuwardenv1alpha1.ReservationRejected, "GPU-0"),
		},
		Readings: map[string]Reading{
			"GPU-0":   {UtilizationPercent: ptr(3.0), MemoryUsedBytes: ptr(int64(1 << 30)), MemoryTotalBytes: ptr(int64(80 << 30)), TemperatureC: ptr(41.0), PowerWatts: ptr(88.5)},
			"GPU-2/9": {MemoryUsedBytes: ptr(int64(2 << 30)), MemoryTotalBytes: ptr(int64(10 << 30))},
		},
	}
}

func TestBuildShowsDevicesWithHoldersAndReadings(t *testing.T) {
	s := Build(input(), "n1", now)
	var got []string
	for _, d := range s.Devices {
		got = append(got, d.UUID)
	}
	if want := "GPU-0 GPU-1 GPU-2 MIG-a MIG-b"; strings.Join(got, " ") != want {
		t.Fatalf("devices %v; want %s (node n1's, by index, MIG instances after their GPU)", got, want)
	}
	d0, d1, d2, mig := s.Devices[0], s.Devices[1], s.Devices[2], s.Devices[3]
	if d0.Holder == nil || d0.Holder.User != "alice" || d0.Holder.Allocation != "a-idle" || d0.Holder.Container != "a-idle-c" || d0.Holder.Type != "notebook" {
		t.Errorf("GPU 0's holder %+v", d0.Holder)
	}
	if *d0.UtilizationPercent != 3 || *d0.MemoryUsedBytes != 1<<30 || *d0.TemperatureC != 41 || *d0.PowerWatts != 88.5 {
		t.Errorf("GPU 0's readings %+v", d0)
	}
	// Idle for 30 minutes of a 1h timeout warned at 0.5 and 0.9: the next warning at 54m.
	if h := d0.Holder; h.IdleSince == nil || !h.IdleSince.Equal(now.Add(-30*time.Minute)) || h.IdleStopAt == nil || !h.IdleStopAt.Equal(now.Add(30*time.Minute)) ||
		h.IdleWarnAt == nil || !h.IdleWarnAt.Equal(now.Add(24*time.Minute)) {
		t.Errorf("GPU 0's idle times %v %v %v", h.IdleSince, h.IdleWarnAt, h.IdleStopAt)
	}
	if h := d0.Holder; h.RuntimeEnd == nil || !h.RuntimeEnd.Equal(now.Add(6*time.Hour)) {
		t.Errorf("GPU 0's runtime end %v; want 6h from now", h.RuntimeEnd)
	}
	if d1.Holder == nil || !d1.Holder.Borrowed || d1.ReservedBy != "r-now" {
		t.Errorf("GPU 1: borrowed holder and reserved by r-now; got %+v %q", d1.Holder, d1.ReservedBy)
	}
	if d0.ReservedBy != "" {
		t.Errorf("GPU 0 reserved by %q now; its weekly window is not on", d0.ReservedBy)
	}
	if !d2.MIG || d2.Holder != nil || mig.Profile != "1g.10gb" || mig.Holder == nil || mig.Holder.User != "bob" || *mig.MemoryUsedBytes != 2<<30 || mig.UtilizationPercent != nil {
		t.Errorf("the MIG GPU %+v and its instance %+v", d2, mig)
	}
	if d2.MemoryTotalBytes == nil || *d2.MemoryTotalBytes != 80<<30 {
		t.Errorf("the GPU's memory from its status when the metrics have none: %v", d2.MemoryTotalBytes)
	}
}

func TestBuildQueueReservationsAndUsers(t *testing.T) {
	s := Build(input(), "n1", now)
	if len(s.Queue) != 2 || s.Queue[0].Name != "q-first" || s.Queue[1].Name != "q-second" || s.Queue[0].Request != "2 GPUs" ||
		s.Queue[0].Why != "capacity: a-idle holds its GPUs without a time limit" || s.Unplaced != 0 {
		t.Errorf("queue %+v unplaced %d", s.Queue, s.Unplaced)
	}
	var rs []string
	for _, r := range s.Reservations {
		rs = append(rs, r.Name+"@"+r.Start.Sub(now).String())
	}
	// The active one, then the weekly one's next window (a day from now); not the one past
	// the week, nor the rejected.
	if want := "r-now@-1h0m0s r-weekly@24h0m0s"; strings.Join(rs, " ") != want {
		t.Errorf("reservations %v; want %s", rs, want)
	}
	if !s.Reservations[0].Active || s.Reservations[1].Active || !s.Reservations[1].Weekly || s.Reservations[0].For != "alice" {
		t.Errorf("reservation marks %+v", s.Reservations)
	}
	byName := map[string]User{}
	for _, u := range s.Users {
		byName[u.Name] = u
	}
	if a := byName["alice"]; a.GPUEquivalents != 1 || a.Containers != 1 || a.Quota != "4" || a.Waiting != 1 || a.BudgetUsedGPUHours != 12.5 || a.BudgetGPUHours != 100 || a.BudgetWindow != "30d" {
		t.Errorf("alice %+v", a)
	}
	if b := byName["bob"]; b.Containers != 2 || b.Borrowed != 1 || b.Quota != "4" || b.GPUEquivalents < 1.14 || b.GPUEquivalents > 1.15 {
		t.Errorf("bob %+v", b)
	}
	if _, ok := byName["carol"]; ok {
		t.Errorf("carol holds on n2 only; she is not n1's user")
	}
	if all := Build(input(), "", now); len(all.Devices) != 6 || len(all.Users) != 4 || all.Unplaced != 1 {
		t.Errorf("every node: %d devices, %d unplaced, users %+v", len(all.Devices), all.Unplaced, all.Users)
	}
}

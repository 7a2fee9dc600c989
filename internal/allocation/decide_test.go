package allocation

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// inventory builds a node: whole GPUs 0..wholes-1, then one 7-slice GPU per MIG layout.
func inventory(wholes int, migs ...[]int) []Slot {
	var out []Slot
	for i := 0; i < wholes; i++ {
		out = append(out, Slot{GPUIndex: i, UUID: fmt.Sprintf("GPU-%d", i), Healthy: true})
	}
	for g, layout := range migs {
		idx := wholes + g
		for j, slices := range layout {
			out = append(out, Slot{GPUIndex: idx, UUID: fmt.Sprintf("MIG-%d-%d", idx, j),
				Profile: fmt.Sprintf("%dg.%dgb", slices, slices*10), Share: float64(slices) / 7, Healthy: true})
		}
	}
	return out
}

func limit[T any](v T, from string) Limit[T] { return Limit[T]{Set: true, Value: v, From: from} }

var students = Quota{
	GPUEquivalents:      limit(2.0, "GPUQuota students"),
	MaxGPUsPerContainer: limit(2, "GPUQuota students"),
	MaxContainers:       limit(3, "GPUQuota students"),
	AllowFullGPU:        limit(true, "GPUQuota everyone"),
}

func uuids(slots []Slot) []string {
	var out []string
	for _, s := range slots {
		out = append(out, s.UUID)
	}
	return out
}

func TestDecide(t *testing.T) {
	held := func(user string, w float64, slots ...string) Holding {
		return Holding{Name: user + "-x", User: user, Slots: slots, Weight: w}
	}
	cases := []struct {
		name   string
		inv    []Slot
		live   []Holding
		q      Quota
		req    Request
		want   []string // UUIDs placed
		reason string
		msg    string
	}{
		{name: "lowest free index", inv: inventory(4), q: students, req: Request{User: "alice", GPUs: 2},
			want: []string{"GPU-0", "GPU-1"}},
		{name: "skips held, unhealthy and foreign GPUs", inv: func() []Slot {
			inv := inventory(5)
			inv[1].Healthy = false
			inv[2].Foreign = true
			return inv
		}(), live: []Holding{held("bob", 1, "GPU-0")}, q: students, req: Request{User: "alice", GPUs: 2},
			want: []string{"GPU-3", "GPU-4"}},
		{name: "per-container cap comes first", inv: inventory(8), live: []Holding{held("alice", 2, "GPU-0", "GPU-1")}, q: students,
			req: Request{User: "alice", GPUs: 3}, reason: gpuwardenv1alpha1.ReasonContainerLimitExceeded,
			msg: "alice asked for 3 GPUs in one container; the limit is 2 (GPUQuota students)"},
		{name: "full GPU not allowed", inv: inventory(2, []int{1, 1}), q: Quota{AllowFullGPU: limit(false, "GPUQuota mig-only")},
			req: Request{User: "carol", GPUs: 1}, reason: gpuwardenv1alpha1.ReasonFullGPUNotAllowed,
			msg: "carol may not hold whole GPUs, only MIG slices (GPUQuota mig-only)"},
		{name: "full GPU not allowed by device", inv: inventory(2), q: Quota{AllowFullGPU: limit(false, "GPUQuota mig-only")},
			req: Request{User: "carol", Devices: []string{"GPU-1"}}, reason: gpuwardenv1alpha1.ReasonFullGPUNotAllowed,
			msg: "carol may not hold whole GPUs, only MIG slices (GPUQuota mig-only)"},
		{name: "MIG slice allowed without full GPUs", inv: inventory(2, []int{1, 1}), q: Quota{AllowFullGPU: limit(false, "GPUQuota mig-only")},
			req: Request{User: "carol", MIGProfile: "1g.10gb"}, want: []string{"MIG-2-0"}},
		{name: "max containers", inv: inventory(8), q: students,
			live: []Holding{held("alice", 0.14, "MIG-a"), held("alice", 0.14, "MIG-b"), held("alice", 0.14, "MIG-c")},
			req:  Request{User: "alice", GPUs: 1}, reason: gpuwardenv1alpha1.ReasonMaxContainersExceeded, msg: "alice holds 3/3 containers (GPUQuota students)"},
		{name: "gpu-equivalent quota", inv: inventory(8), q: students, live: []Holding{held("alice", 2, "GPU-0", "GPU-1")},
			req: Request{User: "alice", GPUs: 1}, reason: gpuwardenv1alpha1.ReasonQuotaExceeded,
			msg: "alice holds 2/2 gpu-equivalents and asked for 1 more (GPUQuota students)"},
		{name: "quota charges the MIG weight", inv: inventory(1, []int{3, 2, 2}), q: students,
			live: []Holding{held("alice", 1, "GPU-0"), held("alice", 5.0/7, "MIG-x")},
			req:  Request{User: "alice", MIGProfile: "3g.30gb"}, reason: gpuwardenv1alpha1.ReasonQuotaExceeded,
			msg: "alice holds 1.71/2 gpu-equivalents and asked for 0.43 more (GPUQuota students)"},
		{name: "seven 1/7 slices fill a quota of 1 exactly", inv: inventory(0, []int{1, 1, 1, 1, 1, 1, 1}),
			q: Quota{GPUEquivalents: limit(1.0, "GPUQuota tiny")}, live: func() []Holding {
				var h []Holding
				for j := 0; j < 6; j++ {
					h = append(h, held("dan", 1.0/7, fmt.Sprintf("MIG-0-%d", j)))
				}
				return h
			}(), req: Request{User: "dan", MIGProfile: "1g.10gb"}, want: []string{"MIG-0-6"}},
		{name: "unlimited quota", inv: inventory(8), q: Quota{GPUEquivalents: Limit[float64]{Set: true, Unlimited: true, From: "GPUQuota admins"},
			MaxGPUsPerContainer: Limit[int]{Set: true, Unlimited: true}}, live: []Holding{held("root", 4, "GPU-0", "GPU-1", "GPU-2", "GPU-3")},
			req: Request{User: "root", GPUs: 4}, want: []string{"GPU-4", "GPU-5", "GPU-6", "GPU-7"}},
		{name: "no quota at all", inv: inventory(2), req: Request{User: "eve", GPUs: 2}, want: []string{"GPU-0", "GPU-1"}},
		{name: "shared pool counts everyone in it", inv: inventory(8),
			q:    Quota{GPUEquivalents: Limit[float64]{Set: true, Value: 3, From: "GPUQuota lab-pool", Shared: true}, Pool: []string{"alice", "bob", "carol"}},
			live: []Holding{held("bob", 2, "GPU-0", "GPU-1"), held("mallory", 1, "GPU-2")}, req: Request{User: "alice", GPUs: 2},
			reason: gpuwardenv1alpha1.ReasonQuotaExceeded, msg: "the pool of alice shared with bob, carol holds 2/3 gpu-equivalents and asked for 2 more (GPUQuota lab-pool)"},
		{name: "no capacity is not final", inv: inventory(2), live: []Holding{held("bob", 1, "GPU-0")}, q: students,
			req: Request{User: "alice", GPUs: 2}, reason: gpuwardenv1alpha1.ReasonNoCapacity, msg: "1 whole GPU free of 2 asked for"},
		{name: "MIG best fit packs the fuller GPU", inv: inventory(0, []int{1, 1, 1, 1, 1, 1, 1}, []int{1, 1, 1, 1, 1, 1, 1}),
			live: []Holding{held("bob", 5.0/7, "MIG-1-0", "MIG-1-1", "MIG-1-2", "MIG-1-3", "MIG-1-4")},
			req:  Request{User: "alice", MIGProfile: "1g.10gb"}, want: []string{"MIG-1-5"}},
		{name: "unknown MIG profile waits", inv: inventory(1, []int{7}), req: Request{User: "alice", MIGProfile: "2g.20gb"},
			reason: gpuwardenv1alpha1.ReasonNoCapacity, msg: "no free MIG instance of profile 2g.20gb"},
		{name: "named devices", inv: inventory(4), req: Request{User: "alice", Devices: []string{"GPU-3", "GPU-1"}},
			want: []string{"GPU-3", "GPU-1"}},
		{name: "named device held", inv: inventory(4), live: []Holding{held("bob", 1, "GPU-3")}, req: Request{User: "alice", Devices: []string{"GPU-3"}},
			reason: gpuwardenv1alpha1.ReasonNoCapacity, msg: "device GPU-3 is held by another allocation"},
		{name: "named device unknown", inv: inventory(1), req: Request{User: "alice", Devices: []string{"GPU-9"}},
			reason: gpuwardenv1alpha1.ReasonNoCapacity, msg: "no device GPU-9 on this node"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.inv, tc.live, tc.q, tc.req)
			if d.Reason != tc.reason || d.Message != tc.msg {
				t.Errorf("reason %q %q, want %q %q", d.Reason, d.Message, tc.reason, tc.msg)
			}
			if diff := cmp.Diff(tc.want, uuids(d.Slots)); diff != "" {
				t.Errorf("slots (-want,+got):\n%s", diff)
			}
			if d.Placed() != (tc.reason == "") || d.Final() != (tc.reason != "" && tc.reason != gpuwardenv1alpha1.ReasonNoCapacity) {
				t.Errorf("Placed=%v Final=%v for reason %q", d.Placed(), d.Final(), d.Reason)
			}
		})
	}
}

// TestQuotaExactlyFilledByMIGWeights: 1 + 4/7 + 3/7 is exactly 2 and fits a quota of 2.
func TestQuotaExactlyFilledByMIGWeights(t *testing.T) {
	live := []Holding{{User: "alice", Slots: []string{"GPU-0"}, Weight: 1}, {User: "alice", Slots: []string{"MIG-x"}, Weight: 4.0 / 7}}
	d := Decide(inventory(1, []int{3, 2, 2}), live, students, Request{User: "alice", MIGProfile: "3g.30gb"})
	if !d.Placed() {
		t.Errorf("refused: %s", d.Message)
	}
}

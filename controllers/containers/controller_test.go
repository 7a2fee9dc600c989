package containers

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

func TestDevicesOf(t *testing.T) {
	gpu := func(i int32, uuid string, mig ...string) gpuwardenv1alpha1.GPU {
		g := gpuwardenv1alpha1.GPU{Spec: gpuwardenv1alpha1.GPUSpec{Index: i}, Status: gpuwardenv1alpha1.GPUStatus{UUID: uuid, MIGMode: gpuwardenv1alpha1.MIGDisabled}}
		if len(mig) > 0 {
			g.Status.MIGMode = gpuwardenv1alpha1.MIGEnabled
			for _, m := range mig {
				g.Status.MIGInstances = append(g.Status.MIGInstances, gpuwardenv1alpha1.MIGInstance{UUID: m, Profile: "3g.40gb"})
			}
		}
		return g
	}
	gpus := []gpuwardenv1alpha1.GPU{gpu(2, "GPU-c", "MIG-c1", "MIG-c2"), gpu(0, "GPU-a"), gpu(1, "GPU-b")}
	tests := []struct {
		name string
		req  docker.GPURequest
		want []string
	}{
		{"all, in index order, MIG GPU as its instances", docker.GPURequest{All: true}, []string{"GPU-a", "GPU-b", "MIG-c1", "MIG-c2"}},
		{"count takes the first indices", docker.GPURequest{Count: 2}, []string{"GPU-a", "GPU-b"}},
		{"count beyond the GPUs", docker.GPURequest{Count: 9}, []string{"GPU-a", "GPU-b", "MIG-c1", "MIG-c2"}},
		{"UUIDs and indices", docker.GPURequest{Devices: []string{"GPU-b", "0"}}, []string{"GPU-b", "GPU-a"}},
		{"a MIG instance by index", docker.GPURequest{Devices: []string{"2:1"}}, []string{"MIG-c2"}},
		{"a MIG UUID", docker.GPURequest{Devices: []string{"MIG-c1"}}, []string{"MIG-c1"}},
		{"a partitioned GPU by UUID", docker.GPURequest{Devices: []string{"GPU-c"}}, []string{"MIG-c1", "MIG-c2"}},
		{"duplicates once", docker.GPURequest{Devices: []string{"0", "GPU-a"}}, []string{"GPU-a"}},
		{"unknown device", docker.GPURequest{Devices: []string{"GPU-zzz", "7"}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, devicesOf(tc.req, gpus)); diff != "" {
				t.Errorf("(-want,+got):\n%s", diff)
			}
		})
	}
}

func TestStoreReplaceReportsChanges(t *testing.T) {
	s := containerstore.New()
	t0 := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	a := docker.Container{ID: "a", State: docker.StateRunning, StartedAt: t0}
	b := docker.Container{ID: "b", State: docker.StateRunning, StartedAt: t0}
	s.Replace([]docker.Container{a, b}, t0)
	if _, ok, synced := s.Get("a"); !ok || !synced {
		t.Fatal("a not stored after the first listing")
	}
	s.SetSynced(false)
	if _, _, synced := s.Get("a"); synced {
		t.Fatal("store still synced during an outage")
	}
	aStopped := a
	aStopped.State = docker.StateExited
	c := docker.Container{ID: "c", State: docker.StateCreated}
	added, removed, changed := s.Replace([]docker.Container{aStopped, c}, t0.Add(time.Minute))
	if len(added) != 1 || added[0].ID != "c" || len(removed) != 1 || removed[0].ID != "b" || changed["a"].State != docker.StateRunning {
		t.Errorf("added %v removed %v changed %v", added, removed, changed)
	}
	if last, ok := s.Gone("b"); !ok || last.ID != "b" {
		t.Error("a container gone from the listing is not remembered as gone")
	}
	if !s.SyncedAt().Equal(t0.Add(time.Minute)) {
		t.Error("sync time not kept")
	}
}

func TestWantsAdoption(t *testing.T) {
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	running := docker.Container{ID: "0123456789abcdef", State: docker.StateRunning, StartedAt: start, GPUs: docker.GPURequest{Count: 1}}
	alloc := func(created time.Time) gpuwardenv1alpha1.GPUAllocation {
		return *testutil.MakeAllocation("").Created(created).Obj()
	}
	r := &Reconciler{}
	for _, tc := range []struct {
		name   string
		c      docker.Container
		allocs []gpuwardenv1alpha1.GPUAllocation
		want   bool
	}{
		{"GPU container, nothing yet", running, nil, true},
		{"no GPUs", docker.Container{State: docker.StateRunning}, nil, false},
		{"stopped", docker.Container{State: docker.StateExited, GPUs: docker.GPURequest{All: true}}, nil, false},
		{"decided since it started", running, []gpuwardenv1alpha1.GPUAllocation{alloc(start.Add(time.Second))}, false},
		{"restarted after an old decision", running, []gpuwardenv1alpha1.GPUAllocation{alloc(start.Add(-time.Hour))}, true},
		{"created, never started", docker.Container{State: docker.StateCreated, GPUs: docker.GPURequest{Count: 1}}, nil, true},
		{"created, already decided", docker.Container{State: docker.StateCreated, GPUs: docker.GPURequest{Count: 1}}, []gpuwardenv1alpha1.GPUAllocation{alloc(start)}, false},
	} {
		if got := r.wantsAdoption(tc.c, tc.allocs); got != tc.want {
			t.Errorf("%s: wantsAdoption = %v, want %v", tc.name, got, tc.want)
		}
	}
}

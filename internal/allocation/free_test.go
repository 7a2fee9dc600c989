package allocation

import "testing"

func TestFreeProfilesAndPartitioned(t *testing.T) {
	inv := []Slot{
		{GPUIndex: 0, GPUUUID: "GPU-0", UUID: "GPU-0", Healthy: true},
		{GPUIndex: 4, GPUUUID: "GPU-4", UUID: "MIG-a", Profile: "1g.10gb", Share: 1.0 / 7, Healthy: true},
		{GPUIndex: 4, GPUUUID: "GPU-4", UUID: "MIG-b", Profile: "1g.10gb", Share: 1.0 / 7, Healthy: true},
		{GPUIndex: 4, GPUUUID: "GPU-4", UUID: "MIG-c", Profile: "1g.10gb", Share: 1.0 / 7, Healthy: false},
		{GPUIndex: 4, GPUUUID: "GPU-4", UUID: "MIG-d", Profile: "3g.40gb", Share: 3.0 / 7, Healthy: true},
		{GPUIndex: 5, GPUUUID: "GPU-5", UUID: "MIG-e", Profile: "1g.10gb", Share: 1.0 / 7, Healthy: true, Foreign: true},
		{GPUIndex: 5, GPUUUID: "GPU-5", UUID: "MIG-f", Profile: "7g.80gb", Share: 1, Healthy: true},
		{GPUIndex: 5, GPUUUID: "GPU-5", UUID: "MIG-g", Profile: "1g.10gb+me", Share: 1.0 / 7, Healthy: true},
		{GPUIndex: 5, GPUUUID: "GPU-5", UUID: "MIG-h", Profile: "2g.20gb", Share: 2.0 / 7, Healthy: true},
	}
	live := []Holding{{Name: "a", Slots: []string{"MIG-b", "GPU-0"}}}
	for _, tc := range []struct {
		name  string
		index int
		want  string
	}{
		{"the node", -1, "1g.10gb ×1, 1g.10gb+me ×1, 2g.20gb ×1, 3g.40gb ×1, 7g.80gb ×1"},
		{"GPU 4 (one held, one unhealthy)", 4, "1g.10gb ×1, 3g.40gb ×1"},
		{"GPU 5 (one with foreign processes)", 5, "1g.10gb+me ×1, 2g.20gb ×1, 7g.80gb ×1"},
		{"a whole GPU has no slices", 0, "none"},
	} {
		if got := DescribeFree(FreeProfiles(inv, live, tc.index)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		device string
		index  int
		ok     bool
	}{
		{"4", 4, true}, {"GPU-5", 5, true}, {"0", 0, false}, {"GPU-0", 0, false}, {"4:0", 0, false}, {"MIG-a", 0, false}, {"", 0, false}, {"9", 0, false},
	} {
		if i, ok := Partitioned(inv, tc.device); i != tc.index || ok != tc.ok {
			t.Errorf("Partitioned(%q) = %d %v, want %d %v", tc.device, i, ok, tc.index, tc.ok)
		}
	}
}

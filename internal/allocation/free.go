package allocation

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// heldSlots is the set of slot UUIDs the live allocations hold.
func heldSlots(live []Holding) map[string]bool {
	held := map[string]bool{}
	for _, h := range live {
		for _, u := range h.Slots {
			held[u] = true
		}
	}
	return held
}

// freeSlot reports whether s can be given out: healthy, without foreign processes, held by
// no live allocation.
func freeSlot(s Slot, held map[string]bool) bool { return s.Healthy && !s.Foreign && !held[s.UUID] }

// FreeProfiles counts the free MIG instances of each profile: on GPU index, or on every GPU
// when index is negative.
func FreeProfiles(inventory []Slot, live []Holding, index int) map[string]int {
	held := heldSlots(live)
	out := map[string]int{}
	for _, s := range inventory {
		if s.Profile != "" && (index < 0 || s.GPUIndex == index) && freeSlot(s, held) {
			out[s.Profile]++
		}
	}
	return out
}

// DescribeFree is free profile counts as people read them, smallest slice first:
// "1g.10gb ×3, 3g.40gb ×1"; "none" when nothing is free.
func DescribeFree(counts map[string]int) string {
	names := make([]string, 0, len(counts))
	for p, n := range counts {
		if n > 0 {
			names = append(names, p)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	slices := func(p string) int {
		n, _ := strconv.Atoi(p[:max(strings.IndexByte(p, 'g'), 0)])
		return n
	}
	sort.Slice(names, func(i, j int) bool {
		if a, b := slices(names[i]), slices(names[j]); a != b {
			return a < b
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, p := range names {
		parts[i] = fmt.Sprintf("%s ×%d", p, counts[p])
	}
	return strings.Join(parts, ", ")
}

// Partitioned returns the index of the GPU that device names — by index ("4") or by the
// GPU's own UUID — when that GPU is split into MIG instances (it cannot be given out whole).
func Partitioned(inventory []Slot, device string) (int, bool) {
	for _, s := range inventory {
		if s.Profile == "" {
			continue
		}
		if s.GPUUUID == device && device != "" || strconv.Itoa(s.GPUIndex) == device {
			return s.GPUIndex, true
		}
	}
	return 0, false
}

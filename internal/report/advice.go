package report

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultMIGProfile is the smallest MIG profile a whole-GPU run is judged against when the
// log shows no MIG slice of its GPU model (an A100 80GB's or H100's smallest).
const DefaultMIGProfile = "1g.10gb"

// Rules of right-size advice (Advice.Rule).
const (
	// RuleSlice: a run on whole GPUs whose peak memory fits the smallest MIG profile of
	// its GPU model and whose peak utilisation is within that profile's compute share.
	RuleSlice = "slice"
	// RuleSmallerSlice: a run on a MIG slice whose peak memory fits a smaller profile of
	// the same GPU model. NVML gives no utilisation on MIG: it is judged by memory alone.
	RuleSmallerSlice = "smaller-slice"
	// RuleFewerGPUs: a run on several whole GPUs that used fewer of them than it held.
	RuleFewerGPUs = "fewer-gpus"
)

// Advice is one line of right-size advice, the way Princeton's Job Defense Shield judges
// Slurm jobs: of a user's runs (one allocation each, gpu.allocate to gpu.release) of one
// container type, those that would have fit Suggestion, judged by the peaks of their
// gpu.usage records, and the GPU-hours that smaller choice would have freed.
//
// The rules, in the order a run is judged by them (the first that fits is its advice):
//
//   - RuleSlice: a run on one or more whole GPUs whose peak memory on every device fits the
//     smallest MIG profile of its GPU model (its memory as its name says: 10 GB for
//     1g.10gb; the smallest profile the log shows on that model, else Builder.MIGProfile),
//     whose peak utilisation is at most that profile's compute share (slices/7 × 100 %,
//     14 % for 1g), and which used at most one of its devices. Freed: (its gpu-equivalents
//     − the profile's weight) × its hours bound.
//   - RuleFewerGPUs: a run on several whole GPUs whose busy_devices (devices that showed a
//     utilisation or more than 256 MiB of memory) stayed below what it held fits that
//     many GPUs (at least one). Freed: (held − busy) × its gpu-equivalents per device ×
//     its hours bound.
//   - RuleSmallerSlice: a run on a MIG slice whose peak memory fits a profile of fewer
//     slices that the log shows on the same GPU model fits the smallest such profile.
//     NVML gives no utilisation on MIG, so it is judged by memory alone. Freed: (its
//     gpu-equivalents − that profile's weight) × its hours bound.
//
// A run is judged when its gpu.allocate is in the log (its hours are known), it was held
// within the period, and it has gpu.usage records that all carry its peaks: a run too
// short for a record, one whose records predate the peaks, or one with a window NVML did
// not read is not judged. A run still held at the end of the period is judged on what it
// has shown so far, with its hours up to that end, and counted in Running.
type Advice struct {
	User          string
	ContainerType string
	// Rule is how its runs were judged: RuleSlice, RuleSmallerSlice or RuleFewerGPUs.
	Rule string
	// Suggestion is the smaller choice: a MIG profile ("1g.10gb") or a number of whole
	// GPUs ("1 GPU").
	Suggestion string
	// Judged is how many of the user's runs of ContainerType were judged; Fit how many of
	// them fit Suggestion by Rule; Running how many of those were still held at the end.
	Judged, Fit, Running int
	// MemoryLimitBytes is the memory of Suggestion's profile, within which every device's
	// peak stayed (RuleSlice, RuleSmallerSlice).
	MemoryLimitBytes uint64
	// UtilizationLimitPercent is the compute share of Suggestion's profile, within which
	// the peak utilisation stayed (RuleSlice).
	UtilizationLimitPercent float64
	// GPUHoursFreed is the gpu-equivalents the runs held beyond Suggestion × their hours
	// bound within the period.
	GPUHoursFreed float64
}

// String is the advice for people, without user and container type, e.g. "12 of 15 runs
// fit a 1g.10gb slice (peak memory ≤ 10 GB, utilisation ≤ 14 %): 30.50 GPU-hours freed".
func (a Advice) String() string {
	runs := fmt.Sprintf("%d of %d runs", a.Fit, a.Judged)
	if a.Running > 0 {
		runs += fmt.Sprintf(" (%d still running)", a.Running)
	}
	gb := strconv.FormatFloat(float64(a.MemoryLimitBytes)/(1<<30), 'f', -1, 64)
	var why string
	switch a.Rule {
	case RuleSlice:
		why = fmt.Sprintf("fit a %s slice (peak memory ≤ %s GB, utilisation ≤ %.0f %%)", a.Suggestion, gb, a.UtilizationLimitPercent)
	case RuleSmallerSlice:
		why = fmt.Sprintf("fit a %s slice (peak memory ≤ %s GB; MIG gives no utilisation, judged by memory alone)", a.Suggestion, gb)
	default:
		why = fmt.Sprintf("fit %s (the others of the GPUs they held stayed unused)", a.Suggestion)
	}
	return fmt.Sprintf("%s %s: %.2f GPU-hours freed", runs, why, a.GPUHoursFreed)
}

// run is one allocation, gpu.allocate to gpu.release, with the peaks of its gpu.usage
// records.
type run struct {
	user, containerType string
	eq                  float64
	devices             int
	start, end          time.Time
	released            bool
	migProfile, model   string
	// records counts its gpu.usage records; unread those without peak memory, noUtil those
	// without a peak utilisation.
	records, unread, noUtil int
	peakMemory              float64
	peakUtil                float64
	busy                    int
}

// profile is a MIG profile as its name says: "3g.40gb" is 3 slices and 40 GB.
type profile struct {
	name   string
	slices int
	gb     float64
	// weight is its gpu-equivalents: as the log records it for the GPU model, else slices/7.
	weight float64
}

var profileName = regexp.MustCompile(`^(\d+)g\.(\d+)gb`)

// parseProfile reads a MIG profile's slices and memory from its name.
func parseProfile(name string) (profile, bool) {
	m := profileName.FindStringSubmatch(name)
	if m == nil {
		return profile{}, false
	}
	s, err1 := strconv.Atoi(m[1])
	gb, err2 := strconv.ParseFloat(m[2], 64)
	if err1 != nil || err2 != nil || s <= 0 || s > 7 || gb <= 0 {
		return profile{}, false
	}
	return profile{name: name, slices: s, gb: gb, weight: float64(s) / 7}, true
}

// ValidMIGProfile says whether name reads as a MIG profile: slices and memory, "1g.10gb".
func ValidMIGProfile(name string) bool {
	_, ok := parseProfile(name)
	return ok
}

func (p profile) memoryBytes() float64 { return p.gb * (1 << 30) }

// deviceCount is the number of devices a record names.
func deviceCount(d map[string]any) int {
	switch v := d["devices"].(type) {
	case []string:
		return len(v)
	case []any:
		return len(v)
	}
	return 0
}

// addRun starts a run at its gpu.allocate; a record of the same binding again (the
// allocator records its decisions once more after a restart) keeps what was seen.
func (b *Builder) addRun(user, alloc string, d map[string]any, at time.Time) {
	if r, ok := b.runs[alloc]; ok && r.start.Equal(at) {
		return
	}
	b.runs[alloc] = &run{user: user, containerType: str(d, "container_type"), eq: num(d, "gpu_equivalents"), devices: deviceCount(d), start: at}
}

// usageOf adds a gpu.usage record's peaks to its run.
func (b *Builder) usageOf(alloc string, d map[string]any) {
	// The MIG profiles each GPU model shows, with what one slice of each costs.
	if p, ok := parseProfile(str(d, "mig_profile")); ok && deviceCount(d) == 1 {
		model := str(d, "gpu_model")
		if b.profiles == nil {
			b.profiles = map[string]map[string]profile{}
		}
		if b.profiles[model] == nil {
			b.profiles[model] = map[string]profile{}
		}
		if eq := num(d, "gpu_equivalents"); eq > 0 {
			p.weight = eq
		}
		b.profiles[model][p.name] = p
	}
	// The last record of a run may come after its release: written when the sampler next
	// finds its container no longer holding GPUs.
	r, ok := b.runs[alloc]
	if !ok {
		return
	}
	r.records++
	r.devices = max(r.devices, deviceCount(d))
	if r.containerType == "" {
		r.containerType = str(d, "container_type")
	}
	if r.eq == 0 {
		r.eq = num(d, "gpu_equivalents")
	}
	if p := str(d, "mig_profile"); p != "" {
		r.migProfile = p
	}
	if m := str(d, "gpu_model"); m != "" {
		r.model = m
	}
	if _, ok := d["peak_memory_bytes"]; !ok {
		r.unread++
	} else {
		r.peakMemory = max(r.peakMemory, num(d, "peak_memory_bytes"))
		r.busy = max(r.busy, int(num(d, "busy_devices")))
	}
	if _, ok := d["peak_utilization_percent"]; !ok {
		r.noUtil++
	} else {
		r.peakUtil = max(r.peakUtil, num(d, "peak_utilization_percent"))
	}
}

// seen is the MIG profiles the log shows on a GPU model, smallest first.
func (b *Builder) seen(model string) []profile {
	var out []profile
	for _, p := range b.profiles[model] {
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y profile) int {
		return cmp.Or(cmp.Compare(x.weight, y.weight), cmp.Compare(x.gb, y.gb), cmp.Compare(x.name, y.name))
	})
	return out
}

// judge is a run's advice: the rule it fits, the suggestion and the gpu-equivalents it
// held beyond it; ok is false when it fits none.
func (b *Builder) judge(r *run) (a Advice, extra float64, ok bool) {
	if r.migProfile == "" {
		small, known := profile{}, false
		if s := b.seen(r.model); len(s) > 0 {
			small, known = s[0], true
		} else {
			small, known = parseProfile(cmp.Or(b.MIGProfile, DefaultMIGProfile))
		}
		share := float64(small.slices) / 7 * 100
		if known && r.noUtil == 0 && r.busy <= 1 && r.peakMemory <= small.memoryBytes() && r.peakUtil <= share && r.eq > small.weight {
			return Advice{Rule: RuleSlice, Suggestion: small.name, MemoryLimitBytes: uint64(small.memoryBytes()), UtilizationLimitPercent: share}, r.eq - small.weight, true
		}
		if r.devices > 1 && r.busy < r.devices {
			n := max(r.busy, 1)
			s := "1 GPU"
			if n > 1 {
				s = fmt.Sprintf("%d GPUs", n)
			}
			return Advice{Rule: RuleFewerGPUs, Suggestion: s}, r.eq * float64(r.devices-n) / float64(r.devices), true
		}
		return Advice{}, 0, false
	}
	cur, ok := parseProfile(r.migProfile)
	if !ok || r.devices > 1 {
		return Advice{}, 0, false
	}
	for _, p := range b.seen(r.model) {
		if p.slices < cur.slices && p.weight < r.eq && r.peakMemory <= p.memoryBytes() {
			return Advice{Rule: RuleSmallerSlice, Suggestion: p.name, MemoryLimitBytes: uint64(p.memoryBytes())}, r.eq - p.weight, true
		}
	}
	return Advice{}, 0, false
}

// advice judges the runs held within the period, up to end, and groups what fits by user,
// container type, rule and suggestion: most GPU-hours freed first.
func (b *Builder) advice(end time.Time) []Advice {
	type key struct{ user, containerType string }
	judged := map[key]int{}
	type line struct {
		key
		rule, suggestion string
	}
	lines := map[line]*Advice{}
	for _, r := range b.runs {
		until := end
		if r.released {
			until = r.end
		}
		h := b.overlap(r.start, until).Hours()
		if h <= 0 || r.records == 0 || r.unread > 0 {
			continue
		}
		k := key{cmp.Or(r.user, "(unknown)"), cmp.Or(r.containerType, "unknown")}
		judged[k]++
		a, extra, ok := b.judge(r)
		if !ok {
			continue
		}
		l := line{k, a.Rule, a.Suggestion}
		cur := lines[l]
		if cur == nil {
			a.User, a.ContainerType = k.user, k.containerType
			cur = &a
			lines[l] = cur
		}
		cur.Fit++
		if !r.released {
			cur.Running++
		}
		cur.GPUHoursFreed += extra * h
	}
	out := make([]Advice, 0, len(lines))
	for _, a := range lines {
		a.Judged = judged[key{a.User, a.ContainerType}]
		a.GPUHoursFreed = math.Round(a.GPUHoursFreed*1e6) / 1e6
		out = append(out, *a)
	}
	slices.SortFunc(out, func(x, y Advice) int {
		return cmp.Or(cmp.Compare(y.GPUHoursFreed, x.GPUHoursFreed), strings.Compare(x.User, y.User),
			strings.Compare(x.ContainerType, y.ContainerType), strings.Compare(x.Rule, y.Rule), strings.Compare(x.Suggestion, y.Suggestion))
	})
	if len(out) == 0 {
		return nil
	}
	return out
}

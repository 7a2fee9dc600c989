package report_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/report"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

const (
	h100 = "NVIDIA H100 80GB HBM3"
	gib  = 1 << 30
)

// weekRun is one allocation of the generated week and the peaks its gpu.usage records show.
type weekRun struct {
	user, containerType, name string
	devices                   int
	eq, mig, model            string
	start                     time.Time
	hours                     float64 // 0: still held at the end
	peakMemory                uint64
	peakUtil                  float64 // < 0: none (MIG)
	busy                      int
	noPeaks                   bool // records written before the peaks were
}

// events are the run's gpu.allocate, a gpu.usage record every hour (the peaks in the
// second, lower numbers in the others) and its gpu.release.
func (r weekRun) events(end time.Time) []audit.Event {
	ref := audit.Allocation{Name: r.name, GPUEquivalents: r.eq, Container: audit.Container{Name: r.name, ID: "id-" + r.name, Type: r.containerType}}
	for i := range r.devices {
		ref.Devices = append(ref.Devices, r.name+"-dev"+string(rune('0'+i)))
	}
	alloc := audit.GPUAllocate(r.user, ref)
	alloc.Time = r.start
	out := []audit.Event{alloc}
	until := end
	if r.hours > 0 {
		until = r.start.Add(time.Duration(r.hours * float64(time.Hour)))
	}
	usageRef := ref
	usageRef.MIGProfile = r.mig
	for i, t := 1, r.start.Add(time.Hour); !t.After(until); i, t = i+1, t.Add(time.Hour) {
		u := audit.Usage{Window: time.Hour, GPUModel: r.model}
		if !r.noPeaks {
			u.MemorySampled, u.MemoryTotalBytes, u.PeakMemoryBytes, u.BusyDevices = true, 80*gib, r.peakMemory/2, min(r.busy, 1)
			if r.peakUtil >= 0 {
				u.HasPeakUtilization, u.PeakUtilization = true, r.peakUtil/2
			}
			if i == 2 {
				u.PeakMemoryBytes, u.PeakUtilization, u.BusyDevices = r.peakMemory, r.peakUtil, r.busy
			}
		}
		e := audit.GPUUsage(r.user, usageRef, u)
		e.Time = t
		out = append(out, e)
	}
	if r.hours > 0 {
		rel := audit.GPURelease(r.user, ref, "container removed")
		rel.Time = until
		out = append(out, rel)
	}
	return out
}

// A generated week of a small lab, reported Monday to Monday.
func TestRightSizeAdviceOfAWeek(t *testing.T) {
	mon := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	end := mon.AddDate(0, 0, 7)
	var runs []weekRun
	// alice's notebooks: five working days on a whole GPU at ≤ 10 GiB and ≤ 14 % (the
	// last exactly at both limits) fit a 1g.10gb slice: (1 − 0.142857) × 8 h each; her
	// Saturday one needs the whole GPU.
	for d, p := range []struct {
		mem  uint64
		util float64
	}{{6 * gib, 10}, {2 * gib, 3}, {8 * gib, 12}, {gib, 0}, {10 * gib, 14}} {
		runs = append(runs, weekRun{user: "alice", containerType: "notebook", name: "alice-" + string(rune('a'+d)), devices: 1, eq: "1", model: h100,
			start: mon.AddDate(0, 0, d).Add(9 * time.Hour), hours: 8, peakMemory: p.mem, peakUtil: p.util, busy: 1})
	}
	runs = append(runs,
		weekRun{user: "alice", containerType: "notebook", name: "alice-sat", devices: 1, eq: "1", model: h100,
			start: mon.AddDate(0, 0, 5).Add(10 * time.Hour), hours: 4, peakMemory: 30 * gib, peakUtil: 60, busy: 1},
		// bob's batch jobs: two GPUs of which one was used (1 GPU frees 1 × 10 h), one that
		// needs its GPU, and a 3g.40gb slice that peaked at 8 GiB: a 1g.10gb slice would
		// have done, judged by memory alone ((0.428571 − 0.142857) × 6 h).
		weekRun{user: "bob", containerType: "batch", name: "bob-2gpu", devices: 2, eq: "2", model: h100,
			start: mon.AddDate(0, 0, 1), hours: 10, peakMemory: 40 * gib, peakUtil: 90, busy: 1},
		weekRun{user: "bob", containerType: "batch", name: "bob-big", devices: 1, eq: "1", model: h100,
			start: mon.AddDate(0, 0, 2), hours: 12, peakMemory: 70 * gib, peakUtil: 95, busy: 1},
		weekRun{user: "bob", containerType: "batch", name: "bob-3g", devices: 1, eq: "0.428571", mig: "3g.40gb", model: h100,
			start: mon.AddDate(0, 0, 3), hours: 6, peakMemory: 8 * gib, peakUtil: -1, busy: 1},
		// carol: a 1g.10gb slice (already the smallest; it shows the profile on the H100s),
		// a notebook still held at the end, judged on its 4 hours so far, and one too short
		// for a gpu.usage record, not judged.
		weekRun{user: "carol", containerType: "notebook", name: "carol-1g", devices: 1, eq: "0.142857", mig: "1g.10gb", model: h100,
			start: mon.Add(8 * time.Hour), hours: 6, peakMemory: 3 * gib, peakUtil: -1, busy: 1},
		weekRun{user: "carol", containerType: "notebook", name: "carol-open", devices: 1, eq: "1", model: h100,
			start: end.Add(-4 * time.Hour), peakMemory: 2 * gib, peakUtil: 5, busy: 1},
		weekRun{user: "carol", containerType: "notebook", name: "carol-short", devices: 1, eq: "1", model: h100,
			start: mon.Add(30 * time.Hour), hours: 0.05, peakMemory: gib, peakUtil: 1, busy: 1},
		// dave: bound before the week, 3 of its hours in it; NVML named no model, so it is
		// judged against the default 1g.10gb: (1 − 1/7) × 3 h.
		weekRun{user: "dave", containerType: "batch", name: "dave-night", devices: 1, eq: "1",
			start: mon.Add(-3 * time.Hour), hours: 6, peakMemory: gib, peakUtil: 2, busy: 1},
		// erin's records predate the peaks: not judged. frank's fits by memory, not by
		// utilisation.
		weekRun{user: "erin", containerType: "notebook", name: "erin-old", devices: 1, eq: "1", model: h100,
			start: mon.Add(50 * time.Hour), hours: 5, noPeaks: true},
		weekRun{user: "frank", containerType: "batch", name: "frank-hot", devices: 1, eq: "1", model: h100,
			start: mon.Add(60 * time.Hour), hours: 2, peakMemory: 4 * gib, peakUtil: 50, busy: 1},
	)
	var events []audit.Event
	for _, r := range runs {
		events = append(events, r.events(end)...)
	}
	slices.SortStableFunc(events, func(a, b audit.Event) int { return a.Time.Compare(b.Time) })

	want := []report.Advice{
		{User: "alice", ContainerType: "notebook", Rule: report.RuleSlice, Suggestion: "1g.10gb", Judged: 6, Fit: 5,
			MemoryLimitBytes: 10 * gib, UtilizationLimitPercent: 100.0 / 7, GPUHoursFreed: 5 * 8 * (1 - 0.142857)},
		{User: "bob", ContainerType: "batch", Rule: report.RuleFewerGPUs, Suggestion: "1 GPU", Judged: 3, Fit: 1, GPUHoursFreed: 10},
		{User: "carol", ContainerType: "notebook", Rule: report.RuleSlice, Suggestion: "1g.10gb", Judged: 2, Fit: 1, Running: 1,
			MemoryLimitBytes: 10 * gib, UtilizationLimitPercent: 100.0 / 7, GPUHoursFreed: 4 * (1 - 0.142857)},
		{User: "dave", ContainerType: "batch", Rule: report.RuleSlice, Suggestion: "1g.10gb", Judged: 1, Fit: 1,
			MemoryLimitBytes: 10 * gib, UtilizationLimitPercent: 100.0 / 7, GPUHoursFreed: 3 * (1 - 1.0/7)},
		{User: "bob", ContainerType: "batch", Rule: report.RuleSmallerSlice, Suggestion: "1g.10gb", Judged: 3, Fit: 1,
			MemoryLimitBytes: 10 * gib, GPUHoursFreed: 6 * (0.428571 - 0.142857)},
	}
	exact := cmpopts.EquateApprox(0, 1e-6)

	// As the controller logs them (Go types), and as `gpuwarden report` reads them back
	// from the file (JSON numbers and lists).
	b := &report.Builder{Since: mon, Until: end}
	for i := range events {
		b.Add(&events[i])
	}
	if diff := cmp.Diff(want, b.Report(end).Advice, exact); diff != "" {
		t.Errorf("advice from the records as logged (-want +got):\n%s", diff)
	}
	files, err := audit.Files(testutil.AuditLog(t, events...))
	if err != nil {
		t.Fatal(err)
	}
	b = &report.Builder{Since: mon, Until: end}
	if _, err := audit.Read(context.Background(), files, audit.Filter{Until: end}, func(e *audit.Event) error { b.Add(e); return nil }); err != nil {
		t.Fatal(err)
	}
	r := b.Report(end)
	if diff := cmp.Diff(want, r.Advice, exact); diff != "" {
		t.Errorf("advice from the audit log (-want +got):\n%s", diff)
	}
	if got, want := r.Advice[0].String(), "5 of 6 runs fit a 1g.10gb slice (peak memory ≤ 10 GB, utilisation ≤ 14 %): 34.29 GPU-hours freed"; got != want {
		t.Errorf("alice's advice reads %q; want %q", got, want)
	}

	// Another default profile moves what whole-GPU runs of an unknown model are judged
	// against: dave's run fits a 2g.20gb slice too (2/7 of the GPU, ≤ 28 %).
	b = &report.Builder{Since: mon, Until: end, MIGProfile: "2g.20gb"}
	for i := range events {
		b.Add(&events[i])
	}
	got := b.Report(end).Advice
	i := slices.IndexFunc(got, func(a report.Advice) bool { return a.User == "dave" })
	if i < 0 || got[i].Suggestion != "2g.20gb" || got[i].MemoryLimitBytes != 20*gib || !cmp.Equal(got[i].GPUHoursFreed, 3*(1-2.0/7), exact) {
		t.Errorf("dave's advice with --mig-profile 2g.20gb: %+v", got)
	}
}

// A user's report holds only their own runs' advice, and none when every run needed what
// it held.
func TestRightSizeAdviceIsTheUsersOwn(t *testing.T) {
	mon := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	var events []audit.Event
	events = append(events, weekRun{user: "alice", containerType: "notebook", name: "a", devices: 1, eq: "1", model: h100,
		start: mon, hours: 3, peakMemory: gib, peakUtil: 1, busy: 1}.events(mon.Add(time.Hour))...)
	events = append(events, weekRun{user: "bob", containerType: "batch", name: "b", devices: 1, eq: "1", model: h100,
		start: mon.Add(time.Minute), hours: 3, peakMemory: 70 * gib, peakUtil: 90, busy: 1}.events(mon.Add(time.Hour))...)
	slices.SortStableFunc(events, func(a, b audit.Event) int { return a.Time.Compare(b.Time) })
	files, err := audit.Files(testutil.AuditLog(t, events...))
	if err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]int{"alice": 1, "bob": 0} {
		b := &report.Builder{Since: mon}
		if _, err := audit.Read(context.Background(), files, audit.Filter{User: user}, func(e *audit.Event) error { b.Add(e); return nil }); err != nil {
			t.Fatal(err)
		}
		got := b.Report(mon.AddDate(0, 0, 1)).Advice
		if len(got) != want || (want > 0 && (got[0].User != user || got[0].Judged != 1 || got[0].Fit != 1)) {
			t.Errorf("%s's own report's advice: %+v; want %d line of theirs", user, got, want)
		}
	}
}

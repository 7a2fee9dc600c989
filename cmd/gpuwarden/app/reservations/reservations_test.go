package reservations

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

// now is a Thursday noon: the week shown runs to Thursday 2026-12-10 12:00.
var now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func at(day, hour int) metav1.Time {
	return metav1.NewTime(time.Date(2026, 12, day, hour, 0, 0, 0, time.UTC))
}

func gpu(node string, index int32, uuid string, slices ...gpuwardenv1alpha1.MIGInstance) client.Object {
	g := &gpuwardenv1alpha1.GPU{ObjectMeta: metav1.ObjectMeta{Name: node + "-" + uuid, Labels: map[string]string{gpuwardenv1alpha1.LabelNode: node}},
		Spec: gpuwardenv1alpha1.GPUSpec{NodeName: node, Index: index}, Status: gpuwardenv1alpha1.GPUStatus{UUID: uuid, MIGInstances: slices}}
	if len(slices) > 0 {
		g.Status.MIGMode = gpuwardenv1alpha1.MIGEnabled
	}
	return g
}

func dev(index int32, uuid, profile string) gpuwardenv1alpha1.BoundDevice {
	return gpuwardenv1alpha1.BoundDevice{Index: index, UUID: uuid, MIGProfile: profile, Weight: resource.MustParse("1")}
}

type rsvOpt func(*gpuwardenv1alpha1.GPUReservation)

func rsv(name, node string, phase gpuwardenv1alpha1.ReservationPhase, start, end metav1.Time, opts ...rsvOpt) client.Object {
	one := int32(1)
	r := &gpuwardenv1alpha1.GPUReservation{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: gpuwardenv1alpha1.GPUReservationSpec{Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: strings.Split(name, "-")[0]}},
			NodeName: node, Request: gpuwardenv1alpha1.AllocationRequest{GPUs: &one}, Start: start, End: end,
			Repeat: gpuwardenv1alpha1.RepeatNone, Displace: gpuwardenv1alpha1.DisplaceWait},
		Status: gpuwardenv1alpha1.GPUReservationStatus{Phase: phase}}
	if phase == gpuwardenv1alpha1.ReservationAccepted || phase == gpuwardenv1alpha1.ReservationActive || phase == gpuwardenv1alpha1.ReservationEnded {
		r.Status.NodeName = node
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func withDevices(summary string, ds ...gpuwardenv1alpha1.BoundDevice) rsvOpt {
	return func(r *gpuwardenv1alpha1.GPUReservation) { r.Status.Devices, r.Status.DevicesSummary = ds, summary }
}

func repeatWeekly(r *gpuwardenv1alpha1.GPUReservation) {
	r.Spec.Repeat = gpuwardenv1alpha1.RepeatWeekly
}

func drained(r *gpuwardenv1alpha1.GPUReservation) {
	r.Spec.Subjects, r.Spec.Displace = nil, gpuwardenv1alpha1.DisplaceStop
}

func rejected(reason, message string) rsvOpt {
	return func(r *gpuwardenv1alpha1.GPUReservation) { r.Status.Reason, r.Status.Message = reason, message }
}

func group(name string) rsvOpt {
	return func(r *gpuwardenv1alpha1.GPUReservation) {
		r.Spec.Subjects = append(r.Spec.Subjects, gpuwardenv1alpha1.Subject{Kind: gpuwardenv1alpha1.SubjectGroup, Name: name})
	}
}

// cluster: gpu01 with GPUs 0 and 1 and GPU 4 in MIG slices, gpu02 with GPU 0; reservations
// of each kind on them.
func cluster() client.Reader {
	return fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(
		gpu("gpu01", 0, "GPU-0000"),
		gpu("gpu01", 1, "GPU-1111"),
		gpu("gpu01", 4, "GPU-4444",
			gpuwardenv1alpha1.MIGInstance{UUID: "MIG-4a", Profile: "3g.40gb", Weight: resource.MustParse("3")},
			gpuwardenv1alpha1.MIGInstance{UUID: "MIG-4b", Profile: "1g.10gb", Weight: resource.MustParse("1")}),
		gpu("gpu02", 0, "GPU-2000"),
		// A: Friday 08:00 to Saturday 18:00 on GPUs 0 and 1.
		rsv("alice-paper", "gpu01", gpuwardenv1alpha1.ReservationAccepted, at(4, 8), at(5, 18),
			withDevices("0,1", dev(0, "GPU-0000", ""), dev(1, "GPU-1111", "")), group("nlp-lab")),
		// B: today 14:00 to 18:00 on a 1g.10gb slice of GPU 4.
		rsv("carol-mig", "gpu01", gpuwardenv1alpha1.ReservationAccepted, at(3, 14), at(3, 18),
			withDevices("4:1g.10gb", dev(4, "MIG-4b", "1g.10gb"))),
		// C: on gpu02, Tuesday to noon; GPU 3 is no longer listed.
		rsv("frank-eval", "gpu02", gpuwardenv1alpha1.ReservationAccepted, at(8, 0), at(8, 12),
			withDevices("0,3", dev(0, "GPU-2000", ""), dev(3, "GPU-gone", ""))),
		// D: every Monday 06:00 to 10:00 since 2026-11-30, on GPU 1; first on 2026-11-30.
		// (December's day 0 is November 30.)
		rsv("lab-weekly", "gpu01", gpuwardenv1alpha1.ReservationActive, at(0, 6), at(0, 10), repeatWeekly,
			withDevices("1", dev(1, "GPU-1111", ""))),
		// E: maintenance of GPU 0 from Saturday 18:00 to Sunday 02:00, right after A.
		rsv("maint", "gpu01", gpuwardenv1alpha1.ReservationAccepted, at(5, 18), at(6, 2), drained,
			withDevices("0", dev(0, "GPU-0000", ""))),
		// Reserve nothing.
		rsv("dave-big", "", "", at(7, 0), at(7, 8)),
		rsv("erin-late", "gpu01", gpuwardenv1alpha1.ReservationRejected, at(5, 0), at(5, 12),
			rejected(gpuwardenv1alpha1.ReasonNoRoom, "1 GPU on gpu01: reserved in an overlapping window by alice-paper")),
		rsv("old-run", "gpu01", gpuwardenv1alpha1.ReservationEnded, at(1, 0), at(2, 0), withDevices("0", dev(0, "GPU-0000", ""))),
	).Build()
}

// rowOf is the row of the timeline labelled label under node's header.
func rowOf(t *testing.T, out, node, label string) string {
	t.Helper()
	in := false
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, node+" "):
			in = true
		case in && l == "":
			in = false
		case in && strings.HasPrefix(l, label+" ") && !strings.HasPrefix(strings.TrimPrefix(l, label+" "), " MIG"):
			return l
		}
	}
	t.Fatalf("no row %q of %s in:\n%s", label, node, out)
	return ""
}

// TestTimelineShowsEachReservationOnItsDevicesAndCells: a one-off on two GPUs, a weekly
// one, a MIG slice's and a drain in the cells of their windows; those that reserve
// nothing listed apart with why; ended ones left out.
func TestTimelineShowsEachReservationOnItsDevicesAndCells(t *testing.T) {
	var out bytes.Buffer
	o := &Options{now: func() time.Time { return now }}
	if err := o.Run(context.Background(), cluster(), &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	t.Logf("\n%s", s)
	//                              Thu    Fri    Sat    Sun    Mon    Tue    Wed    Thu
	for _, c := range []struct{ node, label, want string }{
		{"gpu01", "GPU 0", "   ... ..AAAA AAAA*E E..... ...... ...... ...... ..."},
		{"gpu01", "GPU 1", "   ... ..AAAA AAAAA. ...... .DD... ...... ...... ..."},
		{"gpu01", "GPU 4 MIG", "   ... ...... ...... ...... ...... ...... ...... ..."},
		{"gpu01", "  4:1g.10gb", "   BB. ...... ...... ...... ...... ...... ...... ..."},
		{"gpu02", "GPU 0", "   ... ...... ...... ...... ...... CCC... ...... ..."},
		{"gpu02", "GPU 3?", "   ... ...... ...... ...... ...... CCC... ...... ..."},
	} {
		if got := strings.TrimSpace(rowOf(t, s, c.node, c.label)[len(c.label):]); got != strings.TrimSpace(c.want) {
			t.Errorf("%s %s: %q, want %q", c.node, c.label, got, strings.TrimSpace(c.want))
		}
	}
	if strings.Contains(s, "3g.40gb") {
		t.Errorf("a slice no reservation names has a row:\n%s", s)
	}
	for _, want := range []string{
		"Thu    Fri    Sat    Sun    Mon    Tue    Wed    Thu",
		"12-03  12-04  12-05  12-06  12-07  12-08  12-09  12-10",
		"from Thu 2026-12-03 12:00 to Thu 2026-12-10 12:00 UTC",
		"?: a reserved device the node does not list",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("timeline lacks %q", want)
		}
	}
	legend := map[string][]string{
		"A  alice-paper": {"Accepted", "alice, group nlp-lab", "2026-12-04 08:00 - 12-05 18:00", "Wait", "gpu01 0,1"},
		"B  carol-mig":   {"Accepted", "carol", "2026-12-03 14:00-18:00", "gpu01 4:1g.10gb"},
		"C  frank-eval":  {"gpu02 0,3"},
		"D  lab-weekly":  {"Active", "lab", "weekly Mon 06:00-10:00", "gpu01 1"},
		"E  maint":       {"no one (drained)", "2026-12-05 18:00 - 12-06 02:00", "Stop", "gpu01 0"},
		"dave-big":       {"Pending", "dave", "2026-12-07 00:00-08:00", "1 GPU", "any", "not decided yet"},
		"erin-late":      {"Rejected", "erin", "gpu01", "NoRoom: 1 GPU on gpu01: reserved in an overlapping window by alice-paper"},
	}
	for start, wants := range legend {
		line := ""
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, start+" ") {
				line = l
			}
		}
		for _, w := range wants {
			if !strings.Contains(line, w) {
				t.Errorf("legend of %s lacks %q: %q", start, w, line)
			}
		}
	}
	if i, j := strings.Index(s, "Reserving nothing:"), strings.Index(s, "dave-big"); i < 0 || j < i {
		t.Errorf("pending reservation not under \"Reserving nothing\":\n%s", s)
	}
	if strings.Contains(s, "old-run") {
		t.Errorf("an ended reservation is shown without --all:\n%s", s)
	}

	out.Reset()
	o.All = true
	if err := o.Run(context.Background(), cluster(), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "old-run") || !strings.Contains(out.String(), "ended") {
		t.Errorf("--all lacks the ended reservation:\n%s", out.String())
	}
	if got := rowOf(t, out.String(), "gpu01", "GPU 0"); !strings.Contains(got, "..AAAA AAAA*E") {
		t.Errorf("--all: an ended reservation reserves nothing: %q", got)
	}
}

// TestNodeNarrowsToOneNode: --node shows that node's GPUs and reservations (and those for
// any node), its letters from A; a node with no GPU is an error naming those there are.
func TestNodeNarrowsToOneNode(t *testing.T) {
	var out bytes.Buffer
	o := &Options{Node: "gpu02", now: func() time.Time { return now }}
	if err := o.Run(context.Background(), cluster(), &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Contains(s, "gpu01 ") || strings.Contains(s, "alice-paper") || strings.Contains(s, "erin-late") {
		t.Errorf("--node gpu02 shows gpu01's:\n%s", s)
	}
	if got := rowOf(t, s, "gpu02", "GPU 0"); !strings.Contains(got, "AAA...") {
		t.Errorf("--node gpu02: frank-eval is not A: %q", got)
	}
	if !strings.Contains(s, "dave-big") {
		t.Errorf("--node gpu02 leaves out a pending reservation for any node:\n%s", s)
	}
	o.Node = "gpu09"
	err := o.Run(context.Background(), cluster(), &out)
	if err == nil || err.Error() != "no GPU node gpu09 (GPU nodes: gpu01, gpu02)" {
		t.Errorf("--node gpu09: %v", err)
	}
}

// TestJSON: -o json has each reservation's fields and windows in the week, and each
// GPU's (and reserved slice's) windows.
func TestJSON(t *testing.T) {
	var out bytes.Buffer
	o := &Options{Node: "gpu01", Output: "json", now: func() time.Time { return now }}
	if err := o.Run(context.Background(), cluster(), &out); err != nil {
		t.Fatal(err)
	}
	var tl Timeline
	if err := json.Unmarshal(out.Bytes(), &tl); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if !tl.From.Equal(now) || !tl.To.Equal(now.Add(7*24*time.Hour)) {
		t.Errorf("from %s to %s", tl.From, tl.To)
	}
	byName := map[string]Reservation{}
	var names []string
	for _, r := range tl.Reservations {
		byName[r.Name] = r
		names = append(names, r.Name)
	}
	if strings.Join(names, " ") != "alice-paper carol-mig dave-big erin-late lab-weekly maint" {
		t.Errorf("reservations: %v", names)
	}
	w := byName["lab-weekly"]
	if !w.Reserves || w.Mark != "C" || w.Phase != "Active" || w.Node != "gpu01" || w.Repeat != "Weekly" ||
		len(w.Subjects) != 1 || w.Subjects[0].Name != "lab" || len(w.Devices) != 1 || w.Devices[0].UUID != "GPU-1111" ||
		len(w.Windows) != 1 || !w.Windows[0].Start.Equal(at(7, 6).Time) || !w.Windows[0].End.Equal(at(7, 10).Time) {
		t.Errorf("lab-weekly: %+v", w)
	}
	if m := byName["maint"]; len(m.Subjects) != 0 || m.Subjects == nil || m.For != "no one (drained)" || m.Displace != "Stop" {
		t.Errorf("maint: %+v", m)
	}
	e := byName["erin-late"]
	if e.Reserves || e.Mark != "" || e.Phase != "Rejected" || e.Reason != "NoRoom" || !strings.Contains(e.Message, "alice-paper") ||
		len(e.Devices) != 0 || e.Devices == nil || len(e.Windows) != 1 {
		t.Errorf("erin-late: %+v", e)
	}
	if d := byName["dave-big"]; d.Phase != "Pending" || d.Node != "" || d.Request != "1 GPU" {
		t.Errorf("dave-big: %+v", d)
	}
	var rows []string
	for _, g := range tl.GPUs {
		rows = append(rows, g.Node+"/"+g.UUID)
		switch g.UUID {
		case "GPU-0000":
			if len(g.Windows) != 2 || g.Windows[0].Reservation != "alice-paper" || g.Windows[1].Reservation != "maint" || !g.Windows[1].Start.Equal(at(5, 18).Time) {
				t.Errorf("GPU 0: %+v", g)
			}
		case "MIG-4b":
			if g.Index != 4 || g.MIGProfile != "1g.10gb" || !g.Listed || len(g.Windows) != 1 || g.Windows[0].Reservation != "carol-mig" {
				t.Errorf("slice 4:1g.10gb: %+v", g)
			}
		case "GPU-4444":
			if g.Windows == nil || len(g.Windows) != 0 || !g.Listed {
				t.Errorf("GPU 4: %+v", g)
			}
		}
	}
	if strings.Join(rows, " ") != "gpu01/GPU-0000 gpu01/GPU-1111 gpu01/GPU-4444 gpu01/MIG-4b" {
		t.Errorf("rows: %v", rows)
	}
}

// TestUnknownOutput: -o other than json is refused, naming it, before anything is asked
// of the API server.
func TestUnknownOutput(t *testing.T) {
	o := &Options{Output: "yaml", now: func() time.Time { return now }}
	if err := o.Run(context.Background(), cluster(), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), `-o "yaml"`) {
		t.Errorf("-o yaml: %v", err)
	}
	cmd := NewCommand()
	cmd.SetArgs([]string{"-o", "wide", "--kubeconfig", "/nonexistent"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), `-o "wide"`) {
		t.Errorf("gpuwarden reservations -o wide: %v", err)
	}
}

// TestReleasedUnused: a window whose devices went back unused holds them no more from then:
// its cells are free, its legend says when.
func TestReleasedUnused(t *testing.T) {
	released := metav1.NewTime(now.Add(-time.Hour))
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(
		gpu("gpu01", 0, "GPU-0000"),
		rsv("gina-now", "gpu01", gpuwardenv1alpha1.ReservationActive, at(3, 8), at(3, 20), withDevices("0", dev(0, "GPU-0000", "")),
			func(r *gpuwardenv1alpha1.GPUReservation) { r.Status.ReleasedUnused = &released }),
	).Build()
	var out bytes.Buffer
	o := &Options{now: func() time.Time { return now }}
	if err := o.Run(context.Background(), c, &out); err != nil {
		t.Fatal(err)
	}
	if got := rowOf(t, out.String(), "gpu01", "GPU 0"); !strings.HasSuffix(got, "   ... ...... ...... ...... ...... ...... ...... ...") {
		t.Errorf("released window still on the timeline: %q", got)
	}
	if !strings.Contains(out.String(), "2026-12-03 08:00-20:00, released unused 12-03 11:00") {
		t.Errorf("legend lacks the release:\n%s", out.String())
	}
	out.Reset()
	o.Output = "json"
	if err := o.Run(context.Background(), c, &out); err != nil {
		t.Fatal(err)
	}
	var tl Timeline
	if err := json.Unmarshal(out.Bytes(), &tl); err != nil {
		t.Fatal(err)
	}
	if r := tl.Reservations[0]; r.ReleasedUnused == nil || !r.ReleasedUnused.Equal(released.Time) || len(r.Windows) != 1 || len(tl.GPUs[0].Windows) != 0 {
		t.Errorf("-o json: %s", out.String())
	}
}

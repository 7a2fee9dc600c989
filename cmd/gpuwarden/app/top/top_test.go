package top

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/overview"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

var now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// lab is a node gpu01 with two H100s and a third in MIG mode with one 1g.10gb instance:
// bob trains on GPU 0 (idle for 10 minutes under a 30-minute idle timeout and an 8-hour
// runtime limit), alice holds GPU 1 borrowed and is reserved it now, carol holds the slice,
// alice's second request waits first in the queue, and two reservations fall in the week.
func lab(t *testing.T) client.Reader {
	t.Helper()
	eighty := resource.MustParse("80Gi")
	gpu := func(i int32, mig bool) client.Object {
		g := &gpuwardenv1alpha1.GPU{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("gpu01-%d", i)},
			Spec:   gpuwardenv1alpha1.GPUSpec{NodeName: "gpu01", Index: i},
			Status: gpuwardenv1alpha1.GPUStatus{UUID: fmt.Sprintf("GPU-%d", i), Model: "NVIDIA H100 80GB HBM3", Memory: &eighty, Health: gpuwardenv1alpha1.HealthHealthy}}
		if mig {
			g.Status.MIGMode = gpuwardenv1alpha1.MIGEnabled
			g.Status.MIGInstances = []gpuwardenv1alpha1.MIGInstance{{UUID: "MIG-2a", Profile: "1g.10gb", GPUInstanceID: 9, Weight: resource.MustParse("0.142857")}}
		}
		return g
	}
	micro := func(t time.Time) *metav1.MicroTime { m := metav1.NewMicroTime(t); return &m }
	at := func(t time.Time) *metav1.Time { m := metav1.NewTime(t); return &m }
	bob := testutil.MakeAllocation("bob-train").User("bob").Node("gpu01").Container("train").Type("docker").
		Bound("GPU-0").GPUEquivalents("1").BoundAt(now.Add(-2 * time.Hour)).Created(now.Add(-2 * time.Hour)).Obj()
	bob.Status.Idle = &gpuwardenv1alpha1.IdleStatus{Since: micro(now.Add(-10 * time.Minute)), Samples: 10}
	bob.Status.Runtime = &gpuwardenv1alpha1.RuntimeStatus{Since: at(now.Add(-2 * time.Hour))}
	alice := testutil.MakeAllocation("alice-nb").User("alice").Node("gpu01").Container("nb").Type("docker").
		Bound("GPU-1").GPUEquivalents("1").BoundAt(now.Add(-time.Hour)).Created(now.Add(-time.Hour)).Obj()
	alice.Status.Borrowed = true
	carol := testutil.MakeAllocation("carol-mig").User("carol").Node("gpu01").Container("small").
		BoundDevices(gpuwardenv1alpha1.BoundDevice{Index: 2, UUID: "MIG-2a", MIGProfile: "1g.10gb", Weight: resource.MustParse("0.142857")}).
		Phase(gpuwardenv1alpha1.PhaseBound).GPUEquivalents("0.142857").Obj()
	waiting := testutil.MakeAllocation("alice-wait").User("alice").Node("gpu01").Container("next").GPUs(1).
		Phase(gpuwardenv1alpha1.PhasePending).Reason(gpuwardenv1alpha1.ReasonNoCapacity).Created(now.Add(-15 * time.Minute)).Obj()
	waiting.Status.Queue = &gpuwardenv1alpha1.QueueStatus{Position: 1, EstimatedStart: at(now.Add(6 * time.Hour)), LatestStart: at(now.Add(6 * time.Hour)), BlockedBy: "bob-train"}
	rsv := func(name string, who []gpuwardenv1alpha1.Subject, device string, start, end time.Time) client.Object {
		return &gpuwardenv1alpha1.GPUReservation{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: gpuwardenv1alpha1.GPUReservationSpec{Subjects: who, NodeName: "gpu01", Start: metav1.NewTime(start), End: metav1.NewTime(end),
				Request: gpuwardenv1alpha1.AllocationRequest{Devices: []string{device}}, Displace: gpuwardenv1alpha1.DisplaceWait},
			Status: gpuwardenv1alpha1.GPUReservationStatus{Phase: gpuwardenv1alpha1.ReservationAccepted, NodeName: "gpu01", DevicesSummary: "gpu01 " + device,
				Devices: []gpuwardenv1alpha1.BoundDevice{{Index: 1, UUID: "GPU-" + device}}}}
	}
	quota := testutil.MakeQuota("lab").Users("alice", "bob", "carol").GPUEquivalents("4").Obj()
	quota.Status.Usage = []gpuwardenv1alpha1.UserUsage{
		{User: "alice", Budget: &gpuwardenv1alpha1.BudgetUsage{UsedGPUHours: "12.5", GPUHours: "100", Window: "30d"}},
		{User: "bob"}, {User: "carol"},
	}
	policy := testutil.MakePolicy("lab").IdleTimeout(30 * time.Minute).MaxRuntime(8 * time.Hour).Obj()
	return fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(
		gpu(0, false), gpu(1, false), gpu(2, true), bob, alice, carol, waiting,
		rsv("alice-now", []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: "alice"}}, "1", now.Add(-time.Hour), now.Add(3*time.Hour)),
		rsv("drain", nil, "0", now.Add(48*time.Hour), now.Add(52*time.Hour)),
		quota, policy,
	).Build()
}

// metricsServer serves dcgm-exporter's series for GPUs 0 and 1 of gpu01.
func metricsServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-0",Hostname="gpu01"} 3
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-1",Hostname="gpu01"} 97
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-0"} 40960
DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-1"} 1024
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-0"} 40960
DCGM_FI_DEV_FB_FREE{gpu="1",UUID="GPU-1"} 80896
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-0"} 41
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-0"} 212.4
`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

func run(t *testing.T, o *Options) string {
	t.Helper()
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	o.now = func() time.Time { return now }
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := o.Run(context.Background(), lab(t), &out); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestOncePrintsEverySectionAsPlainText: --once is the GPUs with their readings, holders,
// idle and stop times, the queue, the week's reservations and the users, as plain text
// without escape codes, times in RFC 3339 and durations.
func TestOncePrintsEverySectionAsPlainText(t *testing.T) {
	m := metricsServer(t)
	got := run(t, &Options{Once: true, Metrics: m, Sort: "node"})
	want := `gpuwarden top  2026-12-03T12:00:00Z  every node  sorted by node
readings of node gpu01 from ` + m + `

GPUS
NODE   GPU        MODEL                  UTIL  MEMORY         TEMP  POWER  USER         CONTAINER  ALLOCATION  STATE                          IDLE  WARN IN  STOP IN  RUNTIME LEFT
gpu01  0          NVIDIA H100 80GB HBM3  3%    40.0Gi/80.0Gi  41C   212W   bob          train      bob-train   -                              10m   -        20m      6h0m
gpu01  1          NVIDIA H100 80GB HBM3  97%   1.0Gi/80.0Gi   -     -      alice        nb         alice-nb    borrowed, reserved: alice-now  -     -        -        -
gpu01  2 MIG      NVIDIA H100 80GB HBM3  -     -/80.0Gi       -     -      (instances)  -          -           -                              -     -        -        -
gpu01  2:1g.10gb  NVIDIA H100 80GB HBM3  -     -              -     -      carol        small      carol-mig   -                              -     -        -        -

QUEUE
NODE   PLACE  NAME        USER   REQUEST  WAITING  ESTIMATE              LATEST                WHY
gpu01  1      alice-wait  alice  1 GPU    15m      2026-12-03T18:00:00Z  2026-12-03T18:00:00Z  capacity: until bob-train ends

RESERVATIONS (THIS WEEK)
NAME       PHASE          FOR               START                 END                   NODE   DEVICES  REPEAT  DISPLACE
alice-now  Accepted (on)  alice             2026-12-03T11:00:00Z  2026-12-03T15:00:00Z  gpu01  gpu01 1  once    Wait
drain      Accepted       no one (drained)  2026-12-05T12:00:00Z  2026-12-05T16:00:00Z  gpu01  gpu01 0  once    Wait

USERS
USER   HELD  QUOTA  CONTAINERS  BORROWED  WAITING  BUDGET USED
alice  1     4      1           1         1        12.5/100 GPU-h per 30d
bob    1     4      1           0         0        -
carol  0.14  4      1           0         0        -
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("--once (-want,+got):\n%s", diff)
	}
	if strings.Contains(got, "\x1b") {
		t.Errorf("--once has escape codes:\n%q", got)
	}
}

// TestJSONIsTheSnapshot: -o json is one JSON document, the snapshot overview builds, and
// --once is implied.
func TestJSONIsTheSnapshot(t *testing.T) {
	got := run(t, &Options{Output: "json", Metrics: "0", Sort: "node"})
	var s overview.Snapshot
	dec := json.NewDecoder(strings.NewReader(got))
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("-o json: %v\n%s", err, got)
	}
	if dec.More() {
		t.Errorf("-o json is more than one document:\n%s", got)
	}
	in, err := overview.Read(context.Background(), lab(t))
	if err != nil {
		t.Fatal(err)
	}
	want := overview.Build(in, "", now)
	// Through JSON and back, as the document was.
	b, _ := json.Marshal(want)
	want = overview.Snapshot{}
	_ = json.Unmarshal(b, &want)
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("-o json (-want,+got):\n%s", diff)
	}
	if len(s.Devices) != 4 || s.Devices[0].Holder == nil || s.Devices[0].Holder.Container != "train" ||
		len(s.Queue) != 1 || s.Queue[0].Name != "alice-wait" || len(s.Reservations) != 2 || len(s.Users) != 3 || s.Readings != "" {
		t.Errorf("-o json:\n%s", got)
	}
}

// TestUserFilterAndSort: --user keeps that user's devices, queued requests, the
// reservations for them and their row; --sort orders the GPUs.
func TestUserFilterAndSort(t *testing.T) {
	var s overview.Snapshot
	if err := json.Unmarshal([]byte(run(t, &Options{Output: "json", Metrics: metricsServer(t), User: "alice", Sort: "node"})), &s); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range s.Devices {
		names = append(names, d.GPU+"/"+d.Profile+"/"+d.Holder.User)
	}
	for _, b := range s.Reservations {
		names = append(names, "rsv "+b.Name)
	}
	for _, w := range s.Queue {
		names = append(names, "queue "+w.Name)
	}
	for _, u := range s.Users {
		names = append(names, "user "+u.Name)
	}
	if diff := cmp.Diff([]string{"gpu01-1//alice", "rsv alice-now", "queue alice-wait", "user alice"}, names); diff != "" {
		t.Errorf("--user alice (-want,+got):\n%s", diff)
	}

	order := func(sort string) []string {
		var s overview.Snapshot
		if err := json.Unmarshal([]byte(run(t, &Options{Output: "json", Metrics: metricsServer(t), Sort: sort})), &s); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range s.Devices {
			out = append(out, deviceName(d))
		}
		return out
	}
	for sort, want := range map[string][]string{
		"node":   {"0", "1", "2 MIG", "2:1g.10gb"},
		"user":   {"1", "0", "2:1g.10gb", "2 MIG"}, // alice, bob, carol, no one
		"util":   {"1", "0", "2 MIG", "2:1g.10gb"}, // 97%, 3%, unknown
		"memory": {"0", "1", "2 MIG", "2:1g.10gb"}, // 40Gi, 1Gi, unknown
	} {
		if diff := cmp.Diff(want, order(sort)); diff != "" {
			t.Errorf("--sort %s (-want,+got):\n%s", sort, diff)
		}
	}
	once := run(t, &Options{Once: true, Metrics: "", User: "bob", Sort: "util"})
	if strings.Contains(once, "alice") || !strings.Contains(once, "bob-train") || !strings.Contains(once, "Nothing waits for GPUs.") ||
		!strings.Contains(once, "user bob  sorted by util") || !strings.Contains(once, "readings: none") {
		t.Errorf("--once --user bob --sort util:\n%s", once)
	}
}

// TestReadingsUnavailableStillShowsTheRest: when the node's metrics cannot be read, top
// says so and shows the holders, queue and reservations all the same.
func TestReadingsUnavailableStillShowsTheRest(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	got := run(t, &Options{Once: true, Metrics: srv.URL + "/metrics", Sort: "node"})
	if l := lacks(got, "readings unavailable: reading the GPUs' metrics", "bob-train", "alice-wait", "alice-now", "USERS"); len(l) > 0 {
		t.Errorf("--once without metrics lacks %q:\n%s", l, got)
	}
}

// TestFlagsAreChecked: each bad flag is refused naming it.
func TestFlagsAreChecked(t *testing.T) {
	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"yaml":           {Options{Output: "yaml"}, `-o "yaml"`},
		"wide":           {Options{Output: "wide"}, `-o "wide"`},
		"unknown sort":   {Options{Sort: "temperature"}, `--sort "temperature": sort by node, user, util, memory`},
		"quick interval": {Options{Interval: 100 * time.Millisecond}, "--interval 100ms: must be at least 500ms"},
		"metrics path":   {Options{Metrics: "127.0.0.1:9402"}, `--metrics "127.0.0.1:9402"`},
	} {
		t.Run(name, func(t *testing.T) {
			o := Options{Sort: "node", Interval: time.Second, Metrics: DefaultMetrics}
			if tc.o.Output != "" {
				o.Output = tc.o.Output
			}
			if tc.o.Sort != "" {
				o.Sort = tc.o.Sort
			}
			if tc.o.Interval != 0 {
				o.Interval = tc.o.Interval
			}
			if tc.o.Metrics != "" {
				o.Metrics = tc.o.Metrics
			}
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
	for _, m := range []string{"", "0", DefaultMetrics} {
		if err := (&Options{Sort: "node", Interval: time.Second, Metrics: m}).Validate(); err != nil {
			t.Errorf("--metrics %q: %v", m, err)
		}
	}
	// The live view needs a terminal.
	var out bytes.Buffer
	o := &Options{Sort: "node", Interval: time.Second}
	if err := o.Run(context.Background(), lab(t), &out); err == nil || !strings.Contains(err.Error(), "--once") {
		t.Errorf("the live view into a buffer: %v", err)
	}
}

// key is a key press.
func key(s string) tea.KeyMsg {
	switch s {
	case "ctrl+c":
		return tea.KeyMsg{Type: tea.KeyCtrlC}
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
}

func quits(cmd tea.Cmd) bool {
	if cmd == nil {
		return false
	}
	_, ok := cmd().(tea.QuitMsg)
	return ok
}

// loaded is a model that has read the lab once.
func loaded(t *testing.T) *model {
	t.Helper()
	c := lab(t)
	o := &Options{Sort: "node", now: func() time.Time { return now }}
	m := newModel(func(ctx context.Context) (overview.Snapshot, error) { return o.snapshot(ctx, c) }, o.filter(), time.Second)
	msg := m.Init()()
	if _, cmd := m.Update(msg); cmd == nil {
		t.Fatal("no next refresh after a snapshot")
	}
	return m
}

// TestKeysQuitSortAndFilter: q and Ctrl-C quit; s cycles the sort; u cycles through the
// users seen and back to everyone, a and Esc show everyone; ? shows the keys.
func TestKeysQuitSortAndFilter(t *testing.T) {
	for _, k := range []string{"q", "ctrl+c"} {
		m := loaded(t)
		if _, cmd := m.Update(key(k)); !quits(cmd) {
			t.Errorf("%s does not quit", k)
		}
	}
	m := loaded(t)
	if _, cmd := m.Update(key("x")); quits(cmd) {
		t.Error("x quits")
	}
	var seen []string
	for range 4 {
		m.Update(key("u"))
		seen = append(seen, m.filter.user)
	}
	if diff := cmp.Diff([]string{"alice", "bob", "carol", ""}, seen); diff != "" {
		t.Errorf("u cycles (-want,+got):\n%s", diff)
	}
	m.Update(key("u"))
	m.Update(key("u"))
	v := m.View()
	if !strings.Contains(v, "user bob") || strings.Contains(v, "alice-nb") || !strings.Contains(v, "bob-train") {
		t.Errorf("after u u, the view shows bob's part only:\n%s", v)
	}
	for _, k := range []string{"a", "esc"} {
		m.Update(key("u"))
		m.Update(key(k))
		if m.filter.user != "" || !strings.Contains(m.View(), "alice-nb") {
			t.Errorf("%s does not show everyone: %q", k, m.filter.user)
		}
	}
	var sorted []string
	for range 4 {
		m.Update(key("s"))
		sorted = append(sorted, m.filter.sort)
	}
	if diff := cmp.Diff([]string{"user", "util", "memory", "node"}, sorted); diff != "" {
		t.Errorf("s cycles (-want,+got):\n%s", diff)
	}
	if strings.Contains(m.View(), "q quit") {
		t.Error("the keys are shown before ?")
	}
	m.Update(key("?"))
	if !strings.Contains(m.View(), "q quit") {
		t.Errorf("? does not show the keys:\n%s", m.View())
	}
}

// TestWindowSizeDropsColumnsAndLines: a narrow terminal drops columns rather than wrap (the
// holder stays), a short one cuts lines and says so.
func TestWindowSizeDropsColumnsAndLines(t *testing.T) {
	m := loaded(t)
	wide := m.View()
	if !strings.Contains(wide, "RUNTIME LEFT") || !strings.Contains(wide, "NVIDIA H100") {
		t.Errorf("before any size, every column:\n%s", wide)
	}
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 60})
	v := m.View()
	for _, l := range strings.Split(v, "\n") {
		if w := len([]rune(l)); w > 80 {
			t.Errorf("a line of %d characters in an 80-column terminal: %q", w, l)
		}
	}
	if l := lacks(v, "GPU", "USER", "bob", "alice", "carol", "UTIL", "alice-wait", "alice-now"); len(l) > 0 {
		t.Errorf("at 80 columns the view lacks %q:\n%s", l, v)
	}
	if strings.Contains(v, "NVIDIA H100") {
		t.Errorf("at 80 columns the model is still shown:\n%s", v)
	}
	m.Update(tea.WindowSizeMsg{Width: 160, Height: 10})
	v = m.View()
	if n := strings.Count(v, "\n") + 1; n > 10 || !strings.Contains(v, "more lines") {
		t.Errorf("%d lines in a 10-line terminal:\n%s", n, v)
	}
}

// TestAPIErrorIsShownAndRetried: an error reading the API server is shown in the view with
// the last snapshot kept, and the next refresh is still scheduled; the next success clears it.
func TestAPIErrorIsShownAndRetried(t *testing.T) {
	m := loaded(t)
	_, cmd := m.Update(snapshotMsg{err: errors.New("connection refused"), at: now})
	if cmd == nil {
		t.Fatal("no retry after an error")
	}
	v := m.View()
	if l := lacks(v, "cannot read the API server", "connection refused", "retrying every 1s", "bob-train"); len(l) > 0 {
		t.Errorf("after an error the view lacks %q:\n%s", l, v)
	}
	if _, ok := cmd().(tickMsg); !ok {
		t.Fatal("the retry is not a tick")
	}
	m.Update(m.refresh())
	if strings.Contains(m.View(), "connection refused") {
		t.Errorf("the error stays after a good read:\n%s", m.View())
	}
	empty := newModel(func(context.Context) (overview.Snapshot, error) { return overview.Snapshot{}, errors.New("forbidden") }, filter{sort: "node"}, time.Second)
	empty.Update(empty.Init()())
	if !strings.Contains(empty.View(), "forbidden") {
		t.Errorf("an error before any snapshot:\n%s", empty.View())
	}
}

func lacks(s string, wants ...string) []string {
	var out []string
	for _, w := range wants {
		if !strings.Contains(s, w) {
			out = append(out, w)
		}
	}
	return slices.Clip(out)
}

// TestNamesCannotDriveTheTerminal: a container name a user wrote into their allocation's
// spec (any text, with kubectl) is shown with its control characters escaped, in --once and
// in the terminal view.
func TestNamesCannotDriveTheTerminal(t *testing.T) {
	hostile := "x\x1b]0;owned\x07\x1b[2J\u202eevil"
	a := testutil.MakeAllocation("mallory-1").User("mallory").Node("gpu01").Container(hostile).Type("docker").
		Bound("GPU-0").GPUEquivalents("1").BoundAt(now.Add(-time.Minute)).Obj()
	a.Status.ContainerName = ""
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(a, &gpuwardenv1alpha1.GPU{ObjectMeta: metav1.ObjectMeta{Name: "gpu01-0"},
		Spec: gpuwardenv1alpha1.GPUSpec{NodeName: "gpu01"}, Status: gpuwardenv1alpha1.GPUStatus{UUID: "GPU-0"}}).Build()
	o := &Options{Once: true, Sort: "node", Interval: DefaultInterval, now: func() time.Time { return now }}
	var out bytes.Buffer
	if err := o.Run(context.Background(), c, &out); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out.String(), "\x1b\x07\u202e") || !strings.Contains(out.String(), `x\x1b]0;owned\a\x1b[2J\u202eevil`) {
		t.Errorf("--once wrote the name's control characters, or not escaped:\n%q", out.String())
	}
	for _, l := range (look{}).render(sections(overview.Build(overview.Input{Allocations: []gpuwardenv1alpha1.GPUAllocation{*a},
		GPUs: []gpuwardenv1alpha1.GPU{{Spec: gpuwardenv1alpha1.GPUSpec{NodeName: "gpu01"}, Status: gpuwardenv1alpha1.GPUStatus{UUID: "GPU-0"}}}}, "", now), now), 200) {
		if strings.ContainsAny(l, "\x1b\x07\u202e") {
			t.Errorf("the terminal view's line %q", l)
		}
	}
}

// TestNonFiniteReadingsAreDrawn: a reading that is not a number (a node's /metrics says NaN
// or Inf; --metrics may name any endpoint) is drawn without a bar, not a panic.
func TestNonFiniteReadingsAreDrawn(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	used, total := int64(1<<30), int64(80<<30)
	s := overview.Snapshot{Time: now, Devices: []overview.Device{
		{Node: "gpu01", Index: 0, UUID: "GPU-0", UtilizationPercent: &nan, MemoryUsedBytes: &used, MemoryTotalBytes: &total},
		{Node: "gpu01", Index: 1, UUID: "GPU-1", UtilizationPercent: &inf},
	}}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("drawing a NaN reading panicked: %v", r)
		}
	}()
	lines := live.render(sections(s, now), 200)
	if len(lines) == 0 {
		t.Fatal("nothing drawn")
	}
}

// TestErrorsCannotDriveTheTerminal: the API server's error is shown with its control
// characters escaped, as every other text from outside is.
func TestErrorsCannotDriveTheTerminal(t *testing.T) {
	m := loaded(t)
	m.Update(snapshotMsg{err: errors.New("bad \x1b]0;owned\x07\x1b[2J"), at: now})
	if v := m.View(); strings.Contains(v, "\x1b]0;") || strings.Contains(v, "\x07") || !strings.Contains(v, `bad \x1b]0;owned\a\x1b[2J`) {
		t.Errorf("the error's control characters reached the terminal, or were not shown escaped:\n%q", v)
	}
}

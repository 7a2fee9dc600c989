package statuspage

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/overview"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

const hostile = `<script>alert(1)</script>`

var now = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC) // a Monday

func gpu(i int32, uuid string) *gpuwardenv1alpha1.GPU {
	mem := resource.MustParse("80Gi")
	return &gpuwardenv1alpha1.GPU{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu01-gpu" + string(rune('0'+i))},
		Spec:       gpuwardenv1alpha1.GPUSpec{NodeName: "gpu01", Index: i},
		Status:     gpuwardenv1alpha1.GPUStatus{UUID: uuid, Model: "NVIDIA H100 80GB HBM3", Memory: &mem, Health: gpuwardenv1alpha1.HealthHealthy},
	}
}

// objects: bob holds GPU 0 through a container with a hostile name, alice waits first in
// the queue, and a reservation for alice starts tomorrow.
func objects() []client.Object {
	bound := testutil.MakeAllocation("bob-train").User("bob").Node("gpu01").GPUs(1).Container(hostile).
		Phase(gpuwardenv1alpha1.PhaseBound).Bound("GPU-0").GPUEquivalents("1").BoundAt(now.Add(-2 * time.Hour)).Obj()
	bound.Status.ContainerName = hostile
	waiting := testutil.MakeAllocation("alice-next").User("alice").Node("gpu01").GPUs(1).Created(now.Add(-10 * time.Minute)).
		Phase(gpuwardenv1alpha1.PhasePending).Reason(gpuwardenv1alpha1.ReasonNoCapacity).Obj()
	waiting.Status.Queue = &gpuwardenv1alpha1.QueueStatus{Position: 1, BlockedBy: "bob-train",
		EstimatedStart: &metav1.Time{Time: now.Add(time.Hour)}, LatestStart: &metav1.Time{Time: now.Add(3 * time.Hour)}}
	start := now.Add(24 * time.Hour)
	rsv := &gpuwardenv1alpha1.GPUReservation{
		ObjectMeta: metav1.ObjectMeta{Name: "alice-deadline"},
		Spec: gpuwardenv1alpha1.GPUReservationSpec{Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: "alice"}},
			NodeName: "gpu01", Request: gpuwardenv1alpha1.AllocationRequest{Devices: []string{"1"}},
			Start: metav1.Time{Time: start}, End: metav1.Time{Time: start.Add(4 * time.Hour)}},
		Status: gpuwardenv1alpha1.GPUReservationStatus{Phase: gpuwardenv1alpha1.ReservationAccepted},
	}
	return []client.Object{gpu(0, "GPU-0"), gpu(1, "GPU-1"), bound, waiting, rsv}
}

// readings is a registry with GPU 0's dcgm-exporter series.
func readings(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	for name, v := range map[string]float64{"DCGM_FI_DEV_GPU_UTIL": 97, "DCGM_FI_DEV_FB_USED": 40960, "DCGM_FI_DEV_FB_FREE": 40960, "DCGM_FI_DEV_GPU_TEMP": 71} {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: name, ConstLabels: prometheus.Labels{"UUID": "GPU-0", "gpu": "0"}})
		g.Set(v)
		reg.MustRegister(g)
	}
	return reg
}

func newTestPage(t *testing.T, objs ...client.Object) *Page {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).Build()
	p, err := newPage(Options{Reader: c, Gatherer: readings(t), Node: "gpu01", Location: time.UTC, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}

func get(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(method, target, nil)
	r.Host = "127.0.0.1:9404"
	h.ServeHTTP(rec, r)
	return rec
}

// TestOtherHostNamesAreRefused: a request for another name than an address, localhost or
// this machine's (a web site rebinding its name to 127.0.0.1, read through a browser here)
// gets nothing; a tunnel's, a proxy's and the machine's own names do.
func TestOtherHostNamesAreRefused(t *testing.T) {
	p := newTestPage(t)
	p.o.Hosts = []string{"gpu01.lab.example.org", "gpu01"}
	h := p.Handler()
	for host, want := range map[string]int{
		"127.0.0.1:9404": http.StatusOK, "[::1]:9404": http.StatusOK, "localhost:9404": http.StatusOK, "LOCALHOST.": http.StatusOK,
		"10.1.2.3": http.StatusOK, "gpu01:9404": http.StatusOK, "GPU01.lab.example.org": http.StatusOK,
		"evil.example.com:9404": http.StatusMisdirectedRequest, "127.0.0.1.nip.io:9404": http.StatusMisdirectedRequest, "": http.StatusMisdirectedRequest,
	} {
		for _, path := range []string{"/", "/status.json", "/static/page.js"} {
			rec := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, path, nil)
			r.Host = host
			h.ServeHTTP(rec, r)
			if rec.Code != want {
				t.Errorf("Host %q %s: %d, want %d: %s", host, path, rec.Code, want, rec.Body)
			}
			if want != http.StatusOK && !strings.HasPrefix(rec.Body.String(), "the status page answers requests for an address") {
				t.Errorf("Host %q %s: the answer does not say why: %s", host, path, rec.Body)
			}
		}
	}
}

// TestPageRendersEverythingWithoutJavaScript: the HTML alone names the holders, the
// queue, the reservation and the users, with the hostile container name escaped.
func TestPageRendersEverythingWithoutJavaScript(t *testing.T) {
	p := newTestPage(t, objects()...)
	rec := get(t, p.Handler(), http.MethodGet, "/")
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	for _, want := range []string{
		"<h1 id=\"title\">GPUs on gpu01</h1>", "GPU 0", "GPU 1", "NVIDIA H100 80GB HBM3",
		`<dd class="user">bob</dd>`, "bob-train", "&lt;script&gt;alert(1)&lt;/script&gt;", // the holder, escaped
		"97 %", "40.0 GiB of 80.0 GiB", "71 °C", `aria-label="Utilisation 97 %"`, "Utilisation over the last hour: now 97 %",
		"<td>alice-next</td><td>alice</td>", "capacity: until bob-train ends", "11:00 (in 1h0m)", // the queue
		"Tue 8 Dec", "alice-deadline", "10:00–14:00", // the week's calendar
		`<th scope="row">bob</th>`, `<th scope="row">alice</th>`, "1 held, 1 free, 1 waiting",
		`<script src="/static/page.js" defer></script>`, `<link rel="stylesheet" href="/static/page.css">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, hostile) {
		t.Errorf("the hostile container name is in the page unescaped")
	}
	if strings.Contains(body, "style=") || strings.Contains(body, "<script>") || strings.Contains(body, "onclick") {
		t.Errorf("the page has inline style or script, which its Content-Security-Policy forbids")
	}
}

func TestHeadersAndMethods(t *testing.T) {
	p := newTestPage(t, objects()...)
	h := p.Handler()
	for _, path := range []string{"/", "/status.json", "/static/page.css", "/static/page.js", "/nowhere"} {
		rec := get(t, h, http.MethodGet, path)
		for k, want := range map[string]string{
			"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
		} {
			if got := rec.Header().Get(k); got != want {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, want)
			}
		}
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.HasPrefix(csp, "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	if rec := get(t, h, http.MethodGet, "/static/page.js"); rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Type"), "javascript") {
		t.Errorf("GET /static/page.js = %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	for _, path := range []string{"/nowhere", "/static/", "/static/page.html.missing", "/static/page.html"} {
		if rec := get(t, h, http.MethodGet, path); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, rec.Code)
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		for _, path := range []string{"/", "/events", "/status.json"} {
			rec := get(t, h, m, path)
			if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s = %d (Allow %q), want 405", m, path, rec.Code, rec.Header().Get("Allow"))
			}
		}
	}
	if rec := get(t, h, http.MethodHead, "/"); rec.Code != http.StatusOK {
		t.Errorf("HEAD / = %d", rec.Code)
	}
}

func TestUserFilter(t *testing.T) {
	p := newTestPage(t, objects()...)
	h := p.Handler()
	body := get(t, h, http.MethodGet, "/?user=ali").Body.String()
	if strings.Contains(body, `<dd class="user">bob</dd>`) || !strings.Contains(body, "alice-next") || !strings.Contains(body, `value="ali"`) {
		t.Errorf("?user=ali shows bob's GPU or not alice's request")
	}
	for _, q := range []string{"?user=" + strings.Repeat("a", 65), "?user=%00x"} {
		if rec := get(t, h, http.MethodGet, "/"+q); rec.Code != http.StatusBadRequest {
			t.Errorf("GET /%s = %d, want 400", q, rec.Code)
		}
	}
	// A hostile filter is escaped where the page repeats it.
	body = get(t, h, http.MethodGet, "/?user=%3Cscript%3E").Body.String()
	if strings.Contains(body, "<script>") {
		t.Errorf("the filter is in the page unescaped")
	}
}

func TestJSON(t *testing.T) {
	p := newTestPage(t, objects()...)
	rec := get(t, p.Handler(), http.MethodGet, "/status.json")
	var v View
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("GET /status.json: %v\n%s", err, rec.Body)
	}
	if len(v.Devices) != 2 || v.Devices[0].Holder == nil || v.Devices[0].Holder.Container != hostile || len(v.Queue) != 1 || len(v.Days) != 7 {
		t.Errorf("the JSON view: %+v", v)
	}
	if strings.Contains(rec.Body.String(), "<script>") {
		t.Errorf("the JSON carries < unescaped: %s", rec.Body)
	}
}

// TestEventsStreamSnapshots: /events sends the view at once, and again at the next
// snapshot.
func TestEventsStreamSnapshots(t *testing.T) {
	p := newTestPage(t, objects()...)
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan View, 4)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var v View
				if err := json.Unmarshal([]byte(data), &v); err == nil {
					events <- v
				}
			}
		}
		close(events)
	}()
	first := <-events
	if len(first.Devices) != 2 || first.Devices[0].Holder == nil || first.Devices[0].Holder.User != "bob" {
		t.Fatalf("the first event: %+v", first)
	}
	// Bob's container goes: the next snapshot shows GPU 0 free.
	s := *p.snapshot.Load()
	s.Devices = append([]overview.Device(nil), s.Devices...)
	s.Devices[0].Holder = nil
	p.record(s)
	select {
	case next := <-events:
		if next.Devices[0].Holder != nil {
			t.Errorf("the next event still shows a holder on GPU 0")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event after a new snapshot")
	}
}

// TestEventsAreBounded: one stream more than MaxStreams is refused with 503.
func TestEventsAreBounded(t *testing.T) {
	p := newTestPage(t, objects()...)
	p.streams = make(chan struct{}, 1)
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	first, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Body.Close()
	second, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a stream beyond the bound = %d, want 503", second.StatusCode)
	}
}

// TestUsageFromTheAuditLog: the last 30 days per user, from the audit log's records.
func TestUsageFromTheAuditLog(t *testing.T) {
	log := testutil.AuditLog(t,
		audit.Event{Time: now.Add(-3 * time.Hour), Type: audit.TypeGPUAllocate, User: "bob", Details: map[string]any{"allocation": "bob-train", "gpu_equivalents": 1.0}},
		audit.Event{Time: now.Add(-1 * time.Hour), Type: audit.TypeGPURelease, User: "bob", Details: map[string]any{"allocation": "bob-train"}},
	)
	p := newTestPage(t, objects()...)
	p.o.AuditLog = log
	if err := p.readUsage(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, _ := p.view("")
	if len(v.Usage.Rows) != 1 || v.Usage.Rows[0].User != "bob" || v.Usage.Rows[0].Allocated != "2.0" {
		t.Errorf("usage rows: %+v (note %q)", v.Usage.Rows, v.Usage.Note)
	}
	p.o.AuditLog = filepath.Join(t.TempDir(), "missing", "events.jsonl")
	_ = p.readUsage(context.Background())
	if v, _ := p.view(""); len(v.Usage.Rows) != 0 {
		t.Errorf("usage from a missing log: %+v", v.Usage)
	}
}

// TestBindFailureNamesTheFlag: a port in use fails New with the flag and the address.
func TestBindFailureNamesTheFlag(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).Build()
	_, err = New(Options{Addr: l.Addr().String(), Reader: c})
	if err == nil || !strings.Contains(err.Error(), "--web-bind-address "+l.Addr().String()) {
		t.Fatalf("New on a port in use: %v", err)
	}
	p, err := New(Options{Addr: "127.0.0.1:0", Reader: c, Gatherer: prometheus.NewRegistry(), Refresh: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	testutil.Eventually(t, 5*time.Second, "the page served", func() bool {
		resp, err := http.Get("http://" + p.Addr().String() + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Start: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return after its context ended")
	}
}

func TestSparkline(t *testing.T) {
	var s series
	util := func(v float64) *float64 { return &v }
	for i := range 200 {
		s.add(overviewDevice(util(float64(i%100))), now.Add(time.Duration(i)*sampleEvery))
	}
	if len(s.points) > maxPoints+1 {
		t.Errorf("%d points kept, want at most %d", len(s.points), maxPoints+1)
	}
	sp := s.spark(func(p point) (float64, bool) { return p.util, p.hasUtil }, "Utilisation")
	if n := len(strings.Fields(sp.Points)); n < maxPoints-1 || n > maxPoints+1 {
		t.Errorf("%d points drawn", n)
	}
	if !strings.HasPrefix(sp.Label, "Utilisation over the last hour: now 99 %") {
		t.Errorf("label %q", sp.Label)
	}
	if empty := (*series)(nil).spark(func(p point) (float64, bool) { return p.util, p.hasUtil }, "Memory used"); empty.Points != "" {
		t.Errorf("a spark of nothing draws %q", empty.Points)
	}
}

func overviewDevice(util *float64) overview.Device {
	return overview.Device{UUID: "GPU-0", UtilizationPercent: util}
}

// TestConnectionsAreBounded: the page holds at most MaxConnections open, however many a
// user opens (each is a file descriptor etcd and the API server need too); one more waits
// until a place is free, and Start still returns when its context ends.
func TestConnectionsAreBounded(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme.New()).Build()
	p, err := New(Options{Addr: "127.0.0.1:0", Reader: c, Gatherer: prometheus.NewRegistry(), MaxConnections: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	addr := p.Addr().String()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	extra, err := net.Dial("tcp", addr) // the kernel completes it; the page must not take it
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if _, err := extra.Write([]byte("GET /static/page.css HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(extra), nil)
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a connection beyond MaxConnections was served (%v)", err)
	case <-time.After(500 * time.Millisecond):
	}
	held[0].Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("the waiting connection, once a place was free: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting connection was not served once a place was free")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Start: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return after its context ended")
	}
}

// TestNonFiniteReadingsKeepTheJSON: a reading that is not a number must not make
// /status.json and every stream fail (encoding/json refuses NaN).
func TestNonFiniteReadingsKeepTheJSON(t *testing.T) {
	nan := math.NaN()
	s := overview.Snapshot{Time: now, Devices: []overview.Device{{Node: "gpu01", Index: 0, UUID: "GPU-0", UtilizationPercent: &nan}}}
	p := newTestPage(t)
	p.record(s)
	if _, err := p.viewJSON(""); err != nil {
		t.Fatalf("a NaN reading: %v", err)
	}
}

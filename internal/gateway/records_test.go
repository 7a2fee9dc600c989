package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/report"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

var r0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

func recAt(h int, e audit.Event) audit.Event {
	e.Time = r0.Add(time.Duration(h) * time.Hour)
	return e
}

// recordsWorld is a gateway whose audit log holds alice's, bob's and nobody's records.
func recordsWorld(t *testing.T) *world {
	t.Helper()
	w := newWorld(t)
	aliceNB := audit.Container{Name: "alice-nb", ID: "aaaaaaaaaaaa0001", Type: "docker"}
	aliceTrain := audit.Container{Name: "train", ID: "aaaaaaaaaaaa0002", Type: "docker", Allocation: "a2"}
	bobTrain := audit.Container{Name: "train", ID: "bbbbbbbbbbbb0001", Type: "docker", Allocation: "b1"}
	w.s.AuditLog = testutil.AuditLog(t,
		recAt(0, audit.ContainerEvent(audit.ContainerCreate, "alice", aliceNB, "")),
		recAt(1, audit.GPUAllocate("alice", audit.Allocation{Name: "a1", Devices: []string{"GPU-0"}, GPUEquivalents: "1", Container: aliceNB})),
		recAt(2, audit.GPUAllocate("bob", audit.Allocation{Name: "b1", Devices: []string{"GPU-1"}, GPUEquivalents: "1"})),
		recAt(3, audit.ContainerEvent(audit.ContainerCreate, "bob", bobTrain, "")),
		recAt(4, audit.GPUReject("bob", audit.Allocation{Name: "b2", Container: bobTrain}, "QuotaExceeded", "bob holds 1/1")),
		// A container record without a user, naming alice's container: nobody's own.
		recAt(5, audit.ContainerEvent(audit.ContainerStop, "", aliceNB, "")),
		recAt(6, audit.AdminChange(audit.QuotaUpdate, "students", 2, "kubectl")),
		recAt(6, audit.Lifecycle(audit.IdleStop, "unknown", audit.Container{Name: "nobodys"}, "lab", "Enforce", "idle")),
		// alice was refused a prefix of bob's network, answered as one that does not exist.
		recAt(7, audit.AuthDeniedOwner("alice", "GET /v1.41/networks/12ab", audit.Container{ID: "12ab"}, "bob", "No such network: 12ab")),
		recAt(8, audit.ContainerEvent(audit.ContainerCreate, "alice", aliceTrain, "")),
		recAt(9, audit.Lifecycle(audit.IdleStop, "alice", aliceNB, "lab", "Enforce", "idle for 30m")),
		recAt(10, audit.GPURelease("alice", audit.Allocation{Name: "a1", Container: aliceNB}, "container removed")),
	)
	return w
}

func admin() Caller { return Caller{UID: 0, Name: "root", Admin: true} }

func bobCaller() Caller { return Caller{UID: 1001, Name: "bob", Home: "/home/bob"} }

// records decodes an answer of EventsPath.
func records(t *testing.T, rec *httptest.ResponseRecorder) []audit.Event {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("answer %d: %s", rec.Code, rec.Body)
	}
	if msg := rec.Result().Trailer.Get(TrailerError); msg != "" {
		t.Fatalf("answer failed: %s", msg)
	}
	var out []audit.Event
	if _, err := audit.Decode(context.Background(), rec.Body, func(b []audit.Event) error { out = append(out, b...); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func users(events []audit.Event) map[string]int {
	out := map[string]int{}
	for _, e := range events {
		out[e.User]++
	}
	return out
}

// TestUsersReadTheirOwnRecordsOnly: a user gets every record whose user is them, and no
// other user's, nor any record that names no user (even one about their own container).
func TestUsersReadTheirOwnRecordsOnly(t *testing.T) {
	w := recordsWorld(t)
	got := records(t, w.do(w.alice(), "GET", EventsPath+"?limit=0", ""))
	if u := users(got); len(u) != 1 || u["alice"] != 6 {
		t.Fatalf("alice read the records of %v; want her 6 only", u)
	}
	// As herself, by name: the same.
	if again := records(t, w.do(w.alice(), "GET", EventsPath+"?limit=0&user=alice", "")); len(again) != len(got) {
		t.Errorf("user=alice gave %d records, none given %d", len(again), len(got))
	}
	// Her auth.denied says what she was told, not whose network the prefix was.
	for _, e := range got {
		if e.Type == audit.TypeAuthDenied {
			if reason, _ := e.Details["reason"].(string); !strings.HasPrefix(reason, "No such network: ") || e.Details["owner"] != nil {
				t.Errorf("alice's auth.denied: %v; want what she was told, without the owner", e.Details)
			}
		}
	}
	// The default: the last 50, here all 6, oldest first.
	if d := records(t, w.do(w.alice(), "GET", EventsPath, "")); len(d) != 6 || d[0].Type != audit.TypeContainerCreate || d[5].Type != audit.TypeGPURelease {
		t.Errorf("the default answer: %+v", d)
	}
	if bob := records(t, w.do(bobCaller(), "GET", EventsPath+"?limit=0", "")); len(users(bob)) != 1 || users(bob)["bob"] != 3 {
		t.Errorf("bob read the records of %v; want his 3 only", users(bob))
	}
}

// TestAUserIsRefusedAnotherUsersRecords: user=someone else is refused, saying why, and the
// refusal is recorded; it is never answered with the caller's own records instead.
func TestAUserIsRefusedAnotherUsersRecords(t *testing.T) {
	w := recordsWorld(t)
	for _, target := range []string{EventsPath + "?user=bob", EventsPath + "?user=bob&follow=1", ReportPath + "?user=bob&since=2026-11-01T00:00:00Z", EventsPath + "?user=&user=bob"} {
		rec := w.do(w.alice(), "GET", target, "")
		if rec.Code == http.StatusOK {
			t.Errorf("GET %s as alice: 200 %s", target, rec.Body)
			continue
		}
		if strings.Contains(target, "user=&") {
			continue // a parameter given twice: refused as such (below)
		}
		if rec.Code != http.StatusForbidden || !strings.Contains(errorMessage(rec), "user=bob: you may read only your own audit records, and you are alice") {
			t.Errorf("GET %s as alice: %d %s", target, rec.Code, rec.Body)
		}
	}
	// A login named as gpuwarden names the owner of unlabelled containers is not that owner.
	unknown := Caller{UID: 1003, Name: "unknown", Home: "/home/unknown"}
	for _, target := range []string{EventsPath, ReportPath + "?since=2026-11-01T00:00:00Z"} {
		if rec := w.do(unknown, "GET", target, ""); rec.Code != http.StatusForbidden || !strings.Contains(errorMessage(rec), "whose owner gpuwarden could not tell") {
			t.Errorf("GET %s as a login named unknown: %d %s", target, rec.Code, rec.Body)
		}
	}
	denied := w.audit.Of(audit.TypeAuthDenied)
	if len(denied) != 5 || denied[0].User != "alice" || denied[0].Details["operation"] != "GET "+EventsPath {
		t.Errorf("the refusals recorded: %+v", denied)
	}
}

// TestAdminsReadEveryonesRecords: an admin reads every record, those naming no user
// included, and anyone's with user=, with the owners of refused objects.
func TestAdminsReadEveryonesRecords(t *testing.T) {
	w := recordsWorld(t)
	all := records(t, w.do(admin(), "GET", EventsPath+"?limit=0", ""))
	if u := users(all); u["alice"] != 6 || u["bob"] != 3 || u[""] != 2 || u["unknown"] != 1 {
		t.Errorf("an admin read %v; want alice 6, bob 3, unknown 1 and 2 without a user", u)
	}
	for _, e := range all {
		if e.Type == audit.TypeAuthDenied && e.Details["reason"] == "No such network: 12ab" && e.Details["owner"] != "bob" {
			t.Errorf("an admin's auth.denied reason = %q; want the owner kept", e.Details["reason"])
		}
	}
	if bob := records(t, w.do(admin(), "GET", EventsPath+"?limit=0&user=bob", "")); len(bob) != 3 || users(bob)["bob"] != 3 {
		t.Errorf("an admin's user=bob: %v", users(bob))
	}
}

// TestRecordFilters: type, container, since, until and limit filter as `gpuwarden events`
// does; another user's container of the same name brings none of their records.
func TestRecordFilters(t *testing.T) {
	w := recordsWorld(t)
	q := func(v url.Values) []audit.Event {
		return records(t, w.do(w.alice(), "GET", EventsPath+"?"+v.Encode(), ""))
	}
	if got := q(url.Values{"type": {"gpu"}, "limit": {"0"}}); len(got) != 2 || got[0].Type != audit.TypeGPUAllocate {
		t.Errorf("type=gpu: %+v", got)
	}
	if got := q(url.Values{"type": {"gpu.*"}, "limit": {"0"}}); len(got) != 2 {
		t.Errorf("type=gpu.*: %d records", len(got))
	}
	// Her container alice-nb: its records and those of allocation a1 bound to it.
	if got := q(url.Values{"container": {"alice-nb"}, "limit": {"0"}}); len(got) != 4 {
		t.Errorf("container=alice-nb: %d records: %+v", len(got), got)
	}
	// "train" is hers and bob's: only hers, and no record of bob's allocation b1.
	got := q(url.Values{"container": {"train"}, "limit": {"0"}})
	if len(got) != 1 || got[0].User != "alice" {
		t.Errorf("container=train: %+v", got)
	}
	// Bob's container by its ID prefix: nothing of bob's.
	if got := q(url.Values{"container": {"bbbbbbbbbbbb"}, "limit": {"0"}}); len(got) != 0 {
		t.Errorf("container=a prefix of bob's ID: %+v", got)
	}
	got = q(url.Values{"since": {r0.Add(1 * time.Hour).Format(time.RFC3339)}, "until": {r0.Add(9 * time.Hour).Format(time.RFC3339)}, "limit": {"0"}})
	if len(got) != 3 || !got[0].Time.Equal(r0.Add(time.Hour)) {
		t.Errorf("since 1h until 9h: %+v", got)
	}
	if got := q(url.Values{"limit": {"2"}}); len(got) != 2 || got[1].Type != audit.TypeGPURelease {
		t.Errorf("limit=2: %+v", got)
	}
	// A range far wider than the log: every record of hers.
	if got := q(url.Values{"since": {"0001-01-01T00:00:00Z"}, "until": {"9999-12-31T23:59:59Z"}, "limit": {"0"}}); len(got) != 6 {
		t.Errorf("the widest range: %d records", len(got))
	}
}

// TestRecordQueriesThatCannotBeRead: a malformed, unknown, repeated or out-of-range parameter
// is refused, naming it.
func TestRecordQueriesThatCannotBeRead(t *testing.T) {
	w := recordsWorld(t)
	for q, want := range map[string]string{
		"?users=bob":           `no parameter "users"`,
		"?user=alice&user=bob": "takes user once, not 2 times",
		"?limit=-1":            `limit="-1"`,
		"?limit=10001":         `limit="10001"`,
		"?limit=1e3":           `limit="1e3"`,
		"?since=yesterday":     `since="yesterday" is not an RFC 3339 time`,
		"?since=7d":            `since="7d" is not an RFC 3339 time`,
		"?since=2026-11-20T10:00:00Z&until=2026-11-20T09:00:00Z": "is not before",
		"?follow=maybe":        `follow="maybe"`,
		"?user=alice;user=bob": "cannot be read",
		"?limit=%zz":           "cannot be read",
	} {
		rec := w.do(w.alice(), "GET", EventsPath+q, "")
		if rec.Code != http.StatusBadRequest || !strings.Contains(errorMessage(rec), want) {
			t.Errorf("GET %s: %d %s; want 400 naming %q", q, rec.Code, rec.Body, want)
		}
	}
	for q, want := range map[string]string{
		"": "since is required",
		"?since=2026-11-20T09:00:00Z&container=x":                `no parameter "container"`,
		"?since=2026-11-20T09:00:00Z&until=2026-11-20T09:00:00Z": "is not before",
	} {
		rec := w.do(w.alice(), "GET", ReportPath+q, "")
		if rec.Code != http.StatusBadRequest || !strings.Contains(errorMessage(rec), want) {
			t.Errorf("GET report%s: %d %s; want 400 naming %q", q, rec.Code, rec.Body, want)
		}
	}
	if denied := w.audit.Of(audit.TypeAuthDenied); len(denied) != 0 {
		t.Errorf("malformed queries were recorded as access denied: %+v", denied)
	}
}

// errorMessage is the message of an error answer.
func errorMessage(rec *httptest.ResponseRecorder) string {
	var e struct{ Message string }
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	return e.Message
}

// TestRecordPathsAreExact: only GET of the exact, unversioned paths reaches the records; a
// user's other forms are refused, never answered with records.
func TestRecordPathsAreExact(t *testing.T) {
	w := recordsWorld(t)
	for _, tc := range []struct{ method, target string }{
		{"POST", EventsPath}, {"DELETE", EventsPath}, {"HEAD", EventsPath},
		{"GET", "/v1.41" + EventsPath}, {"GET", EventsPath + "/"}, {"GET", "/gpuwarden/x/../events"},
		{"GET", "//gpuwarden/events"}, {"GET", "/gpuwarden/events%2f.."}, {"GET", "/gpuwarden/Events"},
		{"GET", "/v1.41" + ReportPath}, {"POST", ReportPath},
	} {
		rec := w.do(w.alice(), tc.method, tc.target, "")
		if rec.Code == http.StatusOK || strings.Contains(rec.Body.String(), "event_type") {
			t.Errorf("%s %s as alice: %d %s", tc.method, tc.target, rec.Code, rec.Body)
		}
	}
	// A percent-encoded letter is the same path, decoded: her own records, as any form.
	if got := records(t, w.do(w.alice(), "GET", "/gpuwarden/%65vents?limit=0", "")); len(users(got)) != 1 || users(got)["alice"] != 6 {
		t.Errorf("an encoded path: %v", users(got))
	}
}

// TestNoAuditLogNoRecords: a gateway without an audit log says so.
func TestNoAuditLogNoRecords(t *testing.T) {
	w := newWorld(t)
	for _, p := range []string{EventsPath, ReportPath + "?since=2026-11-20T09:00:00Z"} {
		if rec := w.do(w.alice(), "GET", p, ""); rec.Code != http.StatusNotFound || !strings.Contains(errorMessage(rec), "answers no audit records") {
			t.Errorf("GET %s: %d %s", p, rec.Code, rec.Body)
		}
	}
}

// TestAReadThatFailsSaysSoInItsTrailer: the answer is streamed, so a failure once it has
// begun is in its trailer; what was skipped is too.
func TestAReadThatFailsSaysSoInItsTrailer(t *testing.T) {
	w := recordsWorld(t)
	f, err := os.OpenFile(w.s.AuditLog, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("not json\n")
	f.Close()
	rec := w.do(w.alice(), "GET", EventsPath, "")
	if got := rec.Result().Trailer.Get(TrailerMalformed); got != "1" {
		t.Errorf("the malformed line's trailer: %q", got)
	}
}

// TestUsersReadTheirOwnReport: the report of a user is of their own records; another's is
// refused; an admin's is everyone's.
func TestUsersReadTheirOwnReport(t *testing.T) {
	w := recordsWorld(t)
	q := "?since=" + r0.Format(time.RFC3339) + "&until=" + r0.Add(12*time.Hour).Format(time.RFC3339)
	get := func(c Caller, extra string) report.Report {
		rec := w.do(c, "GET", ReportPath+q+extra, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("report as %s: %d %s", c.Name, rec.Code, rec.Body)
		}
		var r report.Report
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	mine := get(w.alice(), "")
	if len(mine.Rows) != 1 || mine.Rows[0].User != "alice" || mine.Rows[0].AllocatedGPUHours != 9 || mine.Rows[0].IdleStops != 1 {
		t.Errorf("alice's report: %+v", mine.Rows)
	}
	if mine.Total.Rejections != 0 || len(mine.Rejections) != 0 {
		t.Errorf("alice's report counts bob's refusals: %+v %v", mine.Total, mine.Rejections)
	}
	if again := get(w.alice(), "&user=alice"); len(again.Rows) != 1 {
		t.Errorf("alice's report with user=alice: %+v", again.Rows)
	}
	all := get(admin(), "")
	if len(all.Rows) != 3 || all.Total.Rejections != 1 {
		t.Errorf("an admin's report: %+v", all)
	}
	if bob := get(admin(), "&user=bob"); len(bob.Rows) != 1 || bob.Rows[0].User != "bob" {
		t.Errorf("an admin's report of bob: %+v", bob.Rows)
	}
}

// TestAUsersReadsAreBounded: a user runs a few reads at once; more are answered 429, and
// another user's are not held up by theirs.
func TestAUsersReadsAreBounded(t *testing.T) {
	var a auditReads
	ctx := context.Background()
	alice, bob := Caller{UID: 1000, Name: "alice"}, Caller{UID: 1001, Name: "bob"}
	var releases []func()
	for range maxReadsPerUser {
		release, err := a.begin(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	if _, err := a.begin(ctx, alice); err == nil || !strings.Contains(err.Error(), "reads of the audit log of yours are running") {
		t.Errorf("one read over the cap: %v", err)
	}
	release, err := a.begin(ctx, bob)
	if err != nil {
		t.Errorf("bob's read while alice's run: %v", err)
	} else {
		release()
		release() // a second release gives nothing back twice
	}
	for _, r := range releases {
		r()
	}
	if release, err := a.begin(ctx, alice); err != nil {
		t.Errorf("alice's read once hers ended: %v", err)
	} else {
		release()
	}
	if len(a.slots) != 0 || len(a.byUser) != 0 {
		t.Errorf("slots left taken: %d, %v", len(a.slots), a.byUser)
	}
	// All users' slots taken: one more waits, until its caller gives up.
	for i := range maxReads {
		if _, err := a.begin(ctx, Caller{UID: 2000 + i}); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := a.begin(short, alice); err == nil {
		t.Error("a read past every slot did not wait")
	}
	if a.byUser[alice.UID] != 0 {
		t.Errorf("a read that gave up still counts: %v", a.byUser)
	}
	for range maxFollowsPerUser {
		if _, err := a.follow(alice); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.follow(alice); err == nil {
		t.Error("one follow over the cap was let through")
	}
}

// TestAUserFollowsTheirOwnRecords: follow=1 answers the last records, then each new one of
// the caller's as it is written, and none of another user's.
func TestAUserFollowsTheirOwnRecords(t *testing.T) {
	w := recordsWorld(t)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.s.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), callerKey{}, w.alice())))
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+EventsPath+"?follow=1&limit=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no record came")
			return ""
		}
	}
	if first := next(); !strings.Contains(first, `"event_type":"gpu.release"`) {
		t.Fatalf("the last record first: %s", first)
	}
	aw, err := audit.Open(audit.Options{Path: w.s.AuditLog, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer aw.Close()
	aw.Log(audit.GPUAllocate("bob", audit.Allocation{Name: "b9"}))
	aw.Log(audit.GPUAllocate("alice", audit.Allocation{Name: "a9"}))
	if err := aw.Flush(); err != nil {
		t.Fatal(err)
	}
	if l := next(); !strings.Contains(l, `"allocation":"a9"`) || !strings.Contains(l, `"user":"alice"`) {
		t.Fatalf("the new record: %s", l)
	}
	cancel()
}

// TestHeldRecordsAreBoundedInBytes: the last records an answer holds are bounded in bytes
// too (a user's own records can be large: their command lines); the answer says how many of
// those asked for it held back, and a streamed answer holds none back.
func TestHeldRecordsAreBoundedInBytes(t *testing.T) {
	defer func(old int) { maxHeldBytes = old }(maxHeldBytes)
	maxHeldBytes = 50_000
	w := newWorld(t)
	var big []audit.Event
	for i := range 10 {
		big = append(big, recAt(i, audit.Detection(audit.UnmanagedProcess, "alice", audit.Unmanaged{PID: 100 + i, Command: strings.Repeat("x", 20_000)})))
	}
	w.s.AuditLog = testutil.AuditLog(t, big...)
	rec := w.do(w.alice(), "GET", EventsPath+"?limit=5", "")
	if got := records(t, rec); len(got) != 2 || rec.Header().Get(HeaderHeldBack) != "3" {
		t.Errorf("limit=5 of 20 kB records in 50 kB: %d sent, held back %q", len(got), rec.Header().Get(HeaderHeldBack))
	}
	rec = w.do(w.alice(), "GET", EventsPath+"?limit=0", "")
	if got := records(t, rec); len(got) != 10 || rec.Header().Get(HeaderHeldBack) != "" {
		t.Errorf("limit=0: %d sent, held back %q", len(got), rec.Header().Get(HeaderHeldBack))
	}
}

// TestAnOlderRecordKeepsTheOwnerFromItsCaller: a record written when the owner began the
// reason ("owner bob: …") is read by its caller without it.
func TestAnOlderRecordKeepsTheOwnerFromItsCaller(t *testing.T) {
	e := audit.AuthDenied("alice", "GET /v1.41/networks/34cd", audit.Container{ID: "34cd"}, "owner bob: No such network: 34cd")
	if got := forCaller(Caller{Name: "alice"}, &e); got.Details["reason"] != "No such network: 34cd" {
		t.Errorf("alice reads %v", got.Details)
	}
	if got := forCaller(admin(), &e); got.Details["reason"] != "owner bob: No such network: 34cd" {
		t.Errorf("an admin reads %v", got.Details)
	}
}

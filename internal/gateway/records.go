package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/report"
)

// The audit log is root's to read. The gateway answers a caller the records whose user is
// the caller (an admin's, anyone's): `gpuwarden events` and `gpuwarden report` ask it when
// the file is not theirs to read. A record that names no user (a quota or policy change) or
// the user "unknown" (a container whose owner gpuwarden could not tell) is nobody's own: only
// admins read it.

// MaxEventsLimit is the most events an answer of EventsPath holds back to send the last of
// (limit=N); limit=0 streams every matching event as it is read, holding none.
const MaxEventsLimit = 10000

// DefaultEventsLimit is what EventsPath answers without a limit: the last 50, as `gpuwarden
// events` shows.
const DefaultEventsLimit = 50

// HeaderHeldBack, on an answer of EventsPath, is how many of the last limit records asked
// for were held back, the oldest first: those sent take maxHeldBytes already.
const HeaderHeldBack = "Gpuwarden-Held-Back"

// maxHeldBytes bounds, about, what the records an answer holds back to send the last of take.
var maxHeldBytes = 32 << 20

// Trailers of an answer of EventsPath: the answer is streamed, so what went wrong once it
// had begun, and what was skipped, come after it.
const (
	TrailerError     = "Gpuwarden-Error"
	TrailerMalformed = "Gpuwarden-Skipped-Malformed"
	TrailerTooLong   = "Gpuwarden-Skipped-Too-Long"
)

// What one user's reads of the audit log may take: a read scans the whole log, on every core
// for a large file, so a user's reads run at most maxReadsPerUser at once (one more is
// answered 429) and all users' at most maxReads (one more waits its turn).
const (
	maxReadsPerUser   = 2
	maxReads          = 4
	maxFollowsPerUser = 4
	// followPoll is how often a followed log is looked at for new records.
	followPoll = 500 * time.Millisecond
	// recordWriteTimeout is how long a write of an answer may wait for the caller to read.
	recordWriteTimeout = 30 * time.Second
)

// auditReads counts the reads of the audit log in flight, by user.
type auditReads struct {
	mu      sync.Mutex
	byUser  map[int]int
	follows map[int]int
	slots   chan struct{}
}

// begin takes one of the caller's reads and, once one is free, one of all users' slots; the
// release gives both back (once, however often it is called).
func (a *auditReads) begin(ctx context.Context, c Caller) (func(), error) {
	a.mu.Lock()
	if a.byUser == nil {
		a.byUser, a.follows, a.slots = map[int]int{}, map[int]int{}, make(chan struct{}, maxReads)
	}
	if a.byUser[c.UID] >= maxReadsPerUser {
		a.mu.Unlock()
		return nil, &refusal{status: http.StatusTooManyRequests, absent: true, msg: fmt.Sprintf("%d reads of the audit log of yours are running already; wait for them to end", maxReadsPerUser)}
	}
	a.byUser[c.UID]++
	slots := a.slots
	a.mu.Unlock()
	done := func() {
		a.mu.Lock()
		if a.byUser[c.UID]--; a.byUser[c.UID] <= 0 {
			delete(a.byUser, c.UID)
		}
		a.mu.Unlock()
	}
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
	return sync.OnceFunc(func() { <-slots; done() }), nil
}

// follow takes one of the caller's followed logs; the release gives it back.
func (a *auditReads) follow(c Caller) (func(), error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.follows == nil {
		a.byUser, a.follows, a.slots = map[int]int{}, map[int]int{}, make(chan struct{}, maxReads)
	}
	if a.follows[c.UID] >= maxFollowsPerUser {
		return nil, &refusal{status: http.StatusTooManyRequests, absent: true, msg: fmt.Sprintf("you follow the audit log %d times already; end one first", maxFollowsPerUser)}
	}
	a.follows[c.UID]++
	return sync.OnceFunc(func() {
		a.mu.Lock()
		if a.follows[c.UID]--; a.follows[c.UID] <= 0 {
			delete(a.follows, c.UID)
		}
		a.mu.Unlock()
	}), nil
}

// badQuery is a refusal of a malformed query: no access denied.
func badQuery(format string, args ...any) *refusal {
	return &refusal{status: http.StatusBadRequest, absent: true, msg: fmt.Sprintf(format, args...)}
}

// recordQuery reads the query of EventsPath or ReportPath: each of the allowed parameters at
// most once, and nothing else (a parameter given twice could be read two ways).
func recordQuery(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badQuery("the query %q cannot be read: %v", r.URL.RawQuery, err)
	}
	for k, v := range q {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		switch {
		case !known:
			return nil, badQuery("%s takes no parameter %q (it takes %s)", r.URL.Path, k, strings.Join(allowed, ", "))
		case len(v) > 1:
			return nil, badQuery("%s takes %s once, not %d times", r.URL.Path, k, len(v))
		}
	}
	return q, nil
}

// recordTime reads since or until: RFC 3339 (the CLI turns ages into times with its clock).
func recordTime(q url.Values, k string) (time.Time, error) {
	v := q.Get(k)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badQuery("%s=%q is not an RFC 3339 time (2026-11-20T09:00:00Z)", k, v)
	}
	return t, nil
}

// recordFilter is the filter of a query: the caller's own records, or an admin's choice.
func (s *Server) recordFilter(c Caller, q url.Values) (audit.Filter, error) {
	f := audit.Filter{User: q.Get("user"), Type: strings.TrimSuffix(q.Get("type"), ".*"), Container: q.Get("container")}
	if !c.Admin {
		if c.Name == gpuwardenv1alpha1.UnknownUser {
			// gpuwarden's name for the owner of containers no label names an owner of: a
			// login of that name is not them.
			return f, &refusal{status: http.StatusForbidden, msg: fmt.Sprintf(
				"the records of user %q are those of containers whose owner gpuwarden could not tell, not a login's of that name; gpuwarden admins (group %s) read them", c.Name, s.AdminGroup)}
		}
		if f.User != "" && f.User != c.Name {
			return f, &refusal{status: http.StatusForbidden, msg: fmt.Sprintf(
				"user=%s: you may read only your own audit records, and you are %s; gpuwarden admins (group %s) read anyone's", f.User, c.Name, s.AdminGroup)}
		}
		f.User = c.Name
	}
	var err error
	if f.Since, err = recordTime(q, "since"); err != nil {
		return f, err
	}
	if f.Until, err = recordTime(q, "until"); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, badQuery("since=%s is not before until=%s", q.Get("since"), q.Get("until"))
	}
	return f, nil
}

// auditFiles are the files of the audit log, once the gateway answers records at all.
func (s *Server) auditFiles() ([]string, error) {
	if s.AuditLog == "" {
		return nil, &refusal{status: http.StatusNotFound, absent: true, msg: "this gpuwarden answers no audit records (it was started without an audit log); ask your admin"}
	}
	files, err := audit.Files(s.AuditLog)
	if err != nil {
		return nil, err
	}
	return files, nil
}

// forCaller is a record as the caller may read it. An auth.denied record holds the owner of
// what was refused, for admins; a user was told the owner only where the refusal's message
// names it, and an object of another user behind an ID prefix was answered as one that does
// not exist: their own record says what they were told, the message, and not the owner.
func forCaller(c Caller, e *audit.Event) *audit.Event {
	if c.Admin || e.Type != audit.TypeAuthDenied {
		return e
	}
	out := e.ForCaller()
	// A record written before the owner was a detail of its own began its reason with it.
	reason, _ := out.Details["reason"].(string)
	if rest, ok := strings.CutPrefix(reason, legacyOwnerPrefix); ok {
		if _, msg, found := strings.Cut(rest, ": "); found {
			d := make(map[string]any, len(out.Details))
			for k, v := range out.Details {
				d[k] = v
			}
			d["reason"] = msg
			out.Details = d
		}
	}
	return &out
}

// legacyOwnerPrefix began the reason of an auth.denied record of another user's object,
// "owner bob: …", before the owner was a detail of its own.
const legacyOwnerPrefix = "owner "

// eventsQuery is a query of EventsPath, read.
type eventsQuery struct {
	filter audit.Filter
	limit  int
	follow bool
}

// readEventsQuery reads a query of EventsPath for the caller.
func (s *Server) readEventsQuery(r *http.Request, c Caller) (eventsQuery, error) {
	q, err := recordQuery(r, "user", "type", "container", "since", "until", "limit", "follow")
	if err != nil {
		return eventsQuery{}, err
	}
	out := eventsQuery{limit: DefaultEventsLimit}
	if out.filter, err = s.recordFilter(c, q); err != nil {
		return out, err
	}
	if v := q.Get("limit"); v != "" {
		if out.limit, err = strconv.Atoi(v); err != nil || out.limit < 0 || out.limit > MaxEventsLimit {
			return out, badQuery("limit=%q: 0 (every matching record, streamed) or 1 to %d (the last N)", v, MaxEventsLimit)
		}
	}
	switch v := q.Get("follow"); v {
	case "", "0", "false":
	case "1", "true":
		out.follow = true
	default:
		return out, badQuery("follow=%q: 1 or 0", v)
	}
	return out, nil
}

// auditEvents answers the caller's audit records at EventsPath, as JSON lines in the log's
// own envelope: the last limit that match (DefaultEventsLimit; 0 streams all), then, with
// follow=1, every new one as it is written until the caller hangs up. The answer begins once
// the last records are read (an error before is the answer); its trailer says what went
// wrong after, and what was skipped.
func (s *Server) auditEvents(w http.ResponseWriter, r *http.Request, c Caller) error {
	q, err := s.readEventsQuery(r, c)
	if err != nil {
		return err
	}
	files, err := s.auditFiles()
	if err != nil {
		return err
	}
	ctx := r.Context()
	if q.follow {
		stop, err := s.reads.follow(c)
		if err != nil {
			return err
		}
		defer stop()
		// A followed log ends with the gateway, too: the caller's connection may outlive it.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-s.done: // nil, never, where the gateway was not started (tests)
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	release, err := s.reads.begin(ctx, c)
	if err != nil {
		return err
	}
	defer release()
	f := q.filter
	if f.Container != "" {
		// Only the caller's own records tie allocations to their container: another user's
		// container of the same name ties none of theirs.
		if f.Allocations, err = audit.ContainerAllocations(ctx, files, f.User, f.Container); err != nil {
			return err
		}
	}
	out := &recordStream{w: w, rc: http.NewResponseController(w), c: c}
	// The last records are held until they are sent: at most limit of them, and no more
	// than maxHeldBytes (records a user's own processes fill with long command lines).
	last := audit.NewLast(q.limit)
	last.MaxBytes = maxHeldBytes
	var st audit.ReadStats
	switch {
	case q.follow:
		st, err = audit.Follow(ctx, s.AuditLog, f, last, followPoll, func(events []audit.Event) error {
			if !out.begun {
				release() // the log is read: from here on, it is polled
				out.begin(last.HeldBack())
			}
			if err := out.write(events); err != nil {
				return err
			}
			out.flush()
			return nil
		})
	case q.limit == 0:
		out.begin(0)
		st, err = audit.Read(ctx, files, f, func(e *audit.Event) error { return out.write([]audit.Event{*e}) })
	default:
		st, err = audit.Read(ctx, files, f, func(e *audit.Event) error { last.Add(*e); return nil })
		if err == nil {
			release() // read: the answer's pace is the caller's
			out.begin(last.HeldBack())
			err = out.write(last.Events())
		}
	}
	if !out.begun {
		return err // nothing answered yet: the error is the answer
	}
	out.end(st, err)
	return nil // the answer has begun: what went wrong is in its trailer
}

// recordStream is an answer of EventsPath: records as the caller may read them, each write
// in time (recordWriteTimeout), or the connection is closed: a caller who stops reading holds
// nothing for long, the read they would hold up least of all.
type recordStream struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	c     Caller
	buf   []byte
	begun bool
}

func (o *recordStream) deadline() { _ = o.rc.SetWriteDeadline(time.Now().Add(recordWriteTimeout)) }

// begin answers 200, saying how many of the records asked for were held back: the records
// follow, what went wrong and what was skipped after them.
func (o *recordStream) begin(heldBack int) {
	h := o.w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	if heldBack > 0 {
		h.Set(HeaderHeldBack, strconv.Itoa(heldBack))
	}
	h.Set("Trailer", strings.Join([]string{TrailerError, TrailerMalformed, TrailerTooLong}, ", "))
	o.w.WriteHeader(http.StatusOK)
	o.flush()
	o.begun = true
}

// write sends events, as the caller may read them.
func (o *recordStream) write(events []audit.Event) error {
	o.buf = o.buf[:0]
	for i := range events {
		var err error
		if o.buf, err = forCaller(o.c, &events[i]).AppendJSON(o.buf); err != nil {
			return err
		}
	}
	if len(o.buf) == 0 {
		return nil
	}
	o.deadline()
	_, err := o.w.Write(o.buf)
	return err
}

func (o *recordStream) flush() {
	o.deadline()
	_ = o.rc.Flush()
}

// end sets the trailer: what was skipped, and what went wrong.
func (o *recordStream) end(st audit.ReadStats, err error) {
	h := o.w.Header()
	h.Set(TrailerMalformed, strconv.Itoa(st.Malformed))
	h.Set(TrailerTooLong, strconv.Itoa(st.TooLong))
	if err != nil && !errors.Is(err, context.Canceled) {
		h.Set(TrailerError, err.Error())
	}
}

// auditReport answers the caller's usage report (an admin's, everyone's or user='s) over
// since to until (now when not given): a report.Report in JSON, as `gpuwarden report` prints it.
func (s *Server) auditReport(w http.ResponseWriter, r *http.Request, c Caller) error {
	q, err := recordQuery(r, "user", "since", "until")
	if err != nil {
		return err
	}
	f, err := s.recordFilter(c, q)
	if err != nil {
		return err
	}
	if !q.Has("since") {
		return badQuery("since is required: the start of the period, RFC 3339")
	}
	now := time.Now()
	if f.Until.IsZero() {
		f.Until = now
	}
	if !f.Since.Before(f.Until) {
		return badQuery("since=%s is not before until=%s", f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	}
	files, err := s.auditFiles()
	if err != nil {
		return err
	}
	release, err := s.reads.begin(r.Context(), c)
	if err != nil {
		return err
	}
	defer release()
	b := &report.Builder{Since: f.Since, Until: f.Until}
	// Everything before the end: allocations bound before the period count from its start.
	if _, err := audit.Read(r.Context(), files, audit.Filter{Until: f.Until, User: f.User}, func(e *audit.Event) error { b.Add(e); return nil }); err != nil {
		return err
	}
	release() // read: the answer's pace is the caller's
	data, err := json.Marshal(b.Report(now))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(recordWriteTimeout))
	_, _ = w.Write(append(data, '\n'))
	return nil
}

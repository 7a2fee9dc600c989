// Package statuspage is gpuwarden's read-only status page: what `gpuwarden top` shows, for
// a browser. A tile per GPU and MIG instance (holder, idle and runtime times, utilisation
// and memory over the last hour), the queue, the week's reservations, each user against
// quota and budget, and the last 30 days of use with right-size advice from the audit log.
//
// The page is rendered on the server (html/template: it is whole with JavaScript off) and
// kept live by a small script that follows /events (server-sent events). The snapshot is
// built in the background every Refresh from the manager's cache and the process's own
// metrics, and the usage every UsageEvery from the audit log: a request never does that
// work, so no number of requests can make the page read more.
package statuspage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/overview"
	"github.com/gpuwarden/gpuwarden/internal/report"
)

// Defaults of Options.
const (
	DefaultRefresh    = 5 * time.Second
	DefaultUsageEvery = 5 * time.Minute
	// UsagePeriod is how far back the usage table looks.
	UsagePeriod = 30 * 24 * time.Hour
	// DefaultMaxStreams bounds the open /events streams; DefaultStreamLifetime how long
	// one stays open before the browser is asked to reconnect.
	DefaultMaxStreams     = 64
	DefaultStreamLifetime = 10 * time.Minute
	// DefaultMaxConnections bounds the open connections, streams included: every local
	// user can open them, and the page shares the process's file descriptors with etcd,
	// the API server and the gateway.
	DefaultMaxConnections = 256
)

// Options configure the page.
type Options struct {
	// Addr is the listener's address (--web-bind-address).
	Addr string
	// Flag names Addr in errors; "--web-bind-address" when empty.
	Flag string
	// Reader lists gpuwarden's objects: the manager's cached client.
	Reader client.Reader
	// Gatherer gives the GPUs' readings: the process's own registry (dcgm-exporter series).
	Gatherer prometheus.Gatherer
	// Node is the node shown; empty for every node the reader sees.
	Node string
	// AuditLog is the audit log the usage is read from; empty: no usage table.
	AuditLog string
	// Refresh, UsageEvery, MaxStreams, StreamLifetime and MaxConnections default to the
	// Default constants.
	Refresh        time.Duration
	UsageEvery     time.Duration
	MaxStreams     int
	StreamLifetime time.Duration
	MaxConnections int
	// Hosts are the names besides addresses and localhost that requests may call the page
	// by (the Host header), lower case; nil: this machine's host name, short and long.
	Hosts []string
	// Location is the time zone times are shown in; time.Local when nil.
	Location *time.Location
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Page is the status page: a manager.Runnable that serves it on its own listener.
type Page struct {
	o        Options
	listener net.Listener

	// mu guards hist and usage; view is the latest snapshot, read by every request.
	mu       sync.Mutex
	hist     map[string]*series
	usage    Usage
	snapshot atomic.Pointer[overview.Snapshot]

	// changed is closed and replaced whenever a new snapshot is there.
	changedMu sync.Mutex
	changed   chan struct{}
	streams   chan struct{}
	closeOnce sync.Once
}

// New checks o and listens on o.Addr, so that a bind failure fails the start; Start
// serves. Close the page when the manager never started it.
func New(o Options) (*Page, error) {
	p, err := newPage(o)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: serving the status page: %w", p.o.Flag, o.Addr, err)
	}
	p.listener = l
	return p, nil
}

// newPage is a page without a listener (tests serve its Handler).
func newPage(o Options) (*Page, error) {
	if o.Flag == "" {
		o.Flag = "--web-bind-address"
	}
	if o.Reader == nil {
		return nil, errors.New("the status page needs a reader of gpuwarden's objects")
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	if o.UsageEvery <= 0 {
		o.UsageEvery = DefaultUsageEvery
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.StreamLifetime <= 0 {
		o.StreamLifetime = DefaultStreamLifetime
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = max(DefaultMaxConnections, 2*o.MaxStreams)
	}
	if o.Hosts == nil {
		o.Hosts = machineNames()
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Page{o: o, hist: map[string]*series{}, changed: make(chan struct{}), streams: make(chan struct{}, o.MaxStreams)}, nil
}

// machineNames are this machine's host name, short and as it is set.
func machineNames() []string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return []string{}
	}
	name = strings.ToLower(name)
	short, _, _ := strings.Cut(name, ".")
	return slices.Compact([]string{name, short})
}

// Addr is the address the page listens on (the port chosen for ":0").
func (p *Page) Addr() net.Addr { return p.listener.Addr() }

// NeedLeaderElection: a standby shows the node too.
func (p *Page) NeedLeaderElection() bool { return false }

// Start serves the page until ctx ends.
func (p *Page) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("statuspage")
	ctx = logr.NewContext(ctx, log)
	srv := &http.Server{
		Handler:           p.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// Writes are bounded per request (the handler sets a deadline; a stream's is its
		// lifetime): a server-wide WriteTimeout would cut every stream.
		IdleTimeout:    time.Minute,
		MaxHeaderBytes: 16 << 10,
		BaseContext:    func(net.Listener) context.Context { return ctx },
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.every(ctx, p.o.Refresh, p.refresh, "Could not build the status page's snapshot")
	}()
	go func() {
		defer wg.Done()
		p.every(ctx, p.o.UsageEvery, p.readUsage, "Could not read the audit log for the status page")
	}()
	errc := make(chan error, 1)
	// At most MaxConnections at once: no number of connections (every local user can open
	// them) can take the file descriptors etcd, the API server and the gateway share with
	// the page; those waiting stay in the kernel's backlog, which costs the process nothing.
	go func() { errc <- srv.Serve(netutil.LimitListener(p.listener, p.o.MaxConnections)) }()
	log.Info("Serving the status page", "address", "http://"+p.listener.Addr().String()+"/")
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown) // open streams end with ctx
	wg.Wait()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s %s: %w", p.o.Flag, p.o.Addr, err)
	}
	return nil
}

// Close closes the listener of a page that was never started.
func (p *Page) Close() error {
	var err error
	p.closeOnce.Do(func() {
		if p.listener != nil {
			err = p.listener.Close()
		}
	})
	return err
}

// every runs fn at once, then every interval, until ctx ends.
func (p *Page) every(ctx context.Context, interval time.Duration, fn func(context.Context) error, what string) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			logr.FromContextOrDiscard(ctx).Error(err, what)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh builds a new snapshot from the objects and the process's metrics.
func (p *Page) refresh(ctx context.Context) error {
	in, err := overview.Read(ctx, p.o.Reader)
	if err != nil {
		return err
	}
	in.Source = "this gpuwarden's own readings"
	if p.o.Gatherer != nil {
		fams, err := p.o.Gatherer.Gather()
		if err != nil && len(fams) == 0 {
			in.ReadingsError = err.Error()
		}
		in.Readings = overview.Readings(fams)
	} else {
		in.ReadingsError = "this gpuwarden reads no GPUs"
	}
	s := overview.Build(in, p.o.Node, p.o.Now())
	p.record(s)
	return nil
}

// record keeps s as the latest snapshot, adds its readings to the devices' histories and
// wakes the streams.
func (p *Page) record(s overview.Snapshot) {
	p.mu.Lock()
	seen := map[string]bool{}
	for _, d := range s.Devices {
		h := p.hist[d.UUID]
		if h == nil {
			h = &series{}
			p.hist[d.UUID] = h
		}
		h.add(d, s.Time)
		seen[d.UUID] = true
	}
	for uuid := range p.hist {
		if !seen[uuid] {
			delete(p.hist, uuid)
		}
	}
	p.mu.Unlock()
	p.snapshot.Store(&s)
	p.changedMu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.changedMu.Unlock()
}

// wait is closed at the next snapshot.
func (p *Page) wait() <-chan struct{} {
	p.changedMu.Lock()
	defer p.changedMu.Unlock()
	return p.changed
}

// readUsage computes the last UsagePeriod's report from the audit log.
func (p *Page) readUsage(ctx context.Context) error {
	if p.o.AuditLog == "" {
		return nil
	}
	now := p.o.Now()
	u := Usage{At: now}
	files, err := audit.Files(p.o.AuditLog)
	if err == nil {
		b := &report.Builder{Since: now.Add(-UsagePeriod), Until: now}
		_, err = audit.Read(ctx, files, audit.Filter{Until: now}, func(e *audit.Event) error { b.Add(e); return nil })
		u.Report = b.Report(now)
	}
	if err != nil {
		u.Err = err
	}
	p.mu.Lock()
	p.usage = u
	p.mu.Unlock()
	return err
}

// view is the page for filter as of the latest snapshot; ok false before the first.
func (p *Page) view(filter string) (View, bool) {
	s := p.snapshot.Load()
	if s == nil {
		now := p.o.Now().In(p.o.Location)
		return View{Title: "GPUs", Node: p.o.Node, Updated: now.Format("15:04:05 MST"), UpdatedISO: now.Format(time.RFC3339), Filter: filter,
			Notices: []string{"Starting: gpuwarden is still reading the GPUs and the API server. This page fills in by itself."},
			Devices: []DeviceView{}, Queue: []QueueRow{}, Users: []UserRow{}, Days: []Day{},
			Usage: UsageView{Rows: []UsageRow{}, Advice: []AdviceRow{}}}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return render(*s, p.hist, p.usage, filter, p.o.Location), true
}

func (p *Page) viewJSON(filter string) ([]byte, error) {
	v, _ := p.view(filter)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// limitWorld is a gateway on a real socket, with small caps, in front of an engine whose
// /events streams until the caller goes. Callers are told apart by the address their client
// socket is bound to (USER-N), which peerOf reads, as the kernel's credentials would be.
type limitWorld struct {
	t      *testing.T
	s      *Server
	dir    string
	n      atomic.Int64
	events atomic.Int64 // /events requests the engine is serving
}

var limitUIDs = map[string]int{"alice": 2001, "bob": 2002, "carol": 2003}

func newLimitWorld(t *testing.T, lim Limits) *limitWorld {
	t.Helper()
	dir, err := os.MkdirTemp("", "gwlim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	w := &limitWorld{t: t, dir: dir}
	engineSock := filepath.Join(dir, "engine.sock")
	el, err := net.Listen("unix", engineSock)
	if err != nil {
		t.Fatal(err)
	}
	engine := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") {
			w.events.Add(1)
			defer w.events.Add(-1)
			rw.WriteHeader(http.StatusOK)
			rw.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		if strings.HasSuffix(r.URL.Path, "/_ping") {
			fmt.Fprint(rw, "OK")
			return
		}
		fmt.Fprint(rw, "{}")
	}))
	engine.Listener = el
	engine.Start()
	t.Cleanup(engine.Close)
	var d net.Dialer
	w.s = &Server{
		Socket: filepath.Join(dir, "gw.sock"), AdminGroup: DefaultAdminGroup, Limits: lim,
		Dial: func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", engineSock) },
		peerOf: func(c net.Conn) (Caller, error) {
			name, _, _ := strings.Cut(filepath.Base(c.RemoteAddr().String()), "-")
			uid, ok := limitUIDs[name]
			if !ok {
				return Caller{}, fmt.Errorf("unknown client address %q", c.RemoteAddr())
			}
			// Admins: every request is forwarded as it is, /events included.
			return Caller{UID: uid, GID: uid, Name: name, Admin: true}, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.s.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(t, 10*time.Second, "the gateway listens", func() bool {
		c, err := net.Dial("unix", w.s.Socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return w
}

// dial connects as user.
func (w *limitWorld) dial(user string) net.Conn {
	w.t.Helper()
	d := net.Dialer{LocalAddr: &net.UnixAddr{Net: "unix", Name: filepath.Join(w.dir, fmt.Sprintf("%s-%d", user, w.n.Add(1)))}}
	c, err := d.Dial("unix", w.s.Socket)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { c.Close() })
	return c
}

// get sends one request on c and returns the answer's status and body ("" and the error
// when there is none).
func get(c net.Conn, path string) (int, string, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: docker\r\n\r\n", path); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// ping is a fresh connection's answer to GET /_ping, as user.
func (w *limitWorld) ping(user string) (int, string) {
	c := w.dial(user)
	defer c.Close()
	status, body, err := get(c, "/_ping")
	if err != nil {
		return 0, err.Error()
	}
	return status, body
}

// hold returns a connection of user's that the gateway has admitted and served once.
func (w *limitWorld) hold(user string) net.Conn {
	w.t.Helper()
	var held net.Conn
	testutil.Eventually(w.t, 10*time.Second, user+"'s connection admitted", func() (bool, string) {
		c := w.dial(user)
		status, body, err := get(c, "/_ping")
		if status != http.StatusOK {
			c.Close()
			return false, fmt.Sprint(status, " ", body, " ", err)
		}
		held = c
		return true, ""
	})
	return held
}

// stream starts GET /events as user and returns its connection once the engine streams.
func (w *limitWorld) stream(user string) net.Conn {
	w.t.Helper()
	c := w.dial(user)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprint(c, "GET /v1.41/events HTTP/1.1\r\nHost: docker\r\n\r\n"); err != nil {
		w.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		w.t.Fatalf("GET /events as %s: %v %v", user, resp, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

// closedByServer: the server ends c (EOF) rather than the read waiting on.
func closedByServer(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.ReadAll(c)
	return err
}

func TestConnectionsPerUserAreCapped(t *testing.T) {
	w := newLimitWorld(t, Limits{ConnsPerUser: 3, RequestsPerUser: 10, Conns: 100})
	var held []net.Conn
	for range 3 {
		held = append(held, w.hold("alice"))
	}
	// Alice's fourth connection: a Docker-style error naming the cap, then the end.
	c := w.dial("alice")
	status, body, err := get(c, "/_ping")
	if err != nil || status != http.StatusTooManyRequests || !strings.Contains(body, `"message":"gpuwarden: `) ||
		!strings.Contains(body, "--gateway-max-connections-per-user") || !strings.Contains(body, "3 connections") {
		t.Fatalf("alice's 4th connection: %d %q %v", status, body, err)
	}
	if err := closedByServer(c); err != nil {
		t.Errorf("alice's 4th connection is not closed after the refusal: %v", err)
	}
	// Others are served.
	if status, body := w.ping("bob"); status != http.StatusOK || body != "OK" {
		t.Errorf("bob's ping while alice is at her cap: %d %q", status, body)
	}
	// Alice's held connections still work; one closed gives her place back.
	if status, _, err := get(held[0], "/_ping"); status != http.StatusOK {
		t.Errorf("a ping on one of alice's held connections: %d %v", status, err)
	}
	held[1].Close()
	testutil.Eventually(t, 10*time.Second, "alice served again after closing one", func() (bool, string) {
		status, body := w.ping("alice")
		return status == http.StatusOK, fmt.Sprint(status, " ", body)
	})
}

func TestAllConnectionsAreCapped(t *testing.T) {
	w := newLimitWorld(t, Limits{ConnsPerUser: 10, RequestsPerUser: 10, Conns: 3})
	w.hold("alice")
	w.hold("alice")
	b := w.hold("bob")
	// (Eventually: the connection that saw the gateway listen may not have been let go yet.)
	testutil.Eventually(t, 10*time.Second, "carol's connection over the global cap refused", func() (bool, string) {
		status, body := w.ping("carol")
		return status == http.StatusServiceUnavailable && strings.Contains(body, "--gateway-max-connections)") &&
			strings.Contains(body, `"message":"gpuwarden: `), fmt.Sprint(status, " ", body)
	})
	b.Close()
	testutil.Eventually(t, 10*time.Second, "carol served once a place frees", func() (bool, string) {
		status, body := w.ping("carol")
		return status == http.StatusOK, fmt.Sprint(status, " ", body)
	})
}

func TestRequestsPerUserAreCapped(t *testing.T) {
	w := newLimitWorld(t, Limits{ConnsPerUser: 10, RequestsPerUser: 2, Conns: 100})
	s1 := w.stream("alice")
	w.stream("alice")
	status, body := w.ping("alice")
	if status != http.StatusTooManyRequests || !strings.Contains(body, "--gateway-max-requests-per-user") || !strings.Contains(body, "2 requests in flight") {
		t.Fatalf("alice's request with 2 streams open: %d %q", status, body)
	}
	if status, body := w.ping("bob"); status != http.StatusOK {
		t.Errorf("bob's ping while alice is at her cap: %d %q", status, body)
	}
	s1.Close()
	testutil.Eventually(t, 10*time.Second, "alice served again after ending a stream", func() (bool, string) {
		status, body := w.ping("alice")
		return status == http.StatusOK, fmt.Sprint(status, " ", body, "; engine streams ", w.events.Load())
	})
}

// A connection that never sends a request, and a keep-alive connection left idle, are closed
// by the server, and give their places back.
func TestSilentAndIdleConnectionsAreClosed(t *testing.T) {
	w := newLimitWorld(t, Limits{ConnsPerUser: 2, RequestsPerUser: 10, Conns: 100, HeaderTimeout: time.Second, IdleTimeout: time.Second})
	silent := w.dial("alice")
	idle := w.dial("alice")
	if status, _, err := get(idle, "/_ping"); status != http.StatusOK {
		t.Fatalf("ping: %d %v", status, err)
	}
	for name, c := range map[string]net.Conn{"a connection that never speaks": silent, "an idle keep-alive connection": idle} {
		if err := closedByServer(c); err != nil {
			t.Errorf("%s is not closed by the server: %v", name, err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "alice's places given back", func() (bool, string) {
		status, body := w.ping("alice")
		return status == http.StatusOK, fmt.Sprint(status, " ", body)
	})
}

// A flood of connections from one user: every one over the cap is refused at once, none is
// held, and the others' requests are answered meanwhile.
func TestAFloodOfConnectionsLeavesOthersServed(t *testing.T) {
	const capPerUser, flood = 20, 400
	w := newLimitWorld(t, Limits{ConnsPerUser: capPerUser, RequestsPerUser: 10, Conns: 1000, HeaderTimeout: 2 * time.Second})
	var wg sync.WaitGroup
	var refused, other atomic.Int64
	conns := make(chan net.Conn, flood)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range flood / 8 {
				d := net.Dialer{LocalAddr: &net.UnixAddr{Net: "unix", Name: filepath.Join(w.dir, fmt.Sprintf("alice-%d", w.n.Add(1)))}}
				c, err := d.Dial("unix", w.s.Socket)
				if err != nil {
					other.Add(1)
					continue
				}
				conns <- c
			}
		}()
	}
	wg.Wait()
	close(conns)
	var open []net.Conn
	for c := range conns {
		t.Cleanup(func() { c.Close() })
		open = append(open, c)
	}
	if n := other.Load(); n > 0 {
		t.Fatalf("%d of alice's connects failed", n)
	}
	if status, body := w.ping("bob"); status != http.StatusOK {
		t.Fatalf("bob's ping during alice's flood: %d %q", status, body)
	}
	// Each of alice's connections was either refused (an answer, then the end) or held and,
	// being silent, closed after the header timeout (the end, with no answer).
	var held atomic.Int64
	for _, c := range open {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		switch {
		case err != nil:
			t.Errorf("a connection of alice's flood: %q %v", b, err)
		case len(b) == 0:
			held.Add(1)
		case strings.HasPrefix(string(b), "HTTP/1.1 429 ") && strings.Contains(string(b), "--gateway-max-connections-per-user"):
			refused.Add(1)
		default:
			t.Errorf("a connection of alice's flood: %q", b)
		}
	}
	if r, h := refused.Load(), held.Load(); r != flood-capPerUser || h != capPerUser {
		t.Errorf("of alice's %d connections %d were refused and %d held; want %d held", flood, r, h, capPerUser)
	}
}

func TestConnsForFileLimit(t *testing.T) {
	for _, tc := range []struct {
		nofile       uint64
		conns        int
		reserveAtMin uint64
	}{
		{1024, 192, 512},
		{4096, 1472, 1024},
		{20000, 7436, 5000},
		{1048576, 393152, 262144},
	} {
		conns, reserve := ConnsForFileLimit(tc.nofile)
		if conns != tc.conns || reserve != tc.reserveAtMin {
			t.Errorf("ConnsForFileLimit(%d) = %d, %d; want %d, %d", tc.nofile, conns, reserve, tc.conns, tc.reserveAtMin)
		}
		if uint64(2*conns)+reserve > tc.nofile {
			t.Errorf("nofile %d: %d connections (two descriptors each) and a reserve of %d do not fit", tc.nofile, conns, reserve)
		}
	}
}

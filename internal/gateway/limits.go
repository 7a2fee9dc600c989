package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	ctrl "sigs.k8s.io/controller-runtime"
)

// Defaults of Limits: generous for one person's everyday use (compose with a few dozen
// services attached, a devcontainer, VS Code's Docker extension polling and following
// events), far below what takes the process down.
const (
	DefaultMaxConnsPerUser    = 512
	DefaultMaxRequestsPerUser = 256
	DefaultIdleTimeout        = 2 * time.Minute
	DefaultHeaderTimeout      = 10 * time.Second
)

// Descriptors the gateway never takes, whatever the load: etcd, the API server, the engine
// connections of the controllers and the audit log live on them. The reserve is a quarter of
// RLIMIT_NOFILE, at least 1024 (half the limit when the limit is under 2048).
const minReserveFDs = 1024

// Limits bound what the gateway takes of the process, so that no user can take the server
// down for everyone. A zero field takes its default.
type Limits struct {
	// ConnsPerUser is how many connections one uid may hold open at once; a connection over
	// it is answered 429 and closed at once.
	ConnsPerUser int
	// RequestsPerUser is how many requests of one uid may be in flight at once (a stream,
	// attach, exec, logs -f or events, counts while it is open); one over it is answered 429.
	RequestsPerUser int
	// Conns is how many connections all users together may hold; one over it is answered
	// 503 and closed. Zero: from RLIMIT_NOFILE (see ConnsForFileLimit).
	Conns int
	// IdleTimeout closes a keep-alive connection that sends no next request.
	IdleTimeout time.Duration
	// HeaderTimeout closes a connection whose request headers have not all come in time,
	// counted from the connection's start (net/http sets the read deadline before the first
	// byte): a connection that never speaks is closed after it too. Between requests the
	// IdleTimeout runs, then the HeaderTimeout from the next request's first bytes.
	HeaderTimeout time.Duration
}

// withDefaults fills in the zero fields.
func (l Limits) withDefaults() Limits {
	if l.ConnsPerUser <= 0 {
		l.ConnsPerUser = DefaultMaxConnsPerUser
	}
	if l.RequestsPerUser <= 0 {
		l.RequestsPerUser = DefaultMaxRequestsPerUser
	}
	if l.Conns <= 0 {
		var rl unix.Rlimit
		nofile := uint64(1024)
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil {
			nofile = rl.Cur
		}
		l.Conns, _ = ConnsForFileLimit(nofile)
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.HeaderTimeout <= 0 {
		l.HeaderTimeout = DefaultHeaderTimeout
	}
	return l
}

// ConnsForFileLimit is the gateway's global connection cap under a descriptor limit of
// nofile, and the descriptors it leaves to the rest of the process. A gateway connection
// costs up to two descriptors (the caller's and the engine's while a request is in flight).
func ConnsForFileLimit(nofile uint64) (conns int, reserve uint64) {
	reserve = nofile / 4
	if reserve < minReserveFDs {
		reserve = min(minReserveFDs, nofile/2)
	}
	// The engine's idle connection pool (64) and refusals being answered (maxRejecting).
	spare := uint64(64 + maxRejecting)
	if nofile <= reserve+spare {
		return 1, reserve
	}
	c := (nofile - reserve - spare) / 2
	if c > 1<<30 {
		c = 1 << 30
	}
	return max(int(c), 1), reserve
}

// maxRejecting bounds the refused connections being answered at once; past it a refusal is
// written without waiting for the caller's request.
const maxRejecting = 64

// limiter counts connections and requests, per uid and in all.
type limiter struct {
	lim Limits

	mu       sync.Mutex
	conns    int
	perUID   map[int]int
	requests map[int]int
	// warned is when a uid's refusal was last logged (one line a minute per uid).
	warned map[int]time.Time

	rejecting chan struct{}
}

func newLimiter(lim Limits) *limiter {
	return &limiter{lim: lim.withDefaults(), perUID: map[int]int{}, requests: map[int]int{}, warned: map[int]time.Time{},
		rejecting: make(chan struct{}, maxRejecting)}
}

// limitListener admits a connection only under the caps; the uid is the kernel's (uidOf).
type limitListener struct {
	net.Listener
	l     *limiter
	uidOf func(net.Conn) int
}

// Accept returns the next connection under the caps; one over a cap is answered and closed
// here, never handed on.
func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid := ll.uidOf(c)
		if status, msg := ll.l.admit(uid); status != 0 {
			ll.l.reject(c, uid, status, msg)
			continue
		}
		return &limitedConn{Conn: c, release: sync.OnceFunc(func() { ll.l.release(uid) })}, nil
	}
}

// admit counts a new connection of uid, or says why not (a status and a message).
func (l *limiter) admit(uid int) (int, string) {
	l.mu.Lock()
	all, mine := l.conns >= l.lim.Conns, l.perUID[uid] >= l.lim.ConnsPerUser
	if !all && !mine {
		l.conns++
		l.perUID[uid]++
	}
	l.mu.Unlock()
	switch {
	case all:
		return http.StatusServiceUnavailable, fmt.Sprintf("gpuwarden: the Docker gateway holds %d connections, the most it takes from all users together "+
			"(--gateway-max-connections); try again in a minute, and tell the admins if it lasts", l.lim.Conns)
	case mine:
		return http.StatusTooManyRequests, fmt.Sprintf("gpuwarden: %s has %d connections open to the Docker gateway, the most one user may "+
			"(--gateway-max-connections-per-user); close some (idle docker clients, forgotten docker logs -f, attach or events) and try again", userName(uid), l.lim.ConnsPerUser)
	}
	return 0, ""
}

func (l *limiter) release(uid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns--
	if l.perUID[uid]--; l.perUID[uid] <= 0 {
		delete(l.perUID, uid)
	}
}

// reject answers a refused connection with a Docker-style error and closes it. The answer
// must follow the caller's request, or its client takes it for an unsolicited one and says
// so: what the caller has sent already is read first; a connection that has sent nothing yet
// is answered once its request headers came (a second at most) when few refusals are under
// way, and at once otherwise.
func (l *limiter) reject(c net.Conn, uid, status int, msg string) {
	l.logRefusal(uid, msg)
	resp := refusalResponse(status, msg)
	if readBuffered(c) == 0 {
		select {
		case l.rejecting <- struct{}{}:
			go func() {
				defer func() { <-l.rejecting }()
				answerLater(c, resp)
			}()
			return
		default:
		}
	}
	_ = c.SetDeadline(time.Now().Add(50 * time.Millisecond))
	_, _ = c.Write(resp)
	_ = c.Close()
}

// answerLater answers once the request headers came (a second at most), then reads and drops
// what else comes for a second, so that closing with it unread does not reset the connection
// before the answer is read.
func answerLater(c net.Conn, resp []byte) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	var head []byte
	buf := make([]byte, 4096)
	for len(head) < 1<<16 && !bytes.Contains(head, []byte("\r\n\r\n")) {
		n, err := c.Read(buf)
		head = append(head, buf[:n]...)
		if err != nil {
			break
		}
	}
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(resp); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<16))
}

// readBuffered reads and drops what c's peer has sent so far, without waiting; it returns how
// many bytes that was.
func readBuffered(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	total := 0
	buf := make([]byte, 16<<10)
	_ = raw.Read(func(fd uintptr) bool {
		for total < 1<<20 {
			n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			if n <= 0 || err != nil {
				break
			}
			total += n
		}
		return true
	})
	return total
}

// refusalResponse is a whole HTTP response in the engine's error shape, closing the
// connection.
func refusalResponse(status int, msg string) []byte {
	body, _ := jsonMarshal(map[string]string{"message": msg})
	body = append(body, '\n')
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", status, http.StatusText(status), len(body))
	b.Write(body)
	return b.Bytes()
}

// logRefusal logs a uid's refusal once a minute at most: a flood is one line, not thousands.
func (l *limiter) logRefusal(uid int, msg string) {
	l.mu.Lock()
	now := time.Now()
	last, seen := l.warned[uid]
	if seen && now.Sub(last) < time.Minute {
		l.mu.Unlock()
		return
	}
	l.warned[uid] = now
	l.mu.Unlock()
	ctrl.Log.WithName("gateway").Info("Refusing connections over a cap (logged once a minute per user)", "uid", uid, "reason", msg)
}

// beginRequest counts a request of uid in flight, or says no.
func (l *limiter) beginRequest(uid int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.requests[uid] >= l.lim.RequestsPerUser {
		return false
	}
	l.requests[uid]++
	return true
}

func (l *limiter) endRequest(uid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.requests[uid]--; l.requests[uid] <= 0 {
		delete(l.requests, uid)
	}
}

// limitRequests counts each request in flight against its caller's cap while next serves it
// (a hijacked stream is served until it ends, so it counts while open).
func (l *limiter) limitRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid := -1
		if c, ok := callerOf(r.Context()); ok {
			uid = c.UID
		}
		if !l.beginRequest(uid) {
			msg := fmt.Sprintf("gpuwarden: %s has %d requests in flight through the Docker gateway, the most one user may "+
				"(--gateway-max-requests-per-user; open streams such as attach, exec, logs -f and events count); end some and try again",
				userName(uid), l.lim.RequestsPerUser)
			l.logRefusal(uid, msg)
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusTooManyRequests, msg)
			return
		}
		defer l.endRequest(uid)
		next.ServeHTTP(w, r)
	})
}

// limitedConn gives its place back once closed.
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// CloseWrite half-closes (a stream's end reaches the caller while the rest still flows).
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("not a connection that half-closes")
}

// unwrapConn is the kernel's connection under a limitedConn.
func unwrapConn(c net.Conn) net.Conn {
	if lc, ok := c.(*limitedConn); ok {
		return lc.Conn
	}
	return c
}

// peerUID is the uid of a Unix connection's peer (SO_PEERCRED); -1 when it cannot be told
// (the connection is then refused once served).
func peerUID(c net.Conn) int {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1
	}
	uid := -1
	_ = raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			uid = int(cred.Uid)
		}
	})
	return uid
}

var names sync.Map // uid → login name, for the refusals' messages

// userName is uid's login name (and uid), or the uid alone.
func userName(uid int) string {
	if n, ok := names.Load(uid); ok {
		return n.(string)
	}
	n := "uid " + strconv.Itoa(uid)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		n = u.Username + " (uid " + strconv.Itoa(uid) + ")"
	}
	names.Store(uid, n)
	return n
}

// limit wraps the gateway's listener in its caps; the limiter also counts requests.
func (s *Server) limit(ln net.Listener) (net.Listener, *limiter) {
	l := newLimiter(s.Limits)
	uidOf := peerUID
	if s.peerOf != nil {
		uidOf = func(c net.Conn) int {
			caller, err := s.peerOf(c)
			if err != nil {
				return -1
			}
			return caller.UID
		}
	}
	return &limitListener{Listener: ln, l: l, uidOf: uidOf}, l
}

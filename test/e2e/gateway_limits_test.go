package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// floodScript opens N connections to the gateway's socket as whoever runs it. In "events"
// mode each sends GET /events (a stream that stays open); in "idle" mode none sends anything.
// It reads each connection's answer (the status line of a stream, or everything up to the
// server's close) and prints one line: held=H refused=R closed=C other=O message=M, where
// held are open streams, refused were answered 429 or 503 and closed, closed were closed by
// the server without an answer, and M is a refusal's body. In events mode it then holds its
// connections until its stdin ends.
const floodScript = `
import json, socket, sys
path, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conns = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    conns.append(s)
if mode == "events":
    for s in conns:
        try:
            s.sendall(b"GET /v1.41/events HTTP/1.1\r\nHost: docker\r\n\r\n")
        except OSError:
            pass
held = refused = closed = other = 0
message = ""
for s in conns:
    s.settimeout(120)
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
            if data.startswith(b"HTTP/1.1 200 ") and b"\r\n\r\n" in data:
                break
    except OSError as e:
        if not data:
            other += 1
            continue
    if data.startswith(b"HTTP/1.1 200 "):
        held += 1
    elif data.startswith(b"HTTP/1.1 429 ") or data.startswith(b"HTTP/1.1 503 "):
        refused += 1
        message = data.split(b"\r\n\r\n", 1)[1].decode().strip()
    elif not data:
        closed += 1
    else:
        other += 1
        message = repr(data[:200])
print("held=%d refused=%d closed=%d other=%d message=%s" % (held, refused, closed, other, message), flush=True)
if mode == "events":
    sys.stdin.read()
`

// flood runs floodScript as user; it returns its summary line and a function that ends it
// (closing its connections).
func flood(t *testing.T, user, sock string, n int, mode string) (string, func()) {
	t.Helper()
	cmd := exec.Command("runuser", "-u", user, "--", "/usr/bin/python3", "-c", floodScript, sock, fmt.Sprint(n), mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	end := func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(end)
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		if l == "" {
			end()
			t.Fatalf("the flood as %s said nothing: %s", user, stderr.String())
		}
		return l, end
	case <-time.After(3 * time.Minute):
		t.Fatalf("the flood as %s: no summary after 3 minutes: %s", user, stderr.String())
	}
	return "", end
}

// TestGatewayCapsOneUsersConnections: one user holding many connections (open event streams,
// or connections that never send a request) gets no more than the per-user cap, each one
// over it refused at once with an error naming the cap; another user's docker ps answers
// meanwhile, the server stays up, and the flooding user is served again once the flood ends.
func TestGatewayCapsOneUsersConnections(t *testing.T) {
	_, err := os.Stat("/usr/bin/python3")
	testutil.Require(t, err == nil, "/usr/bin/python3 runs the flood as an unprivileged user")
	flooder, calm := "gwflood", "gwcalm"
	const capPerUser, n = 50, 300
	s, sock, _ := gatewayServer(t, "e2e-gwlim", []string{flooder, calm},
		"--gateway-max-connections-per-user", fmt.Sprint(capPerUser), "--gateway-max-requests-per-user", "100")
	healthy := func() (bool, string) {
		code, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/readyz", s.probePort))
		return code == http.StatusOK, fmt.Sprint(code, " ", body)
	}

	// Streams held open: exactly the cap's worth are served, the rest refused.
	summary, end := flood(t, flooder, sock, n, "events")
	t.Logf("%d event streams as %s: %s", n, flooder, summary)
	if !strings.HasPrefix(summary, fmt.Sprintf("held=%d refused=%d closed=0 other=0 ", capPerUser, n-capPerUser)) ||
		!strings.Contains(summary, "--gateway-max-connections-per-user") || !strings.Contains(summary, `"message":"gpuwarden: `) {
		t.Errorf("%d streams as %s with a cap of %d: %s", n, flooder, capPerUser, summary)
	}
	out, err := as(calm, sock, "", "ps", "-a")
	if err != nil || !strings.HasPrefix(out, "CONTAINER ID") {
		t.Errorf("docker ps as %s during %s's flood: %v\n%s", calm, flooder, err, out)
	}
	out, err = as(flooder, sock, "", "ps")
	if err == nil || !strings.HasPrefix(out, "Error response from daemon: gpuwarden: ") || !strings.Contains(out, "--gateway-max-connections-per-user") {
		t.Errorf("docker ps as %s at the cap: %v\n%s", flooder, err, out)
	}
	t.Logf("docker ps as %s at the cap: %s", flooder, out)
	if ok, why := healthy(); !ok {
		t.Errorf("the server during the flood: /readyz %s", why)
	}
	end()
	testutil.Eventually(t, 60*time.Second, flooder+" served again once the flood ends", func() (bool, string) {
		out, err := as(flooder, sock, "", "ps")
		return err == nil && strings.HasPrefix(out, "CONTAINER ID"), out
	})

	// Connections that never send a request: the cap's worth held, then closed by the
	// server's header timeout; the rest refused at once.
	summary, _ = flood(t, flooder, sock, 2*capPerUser, "idle")
	t.Logf("%d silent connections as %s: %s", 2*capPerUser, flooder, summary)
	// (The first flood's streams may not all have been let go yet: at most the cap is held.)
	var held, refused, closed, other int
	if _, err := fmt.Sscanf(summary, "held=%d refused=%d closed=%d other=%d ", &held, &refused, &closed, &other); err != nil ||
		held != 0 || other != 0 || closed < 1 || closed > capPerUser || refused+closed != 2*capPerUser ||
		!strings.Contains(summary, "--gateway-max-connections-per-user") {
		t.Errorf("%d silent connections as %s with a cap of %d: %s (%v)", 2*capPerUser, flooder, capPerUser, summary, err)
	}
	if ok, why := healthy(); !ok {
		t.Errorf("the server after the floods: /readyz %s", why)
	}
	out, err = as(calm, sock, "", "ps")
	if err != nil || !strings.HasPrefix(out, "CONTAINER ID") {
		t.Errorf("docker ps as %s after the floods: %v\n%s", calm, err, out)
	}
}

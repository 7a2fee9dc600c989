package gateway

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// Raw requests on the real socket: what a body-less check (the engine's AuthZ plugins,
// CVE-2024-41110 and CVE-2026-34040) was fooled by is refused here.
func TestRawRequestsOnTheSocket(t *testing.T) {
	w := newWorld(t)
	w.s.Socket = filepath.Join(t.TempDir(), "gw.sock")
	w.s.peerOf = func(net.Conn) (Caller, error) { return w.alice(), nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.s.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(t, 5*time.Second, "the gateway listens", func() bool {
		c, err := net.Dial("unix", w.s.Socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	raw := func(req string) string {
		c, err := net.Dial("unix", w.s.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(req)); err != nil {
			return "write: " + err.Error()
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "read: " + err.Error()
		}
		defer resp.Body.Close()
		b := make([]byte, 512)
		n, _ := resp.Body.Read(b)
		return fmt.Sprintf("%d %s", resp.StatusCode, b[:n])
	}
	privileged := `{"Image":"x","HostConfig":{"Privileged":true}}`
	for _, tc := range []struct{ name, req, want string }{
		{"Content-Length 0 with a privileged body", "POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n" + privileged, "400"},
		{"a chunked privileged body", "POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(privileged), privileged), "403"},
		{"a chunked body over 1 MiB", "POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", maxBody+10, `{"Image":"`+strings.Repeat("a", maxBody)+`"}`), "413"},
		{"a Content-Length shorter than the body", "POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 10\r\n\r\n" + privileged, "400"},
		{"an unversioned privileged create", "POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: " + fmt.Sprint(len(privileged)) + "\r\n\r\n" + privileged, "403"},
		{"an HTTP/1.0 request to swarm", "POST /swarm/init HTTP/1.0\r\n\r\n", "503"},
	} {
		if got := raw(tc.req); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %s; want %s", tc.name, got, tc.want)
		}
	}
	for _, r := range w.engine.reached() {
		if strings.Contains(r, "create") || strings.Contains(r, "swarm") {
			t.Errorf("reached the engine: %s", r)
		}
	}
	if got := raw("GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n"); !strings.HasPrefix(got, "200") {
		t.Errorf("ping after the hostile requests: %s", got)
	}
}

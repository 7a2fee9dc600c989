package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// upstream is the real engine.
type upstream struct {
	dial   func(ctx context.Context) (net.Conn, error)
	client *http.Client
}

func newUpstream(dial func(ctx context.Context) (net.Conn, error)) *upstream {
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &upstream{dial: dial, client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// hopHeaders are not forwarded (RFC 9110 §7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Te", "Trailer", "Upgrade", "Proxy-Authorization", "Proxy-Authenticate"}

// outgoing is the request forwarded to the engine: the caller's method, the (rewritten)
// path and query, its headers without hop-by-hop ones, and body.
func outgoing(ctx context.Context, r *http.Request, path, query string, body io.Reader, length int64) (*http.Request, error) {
	// The path is escaped as a path: a decoded "?" or "#" in it stays part of it.
	u := (&url.URL{Scheme: "http", Host: "docker", Path: path, RawQuery: query}).String()
	out, err := http.NewRequestWithContext(ctx, r.Method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range r.Header {
		out.Header[k] = append([]string(nil), v...)
	}
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Header.Del("Content-Length")
	out.ContentLength = length
	return out, nil
}

// forward sends the request and streams the answer back, flushing as it comes (logs -f,
// events, stats and wait are open-ended streams).
func (u *upstream) forward(w http.ResponseWriter, r *http.Request, path, query string, body io.Reader, length int64) {
	out, err := outgoing(r.Context(), r, path, query, body, length)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	resp, err := u.client.Do(out)
	if err != nil {
		writeError(w, http.StatusBadGateway, "the Docker engine behind the gateway is unreachable: "+err.Error())
		return
	}
	defer resp.Body.Close()
	copyResponse(w, resp)
}

func copyResponse(w http.ResponseWriter, resp *http.Response) {
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	for _, h := range hopHeaders {
		w.Header().Del(h)
	}
	w.WriteHeader(resp.StatusCode)
	f, _ := w.(http.Flusher)
	if f != nil {
		f.Flush() // the headers now: a client may wait for them before its next request (docker run's wait)
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if f != nil {
				f.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// get asks the engine itself (inspecting a container to learn its owner).
func (u *upstream) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return nil, err
	}
	return u.client.Do(req)
}

// post sends the engine a JSON request of the gateway's own (making a volume for its caller);
// an answer other than 2xx is an error with the engine's message.
func (u *upstream) post(ctx context.Context, path string, v any) error {
	b, err := jsonMarshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://docker"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := u.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("engine answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// hijack forwards a request whose answer takes over the connection (attach, exec start):
// the engine's 101 UPGRADED or raw 200 stream is spliced to the caller both ways, each
// half closed when its side ends, so stdin's EOF reaches the container. Bytes either side
// had buffered when the connection was taken over are passed on first.
func (u *upstream) hijack(w http.ResponseWriter, r *http.Request, path, query string, body []byte) {
	eng, err := u.dial(r.Context())
	if err != nil {
		writeError(w, http.StatusBadGateway, "the Docker engine behind the gateway is unreachable: "+err.Error())
		return
	}
	defer eng.Close()
	out, err := outgoing(context.Background(), r, path, query, bytes.NewReader(body), int64(len(body)))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if strings.EqualFold(r.Header.Get("Upgrade"), "tcp") {
		out.Header.Set("Connection", "Upgrade")
		out.Header.Set("Upgrade", "tcp")
	}
	if err := out.Write(eng); err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	br := bufio.NewReader(eng)
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	if !rawStream(resp) {
		defer resp.Body.Close()
		copyResponse(w, resp) // an error, or a detached exec: an ordinary answer
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeError(w, http.StatusInternalServerError, "the gateway cannot take over this connection")
		return
	}
	client, cbuf, err := hj.Hijack()
	if err != nil {
		return
	}
	defer client.Close()
	// The engine's status line and headers, as it sent them.
	fmt.Fprintf(cbuf, "HTTP/1.1 %d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
	_ = resp.Header.Write(cbuf)
	cbuf.WriteString("\r\n")
	if err := cbuf.Flush(); err != nil {
		return
	}
	openStreams.Inc()
	defer openStreams.Dec()
	done := make(chan struct{}, 2)
	go func() { // caller → engine: what the caller had buffered, then the connection
		_, _ = io.Copy(eng, io.MultiReader(bufferedOf(cbuf.Reader), client))
		closeWrite(eng)
		done <- struct{}{}
	}()
	go func() { // engine → caller
		_, _ = io.Copy(client, br)
		closeWrite(client)
		done <- struct{}{}
	}()
	<-done
	<-done
}

// rawStream tells whether the engine's answer took the connection over: 101 UPGRADED, or a 200
// of a raw-stream media type (attach and exec start without Upgrade). Anything else is an
// ordinary answer and is never spliced.
func rawStream(resp *http.Response) bool {
	ct := resp.Header.Get("Content-Type")
	raw := ct == "application/vnd.docker.raw-stream" || ct == "application/vnd.docker.multiplexed-stream"
	return resp.StatusCode == http.StatusSwitchingProtocols || resp.StatusCode == http.StatusOK && raw
}

// bufferedOf is what a reader already holds, without reading more.
func bufferedOf(r *bufio.Reader) io.Reader {
	n := r.Buffered()
	if n == 0 {
		return bytes.NewReader(nil)
	}
	b, _ := r.Peek(n)
	return bytes.NewReader(append([]byte(nil), b...))
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

// writeError answers in the engine's own error shape, which docker prints as
// "Error response from daemon: <message>".
func writeError(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := jsonMarshal(map[string]string{"message": message})
	_, _ = w.Write(append(b, '\n'))
}

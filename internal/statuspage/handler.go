package statuspage

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
)

//go:embed static
var static embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"join": strings.Join,
}).ParseFS(static, "static/page.html"))

// The paths the page serves; anything else is 404.
const (
	pathPage   = "/"
	pathJSON   = "/status.json"
	pathEvents = "/events"
	pathStatic = "/static/"
)

// securityHeaders are on every answer: no inline script or style, nothing from elsewhere,
// no framing, no sniffing, no referrer.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	"X-Content-Type-Options":       "nosniff",
	"Referrer-Policy":              "no-referrer",
	"X-Frame-Options":              "DENY",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
}

// writeTimeout bounds the write of every answer but a stream.
const writeTimeout = 30 * time.Second

// Handler serves the page: GET and HEAD only.
func (p *Page) Handler() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	files := http.StripPrefix(pathStatic, http.FileServer(http.FS(sub)))
	mux.Handle(pathStatic, noListing(files))
	mux.HandleFunc(pathJSON, p.serveJSON)
	mux.HandleFunc(pathEvents, p.serveEvents)
	mux.HandleFunc(pathPage, p.servePage)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for k, v := range securityHeaders {
			h.Set(k, v)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the status page is read-only", http.StatusMethodNotAllowed)
			return
		}
		if !p.hostAllowed(r.Host) {
			http.Error(w, fmt.Sprintf("the status page answers requests for an address, localhost or this machine's name, not %q "+
				"(a proxy in front of it must send the address it forwards to as Host, as nginx's proxy_pass does)", r.Host), http.StatusMisdirectedRequest)
			return
		}
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeTimeout))
		mux.ServeHTTP(w, r)
	})
}

// hostAllowed reports whether host (the request's Host, with its port) names the page as
// a browser on this machine or through a tunnel or proxy does: an IP address, localhost, or
// one of this machine's names. Any other name is a DNS rebinding attempt: a web site whose
// name resolves to 127.0.0.1 for a moment, reading the page through its visitor's browser.
func (p *Page) hostAllowed(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if net.ParseIP(host) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	return slices.Contains(p.o.Hosts, host)
}

// staticFiles are the files under pathStatic the page names; anything else there (the
// template, a directory) is 404.
var staticFiles = map[string]bool{pathStatic + "page.js": true, pathStatic + "page.css": true}

// noListing serves staticFiles alone: no directories, not the template.
func noListing(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !staticFiles[r.URL.Path] {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// filterOf is ?user=, the one query parameter: a bounded piece of a user name. Every
// other parameter is ignored.
func filterOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	f := strings.TrimSpace(r.URL.Query().Get("user"))
	if len(f) > maxFilter || !utf8.ValidString(f) || strings.ContainsFunc(f, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		http.Error(w, fmt.Sprintf("?user= is a part of a user name, at most %d bytes", maxFilter), http.StatusBadRequest)
		return "", false
	}
	return f, true
}

func (p *Page) servePage(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != pathPage {
		http.NotFound(w, r)
		return
	}
	filter, ok := filterOf(w, r)
	if !ok {
		return
	}
	v, _ := p.view(filter)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := page.Execute(w, v); err != nil {
		logr.FromContextOrDiscard(r.Context()).Error(err, "Could not render the status page")
	}
}

func (p *Page) serveJSON(w http.ResponseWriter, r *http.Request) {
	filter, ok := filterOf(w, r)
	if !ok {
		return
	}
	b, err := p.viewJSON(filter)
	if err != nil {
		http.Error(w, "could not render the status", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}

// serveEvents streams the view at once and after every new snapshot, for at most the
// stream lifetime (the browser reconnects by itself); at most MaxStreams at once.
func (p *Page) serveEvents(w http.ResponseWriter, r *http.Request) {
	filter, ok := filterOf(w, r)
	if !ok {
		return
	}
	select {
	case p.streams <- struct{}{}:
		defer func() { <-p.streams }()
	default:
		w.Header().Set("Retry-After", "30")
		http.Error(w, "too many open status streams; try again later", http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(p.o.StreamLifetime + writeTimeout))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	end := time.NewTimer(p.o.StreamLifetime)
	defer end.Stop()
	// The browser reconnects this long after a stream ends.
	if _, err := fmt.Fprint(w, "retry: 3000\n\n"); err != nil {
		return
	}
	for {
		next := p.wait()
		b, err := p.viewJSON(filter)
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", b); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-end.C:
			return
		case <-next:
		}
	}
}

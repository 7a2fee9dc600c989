package statuspage

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
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
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeTimeout))
		mux.ServeHTTP(w, r)
	})
}

// noListing refuses directories: the static files are named by the page.
func noListing(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
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

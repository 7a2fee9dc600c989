package manager

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestProfilesOnlyWhenAsked: --profiling serves Go's profiles beside /metrics; without it,
// nothing is added there.
func TestProfilesOnlyWhenAsked(t *testing.T) {
	if h := profiles(false); h != nil {
		t.Errorf("profiles without --profiling: %v, want none", h)
	}
	mux := http.NewServeMux()
	for path, h := range profiles(true) {
		mux.Handle(path, h)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for path, want := range map[string]string{"/debug/pprof/": "goroutine", "/debug/pprof/heap?debug=1": "heap profile"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %d, want 200 with %q:\n%.300s", path, resp.StatusCode, want, body)
		}
	}
}

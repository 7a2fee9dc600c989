package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// settings is a Notifications that remembers who asked what.
type settings struct{ calls []string }

type badRequest string

func (b badRequest) Error() string    { return string(b) }
func (b badRequest) BadRequest() bool { return true }

func (s *settings) Get(_ context.Context, user string) (any, error) {
	s.calls = append(s.calls, "get "+user)
	return map[string]string{"user": user}, nil
}

func (s *settings) Set(_ context.Context, user string, body io.Reader) (any, error) {
	b, _ := io.ReadAll(body)
	s.calls = append(s.calls, "set "+user+" "+string(b))
	if strings.Contains(string(b), "bad") {
		return nil, badRequest("email \"bad\" is not a plain e-mail address")
	}
	return map[string]string{"user": user}, nil
}

func (s *settings) Test(_ context.Context, user string) (any, error) {
	s.calls = append(s.calls, "test "+user)
	return nil, errors.New("the API server is down")
}

// TestNotificationsOfTheCaller: the caller reads, sets and tests only their own settings,
// whatever a query or a path names; a setting to fix is a 400 with its reason and no
// access denied.
func TestNotificationsOfTheCaller(t *testing.T) {
	w := newWorld(t)
	if rec := w.do(w.alice(), "GET", NotificationsPath, ""); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "keeps no notification settings") {
		t.Errorf("without settings: %d %s", rec.Code, rec.Body)
	}
	s := &settings{}
	w.s.Notifications = s
	if rec := w.do(w.alice(), "GET", NotificationsPath+"?user=bob", ""); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"user":"alice"`) {
		t.Errorf("alice asking for bob's: %d %s", rec.Code, rec.Body)
	}
	if rec := w.do(w.alice(), "PUT", NotificationsPath, `{"email":"bad"}`); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `not a plain e-mail address`) {
		t.Errorf("a bad address: %d %s", rec.Code, rec.Body)
	}
	if rec := w.do(w.alice(), "POST", NotificationsTestPath, ""); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "the API server is down") {
		t.Errorf("a failing test: %d %s", rec.Code, rec.Body)
	}
	for _, tc := range []struct{ method, path string }{
		{"DELETE", NotificationsPath}, {"POST", NotificationsPath}, {"GET", NotificationsTestPath},
		{"GET", "/v1.41" + NotificationsPath}, {"GET", NotificationsPath + "/bob"},
	} {
		if rec := w.do(w.alice(), tc.method, tc.path, ""); rec.Code < 400 {
			t.Errorf("%s %s: %d", tc.method, tc.path, rec.Code)
		}
	}
	want := []string{"get alice", `set alice {"email":"bad"}`, "test alice"}
	if strings.Join(s.calls, "|") != strings.Join(want, "|") {
		t.Errorf("calls %q, want %q", s.calls, want)
	}
	if n := len(w.audit.Events()); n != 5 {
		t.Errorf("%d audit records; want 5, one auth.denied for each refused method or path", n)
	}
}

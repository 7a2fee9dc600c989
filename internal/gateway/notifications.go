package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// Where the gateway lets callers read and set where their own notices go, and send
// themselves a test notice.
const (
	NotificationsPath     = "/gpuwarden/notifications"
	NotificationsTestPath = "/gpuwarden/notifications/test"
)

// Notifications reads and writes a user's own notification settings (a JSON body in, what
// is in force out) and sends them a test notice. An error with a BadRequest method that
// says true is the caller's to fix, and its text is theirs to read.
type Notifications interface {
	Get(ctx context.Context, user string) (any, error)
	Set(ctx context.Context, user string, body io.Reader) (any, error)
	Test(ctx context.Context, user string) (any, error)
}

// notifications serves the caller's own settings: who they are is the kernel's word, so
// nobody reads or sets another user's here (an admin writes a NotificationProfile).
func (s *Server) notifications(w http.ResponseWriter, r *http.Request, c Caller) error {
	if s.Notifications == nil {
		return &refusal{status: http.StatusNotFound, msg: "this gpuwarden keeps no notification settings (ask your admin)", absent: true}
	}
	var (
		out any
		err error
	)
	switch {
	case r.URL.Path == NotificationsTestPath:
		out, err = s.Notifications.Test(r.Context(), c.Name)
	case r.Method == http.MethodPut:
		out, err = s.Notifications.Set(r.Context(), c.Name, io.LimitReader(r.Body, 64<<10))
	default:
		out, err = s.Notifications.Get(r.Context(), c.Name)
	}
	var bad interface{ BadRequest() bool }
	if errors.As(err, &bad) && bad.BadRequest() {
		writeError(w, http.StatusBadRequest, "gpuwarden: "+err.Error())
		return nil
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

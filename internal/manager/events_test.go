package manager

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
)

// hostile holds what a request path may carry: ESC, CR, LF, NUL, a terminal escape
// sequence (set the window title, then clear the screen), a bidirectional override and
// bytes that are not UTF-8.
const hostile = "/containers/x\x1b]0;pwned\x07\x1b[2J\r\nNUL\x00\u202eevil\xff\xfe/json"

const escaped = `/containers/x\x1b]0;pwned\a\x1b[2J\r\nNUL\x00\u202eevil\xff\xfe/json`

func TestEventMessageEscapes(t *testing.T) {
	got := EventNote(fmt.Sprintf("Docker gateway refused %s to %s: %s", "GET "+hostile, "bob", "no such container"))
	want := "Docker gateway refused GET " + escaped + " to bob: no such container"
	if got != want {
		t.Errorf("EventNote = %q\nwant            %q", got, want)
	}
	for _, c := range []string{"\x1b", "\r", "\n", "\x00", "\u202e"} {
		if strings.Contains(got, c) {
			t.Errorf("EventNote kept %q raw: %q", c, got)
		}
	}
	if !strings.Contains(got, `\xff`) {
		t.Errorf("EventNote did not escape invalid UTF-8: %q", got)
	}
	// A message recorded without arguments is not formatted: a % stays a %.
	rec := events.NewFakeRecorder(1)
	msg := "100% idle"
	EscapingRecorder{R: rec}.Eventf(&corev1.Node{}, nil, corev1.EventTypeNormal, "Idle", "Sample", msg)
	if got := <-rec.Events; !strings.HasSuffix(got, " 100% idle") {
		t.Errorf("a message without args is recorded as %q", got)
	}
	if got := EventNote("plain héllo"); got != "plain héllo" {
		t.Errorf("EventNote of printable text = %q", got)
	}
}

func TestEventMessageFitsTheAPI(t *testing.T) {
	got := EventNote(strings.Repeat("\x1b", 2000))
	if len(got) > MaxEventNote {
		t.Errorf("EventNote is %d bytes, the API takes %d", len(got), MaxEventNote)
	}
	if !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, `\x1b\x1b`) {
		t.Errorf("a long message is not cut visibly: %q…", got[:20])
	}
	got = EventNote(strings.Repeat("é", 1000))
	if len(got) > MaxEventNote || !strings.HasSuffix(got, "é…") {
		t.Errorf("a long message is cut inside a rune: %q", got[len(got)-8:])
	}
}

// stubManager hands out fake recorders; only the recorder methods are used.
type stubManager struct {
	ctrl.Manager
	rec    *events.FakeRecorder
	legacy *record.FakeRecorder
}

func (s stubManager) GetEventRecorder(string) recorder.EventRecorder { return s.rec }

func (s stubManager) GetEventRecorderFor(string) record.EventRecorder { return s.legacy }

func TestEveryRecorderOfTheManagerEscapes(t *testing.T) {
	stub := stubManager{rec: events.NewFakeRecorder(10), legacy: record.NewFakeRecorder(10)}
	var mgr ctrl.Manager = escapingManager{Manager: stub}
	node := &corev1.Node{}

	mgr.GetEventRecorder("gpuwarden-gateway").Eventf(node, nil, corev1.EventTypeWarning, "AccessDenied", "Deny",
		"Docker gateway refused %s to %s", hostile, "bob")
	mgr.GetEventRecorder("gpuwarden-gateway").AnnotatedEventf(node, nil, nil, corev1.EventTypeWarning, "AccessDenied", "Deny",
		"%s", hostile)
	//lint:ignore SA1019 the old API must escape too
	legacy := mgr.GetEventRecorderFor("old")
	legacy.Event(node, corev1.EventTypeWarning, "AccessDenied", hostile)
	legacy.Eventf(node, corev1.EventTypeWarning, "AccessDenied", "%s", hostile)
	legacy.AnnotatedEventf(node, nil, corev1.EventTypeWarning, "AccessDenied", "%s", hostile)

	var got []string
	for len(stub.rec.Events) > 0 {
		got = append(got, <-stub.rec.Events)
	}
	for len(stub.legacy.Events) > 0 {
		got = append(got, <-stub.legacy.Events)
	}
	if len(got) != 5 {
		t.Fatalf("recorded %d events, want 5: %q", len(got), got)
	}
	for _, e := range got {
		if !strings.Contains(e, escaped) {
			t.Errorf("event %q does not carry the escaped path", e)
		}
		if strings.ContainsAny(e, "\x1b\r\n\x00") {
			t.Errorf("event %q carries a control character", e)
		}
	}
}
